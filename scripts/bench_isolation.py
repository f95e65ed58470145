#!/usr/bin/env python3
"""Delivery isolation benchmark: prints figures, asserts nothing.

Two organizations, one ProductUpdated subscription each, RATE publishes/s to each for SECONDS
through HTTP against a real `tidings serve` (release build) with --delivery-timeout 5s.
Organization A's receiver answers at once; organization B's receiver answers at once in the
first run and never in time in the second. Prints A's publish->receipt p50/p99 and how many of
A's messages arrived within the run + 8 s, for both runs, and how long `tidings serve` takes to
stop on SIGTERM while B's deliveries hang.

Usage: scripts/bench_isolation.py TIDINGS_BINARY
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

RATE = 50
SECONDS = 15
SETTLE = 8
ORG_A = "5b6a3f52-3c4e-11ee-be56-0242ac120002"
ORG_B = "6c7b4063-3c4e-11ee-be56-0242ac120002"


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return await reader.readexactly(length) if length else b""


class Receiver:
    """Keep-alive HTTP/1.1 receiver; `hang` answers nothing (the sender times out)."""

    def __init__(self, hang=False):
        self.hang = hang
        self.latencies = []

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        try:
            while True:
                body = await read_request(reader)
                if self.hang:
                    await reader.read()  # until the sender gives up and closes
                    return
                try:
                    envelope = json.loads(body)
                    sent = json.loads(envelope["payload"]).get("sentAt")
                    if sent:
                        self.latencies.append(time.time() - sent)
                except (ValueError, KeyError, TypeError):
                    pass
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


async def request(port, method, path, key, body):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ")[1])


async def publisher(port, key, count, interval):
    """Publishes `count` messages at a fixed rate over one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.time()
    for n in range(count):
        await asyncio.sleep(max(0, start + n * interval - time.time()))
        data = json.dumps({"eventName": "ProductUpdated", "payload": {"n": n, "sentAt": time.time()}}).encode()
        writer.write(
            f"POST /organizations/self/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        await reader.readexactly(length)
    writer.close()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


async def scenario(binary, neighbour_hangs):
    data = tempfile.mkdtemp(prefix="tidings-bench-")
    keys = {}
    for org in (ORG_A, ORG_B):
        out = subprocess.run([binary, "keys", "create", "--data-dir", data, "--org", org, "--scope", "READ:PRODUCT"],
                             check=True, capture_output=True, text=True).stdout
        keys[org] = out.strip().splitlines()[-1]
    serve = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--delivery-timeout", "5s"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "RUST_LOG": "warn"})
    port = int(serve.stdout.readline().split("http://")[1].split(" ")[0].split(":")[1])
    healthy, neighbour = Receiver(), Receiver()
    ports = {ORG_A: await healthy.start(), ORG_B: await neighbour.start()}
    for org, uuid in ((ORG_A, "f02f80f8-8f35-11eb-8dcd-0242ac130003"), (ORG_B, "6eefcb26-912c-11eb-a8b3-0242ac130003")):
        status = await request(port, "POST", "/organizations/self/subscriptions", keys[org], {
            "uuid": uuid, "transportName": "WEBHOOK", "eventNames": ["ProductUpdated"],
            "destination": f"http://127.0.0.1:{ports[org]}/hook", "contactEmail": "ops@example.com"})
        assert status == 200, status
    neighbour.hang = neighbour_hangs
    count = RATE * SECONDS
    await asyncio.gather(publisher(port, keys[ORG_A], count, 1 / RATE), publisher(port, keys[ORG_B], count, 1 / RATE))
    await asyncio.sleep(SETTLE)
    delivered = len(healthy.latencies)
    started = time.time()
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=60)
    stop = time.time() - started
    for receiver in (healthy, neighbour):
        receiver.server.close()
    ms = [l * 1000 for l in healthy.latencies]
    return percentile(ms, 0.5), percentile(ms, 0.99), delivered, count, stop


async def main():
    binary = sys.argv[1]
    # Connections the stopped server left half-open are not news.
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    print(f"Delivery isolation: {RATE} publishes/s to each of two organizations for {SECONDS} s, "
          f"--delivery-timeout 5s; the healthy organization's publish->receipt latency")
    print(f"{'neighbour':<22} {'p50 ms':>8} {'p99 ms':>8} {'delivered in run+8s':>20} {'SIGTERM->exit s':>16}")
    for hangs in (False, True):
        p50, p99, delivered, count, stop = await scenario(binary, hangs)
        label = "timing out" if hangs else "healthy"
        print(f"{label:<22} {p50:>8.1f} {p99:>8.1f} {f'{delivered} / {count}':>20} {stop:>16.2f}")


if __name__ == "__main__":
    asyncio.run(main())
