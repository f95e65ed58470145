#!/usr/bin/env python3
"""The anchors' harness: prints figures, asserts nothing.

`wrk -t1 -c16` publishes ~1 KB ProductUpdated events to a fresh `tidings serve` for SECONDS,
flat out; one Python uvloop receiver (a process of its own) answers every webhook with 200 at
once and counts them. wrk, the receiver and Tidings share this machine's cores, as they did when
Svix was measured the same way. For fan-out 1 and 10, prints publishes/s, deliveries/s during
the load, the time to drain the rest, Tidings' share of a core during the load, and its
CPU-seconds (user + system, from /proc) per 1,000 deliveries, publishing and draining included.

With --rate, each fan-out also publishes at a steady rate (wrk's `delay()` paces each connection):
Tidings' CPU per delivery when it is not fighting wrk and the receiver for the cores.

Usage: scripts/bench_wrk.py TIDINGS_BINARY [--seconds N] [--fan-out N ...] [--rate N ...] [--runs N]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ORG = "5b6a3f52-3c4e-11ee-be56-0242ac120002"
TICKS = os.sysconf("SC_CLK_TCK")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def receive(port, count, ready):
    """The receiver process: keep-alive HTTP/1.1 on uvloop, counting complete requests."""
    import uvloop

    class Hook(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            answered = 0
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", self.buffer[:end])
                total = end + 4 + (int(match.group(1)) if match else 0)
                if len(self.buffer) < total:
                    break
                self.buffer = self.buffer[total:]
                answered += 1
            if answered:
                self.transport.write(ANSWER * answered)
                with count.get_lock():
                    count.value += answered

    async def serve():
        server = await asyncio.get_running_loop().create_server(Hook, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, key, body):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return response.status


def run(binary, fan_out, seconds, perf=None, rate=None):
    data = tempfile.mkdtemp(prefix="tidings-wrk-")
    key = subprocess.run([binary, "keys", "create", "--data-dir", data, "--org", ORG, "--scope", "READ:PRODUCT"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    serve = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "RUST_LOG": "warn"})
    base = "http://" + serve.stdout.readline().split("http://")[1].split(" ")[0].rstrip("/")
    port, count, ready = free_port(), multiprocessing.Value("q", 0), multiprocessing.Event()
    receiver = multiprocessing.Process(target=receive, args=(port, count, ready), daemon=True)
    receiver.start()
    ready.wait(10)
    try:
        for n in range(fan_out):
            status = call(base, "POST", "/organizations/self/subscriptions", key, {
                "uuid": f"f02f80f8-8f35-11eb-8dcd-0242ac13{n:04x}", "transportName": "WEBHOOK",
                "eventNames": ["ProductUpdated"], "destination": f"http://127.0.0.1:{port}/hook",
                "contactEmail": "ops@example.com"})
            assert status == 200, status
        body = json.dumps({"eventName": "ProductUpdated", "payload": {
            "name": "Kaffe", "sentAt": int(time.time() * 1e9), "description": "x" * 900}})
        script = os.path.join(data, "publish.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\n'
                    f'wrk.headers["Authorization"] = "Bearer {key}"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(body)}\n")
            if rate:
                # Each of the 16 connections waits its share of the rate before each request.
                f.write(f"function delay() return {16000 / rate} end\n")
        recorder = perf and subprocess.Popen(
            ["perf", "record", "-q", "-F", "250", "--call-graph", "dwarf,32768", "-o", f"{perf}/fan-out-{fan_out}.data", "-p", str(serve.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before, started = cpu_seconds(serve.pid), time.time()
        wrk = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", script, f"{base}/organizations/self/events"],
                             check=True, capture_output=True, text=True).stdout
        load_secs = time.time() - started
        during_load, cpu_load = count.value, cpu_seconds(serve.pid) - cpu_before
        requests = int(re.search(r"(\d+) requests in", wrk).group(1))
        refused = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
        published = requests - (int(refused.group(1)) if refused else 0)
        expected, deadline = published * fan_out, time.time() + 120
        while count.value < expected and time.time() < deadline:
            time.sleep(0.01)
        drain = time.time() - started - load_secs
        if recorder:
            recorder.send_signal(2)
            recorder.wait(60)
        delivered, cpu = count.value, cpu_seconds(serve.pid) - cpu_before
        return {
            "fan_out": fan_out, "rate": rate, "publishes_per_s": published / load_secs,
            "deliveries_per_s": during_load / load_secs, "drain": drain, "delivered": delivered,
            "expected": expected, "core_share": cpu_load / load_secs,
            "cpu_per_1000": cpu * 1000 / max(delivered, 1),
        }
    finally:
        serve.terminate()
        serve.wait(30)
        receiver.terminate()
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fan-out", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--perf", metavar="DIR", help="record `perf` profiles of Tidings into DIR (a build with "
                        "symbols: cargo build --profile profiling -p tidings-cli)")
    parser.add_argument("--rate", type=int, nargs="+", metavar="N",
                        help="also publish at N a second (one N for each --fan-out): CPU at a steady load")
    parser.add_argument("--runs", type=int, default=1, help="runs of each fan-out, each on a fresh server")
    args = parser.parse_args()
    print(f"The anchors' harness: wrk -t1 -c16 for {args.seconds} s, ~1 KB ProductUpdated events, flat out; "
          f"one uvloop receiver; {args.binary}")
    print(f"{'fan-out':>7}  {'publishing':>10}  {'publishes/s':>11}  {'deliveries/s':>12}  {'drain s':>7}  {'delivered':>15}  "
          f"{'core share':>10}  {'CPU-s / 1,000 deliveries':>24}")
    rates = dict(zip(args.fan_out, args.rate or []))
    for fan_out in args.fan_out:
        for rate in [None] + ([rates[fan_out]] if fan_out in rates else []):
            for _ in range(args.runs):
                r = run(args.binary, fan_out, args.seconds, args.perf, rate)
                print(f"{r['fan_out']:>7}  {f'{rate}/s' if rate else 'flat out':>10}  {r['publishes_per_s']:>11.0f}  {r['deliveries_per_s']:>12.0f}  "
                      f"{r['drain']:>7.1f}  {str(r['delivered']) + ' / ' + str(r['expected']):>15}  "
                      f"{r['core_share'] * 100:>9.0f}%  {r['cpu_per_1000']:>24.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
