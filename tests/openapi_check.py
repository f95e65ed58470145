#!/usr/bin/env python3
"""The OpenAPI document against a real `tidings serve`, by schemathesis.

Starts a receiver (it answers deliveries, Zettle's test message and Metro's test_connection),
a `tidings serve` on a fresh data directory and a key with every scope; validates the served
document with openapi-spec-validator; then runs schemathesis on every operation: no server
errors, and status codes, content types, headers and bodies as the document says. The
document's example destination (receiver.example.com) is pointed at the receiver, so the
examples succeed rather than fail the destination check. Fails if any operation went untested.

Run by scripts/test.sh after `cargo build`, with the venv's Python.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent
TIDINGS = ROOT / "target" / "debug" / "tidings"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLE_RECEIVER = "https://receiver.example.com/hooks"
# The document's example identifiers, replaced by those of records made before the run, so every
# operation's examples reach a real subscription, message or webhook.
EXAMPLE_METRO_ID = "7c0e2a1e-2f7d-4c1a-9d2b-6c1f0e5a4b3d"
EXAMPLE_LAGERKOLL_GUID = "5b1d7f0e-9a3c-4e2b-8f6d-1c2b3a4d5e6f"
EXAMPLE_LAGERKOLL_ID = "3052672938240921"
SCOPES = ["READ:PURCHASE", "READ:PRODUCT", "READ:USERINFO", "READ:ORDER"]
# Every check but one: positive_data_acceptance (a body of the documented shape must be
# accepted) cannot hold here, for reasons no schema can state: a create's destination must answer
# the signed check (Zettle's TestMessage, Metro's test_connection), a Zettle uuid may already be
# taken, a key needs the scope of the events it names, and a replay needs a message still kept.
EXCLUDED_CHECKS = "positive_data_acceptance"
CONFIG = ROOT / "tests" / "schemathesis.toml"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"status":"OK"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def call(base, method, path, body, headers):
    request = Request(f"{base}{path}", method=method, data=json.dumps(body).encode(),
                      headers={"content-type": "application/json", **headers})
    with urlopen(request) as response:
        return json.load(response)


def seed(base, key, org, receiver_url, document):
    """Makes what the document's examples name, the way a client would; returns the document
    text with the example identifiers replaced by the real ones."""
    bearer = {"authorization": f"Bearer {key}"}
    zettle = document["paths"]["/organizations/{organizationUuid}/subscriptions"]["post"]
    create = dict(zettle["requestBody"]["content"]["application/json"]["example"], destination=receiver_url)
    call(base, "POST", "/organizations/self/subscriptions", create, bearer)
    replay = document["paths"]["/organizations/{organizationUuid}/subscriptions/{subscriptionUuid}/replay"]["post"]
    message_id = replay["requestBody"]["content"]["application/json"]["example"]["messageId"]
    call(base, "POST", "/organizations/self/events",
         {"eventName": "ProductCreated", "payload": {"uuid": "p-1"}, "messageId": message_id}, bearer)
    metro = call(base, "POST", "/openapi/v1/subscriptions",
                 {"url": receiver_url, "event": "order_created", "fallbackEmail": "ops@example.com"}, bearer)
    webhook = call(base, "POST", "/v1/webhooks",
                   {"featureId": "articles", "featureMethod": "update", "url": receiver_url},
                   {**bearer, "store": org})["webhooks"][0]
    return (json.dumps(document)
            .replace(EXAMPLE_RECEIVER, receiver_url)
            .replace(EXAMPLE_METRO_ID, metro["id"])
            .replace(EXAMPLE_LAGERKOLL_GUID, webhook["guid"])
            .replace(EXAMPLE_LAGERKOLL_ID, str(webhook["id"])))


def generated_client(base, key, receiver_url, work) -> int:
    """The README's client example, as written: generate the client from the served document,
    then run the Python that uses it."""
    import re
    readme = (ROOT / "README.md").read_text()
    blocks = {name: re.search(rf"<!-- client:{name} -->\n```\w+\n(.*?)```", readme, re.S).group(1)
              for name in ("generate", "python")}
    generate = [line.split("#")[0].strip() for line in blocks["generate"].splitlines() if "generate" in line][0]
    env = {**os.environ, "TIDINGS": base, "KEY": key, "RECEIVER": receiver_url,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", generate], cwd=work, env=env, check=True, capture_output=True)
    (work / "client_example.py").write_text(blocks["python"])
    run = subprocess.run([sys.executable, "client_example.py"], cwd=work, env=env, capture_output=True, text=True)
    print("generated client: " + (run.stdout + run.stderr).strip().replace("\n", "; "))
    expected = run.returncode == 0 and "subscribed d0c1e2f0-8f35-11eb-8dcd-0242ac130003 ACTIVE" in run.stdout \
        and "to 1 subscription(s)" in run.stdout
    return 0 if expected else 1


def main() -> int:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"

    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        data.mkdir()
        org = str(uuid.uuid4())
        created = subprocess.run(
            [TIDINGS, "keys", "create", "--data-dir", data, "--org", org, *[a for s in SCOPES for a in ("--scope", s)]],
            check=True, capture_output=True, text=True)
        key = created.stdout.strip().splitlines()[-1]
        # The client example runs as another organization, untouched by schemathesis.
        other = subprocess.run(
            [TIDINGS, "keys", "create", "--data-dir", data, "--org", str(uuid.uuid4()), "--scope", "READ:PRODUCT"],
            check=True, capture_output=True, text=True)
        client_key = other.stdout.strip().splitlines()[-1]
        log = open(Path(work) / "serve.log", "w")
        serve = subprocess.Popen([TIDINGS, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            first = serve.stdout.readline()
            base = first.split("http://", 1)[1].split(" ", 1)[0]
            base = f"http://{base}"
            document = json.load(urlopen(f"{base}/openapi.json"))
            validate(document)  # raises on an invalid 3.1 document
            print(f"openapi: {base}/openapi.json is a valid OpenAPI {document['openapi']} document")
            operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item if m != "parameters"}

            schema = Path(work) / "openapi.json"
            schema.write_text(seed(base, key, org, receiver_url, document))
            junit = Path(work) / "junit.xml"
            run = subprocess.run([
                SCHEMATHESIS, "--config-file", CONFIG, "run", schema, "--url", base,
                "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS, "--phases", "examples,coverage,fuzzing",
                "--max-examples", "30", "--seed", "20261124", "--workers", "1",
                "--request-timeout", "20", "--no-color", "--continue-on-failure",
                "--report", "junit", "--report-junit-path", junit,
            ], cwd=work, env={**os.environ, "TIDINGS_ST_KEY": key, "TIDINGS_ST_STORE": org})
            tested = set()
            for case in ET.parse(junit).getroot().iter("testcase"):
                if case.find("skipped") is None:
                    method, path = case.get("name").split(" ", 1)
                    tested.add((method, path))
            untested = operations - tested
            if untested:
                print(f"schemathesis: operations never tested: {sorted(untested)}")
                return 1
            print(f"schemathesis: {len(tested)} operations tested, exit code {run.returncode}")
            return run.returncode or generated_client(base, client_key, receiver_url, Path(work))
        finally:
            serve.terminate()
            serve.wait(timeout=30)
            log.close()
            if serve.returncode not in (0, -15):
                print((Path(work) / "serve.log").read_text()[-4000:])


if __name__ == "__main__":
    sys.exit(main())
