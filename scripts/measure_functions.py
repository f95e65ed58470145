"""Measures each Lambda function binary as Lambda runs it: init time (process start to its first
request for work on the Runtime API) and peak memory (VmHWM) after 1,000 invocations, with the
wall time of each invocation. Prints one table; the README's operations section quotes it.

This script plays the Lambda Runtime API itself (so it sees the first `next` request) and uses
the AWS-API emulator for the functions' AWS calls; durations therefore lack real AWS latency
(see the README's cost model for how that is added back).

    .venv/bin/python scripts/measure_functions.py [--bins target/size-first/release] [--invocations 1000]

Needs AWS_ENDPOINT_URL pointing at a running moto server (scripts/bench.sh starts one).
"""
import argparse
import http.server
import json
import os
import pathlib
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent


class RuntimeApi(http.server.ThreadingHTTPServer):
    """A Lambda Runtime API: hands out queued events, records responses and timings."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.events = queue.Queue()
        self.responses = {}
        self.sent_at = {}
        self.first_next = None
        self.done = threading.Condition()


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        api = self.server
        if api.first_next is None:
            api.first_next = time.monotonic()
        request_id, event = api.events.get()
        body = json.dumps(event).encode()
        api.sent_at[request_id] = time.monotonic()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:measure")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        api = self.server
        length = int(self.headers.get("Content-Length", 0))
        payload = self.rfile.read(length)
        parts = self.path.split("/")
        request_id = parts[-2] if parts[-1] in ("response", "error") else None
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if request_id:
            with api.done:
                api.responses[request_id] = (time.monotonic() - api.sent_at[request_id], parts[-1], payload)
                api.done.notify_all()


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def rest_event(method, path, resource, key, body=None):
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        "multiValueHeaders": {"Authorization": [f"Bearer {key}"], "Content-Type": ["application/json"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"organizationUuid": "self"}, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/Prod{path}", "stage": "Prod",
                           "requestId": str(uuid.uuid4()), "accountId": "123456789012",
                           "identity": {"sourceIp": "127.0.0.1"}, "apiId": "measure"},
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def run_function(binary, env, events):
    """Starts `binary`, feeds it `events`; returns (init s, per-invocation s, peak KiB, responses)."""
    api = RuntimeApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    ids = []
    for event in events:
        request_id = str(uuid.uuid4())
        ids.append(request_id)
        api.events.put((request_id, event))
    child_env = {**os.environ, **env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
                 "AWS_LAMBDA_FUNCTION_NAME": binary.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_FORMAT": "JSON", "RUST_LOG": "warn"}
    started = time.monotonic()
    process = subprocess.Popen([str(binary)], env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with api.done:
        api.done.wait_for(lambda: len(api.responses) == len(ids), timeout=600)
    peak_kib = 0
    with open(f"/proc/{process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    process.kill()
    process.wait()
    api.shutdown()
    init = api.first_next - started
    durations = [api.responses[i][0] for i in ids]
    return init, durations, peak_kib, [api.responses[i] for i in ids]


def cli(*args):
    out = subprocess.run([str(ROOT / "target" / "release" / "tidings"), *args], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bins", default="target/release", help="the folder holding the three function binaries")
    # The key is made with the `tidings` CLI of the speed-first release build (target/release).
    parser.add_argument("--invocations", type=int, default=1000)
    args = parser.parse_args()
    n = args.invocations
    bins = ROOT / args.bins

    deployed = subprocess.run([sys.executable, str(ROOT / "tests" / "emulated_deploy.py"), "--suffix",
                               uuid.uuid4().hex[:10], "--sender", "alerts@tidings.example.com"],
                              capture_output=True, text=True, check=True)
    manifest = json.loads(deployed.stdout)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    destination = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    org = str(uuid.uuid4())
    env = {**manifest["functions"]["SubscriptionsFunction"]["env"], "TIDINGS_DESTINATIONS": "local"}
    key = cli("keys", "create", "--table", env["TIDINGS_TABLE"], "--org", org, "--scope", "READ:PRODUCT")

    rows = []
    # Subscriptions: one create, then lists.
    create = rest_event("POST", "/organizations/self/subscriptions", "/organizations/{organizationUuid}/subscriptions", key,
                        {"uuid": str(uuid.uuid1()), "transportName": "WEBHOOK", "eventNames": ["ProductUpdated"],
                         "destination": destination, "contactEmail": "ops@example.com"})
    lists = [rest_event("GET", "/organizations/self/subscriptions", "/organizations/{organizationUuid}/subscriptions", key)
             for _ in range(n - 1)]
    init, durations, peak, responses = run_function(bins / "tidings-subscriptions", env, [create] + lists)
    assert json.loads(responses[0][2])["statusCode"] == 200, responses[0]
    rows.append(("subscriptions", init, durations[1:], peak, "GET list (1 subscription)"))

    # Ingest: publishes at fan-out 1.
    publishes = [rest_event("POST", "/organizations/self/events", "/organizations/{organizationUuid}/events", key,
                            {"eventName": "ProductUpdated", "payload": {"uuid": str(uuid.uuid4()), "n": i}, "messageId": f"m-{i}"})
                 for i in range(n)]
    init, durations, peak, responses = run_function(bins / "tidings-ingest", env, publishes)
    assert all(json.loads(r[2])["statusCode"] == 202 for r in responses), responses[0]
    rows.append(("ingest", init, durations, peak, "publish, fan-out 1"))

    # Delivery: SQS batches of 10 records (the template's BatchSize), each job one of the queued ones.
    import boto3
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = manifest["outputs"]["DeliveryQueueUrl"]
    bodies = []
    while len(bodies) < 10:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        bodies += [m["Body"] for m in got]
    arn = next(s["queue_arn"] for s in manifest["event_sources"] if s["queue_url"] == queue_url)
    batch = {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": f"r-{i}", "body": body,
                          "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                          "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}
                         for i, body in enumerate(bodies[:10])]}
    init, durations, peak, responses = run_function(bins / "tidings-delivery", env, [batch] * n)
    assert all(json.loads(r[2])["batchItemFailures"] == [] for r in responses), responses[0]
    rows.append(("delivery", init, durations, peak, "SQS batch of 10, receiver answers 200"))

    print(f"{'function':<14} {'init ms':>8} {'peak MiB':>9} {'p50 ms':>7} {'p99 ms':>7}  invocations of")
    for name, init, durations, peak, what in rows:
        q = statistics.quantiles(durations, n=100)
        print(f"{name:<14} {init * 1000:8.1f} {peak / 1024:9.1f} {q[49] * 1000:7.1f} {q[98] * 1000:7.1f}  {len(durations)} x {what}")


if __name__ == "__main__":
    main()
