#!/usr/bin/env python3
"""The README's receiver snippets (Python and Node) against a real delivery.

Takes the code blocks marked `<!-- receiver:python -->` and `<!-- receiver:node -->` out of
README.md as written, then: starts `tidings serve` and a receiver that keeps what it gets,
subscribes it to ProductCreated through the Zettle API, publishes one event, and hands the
delivery exactly as received (raw body, headers) to each snippet: it must accept it, and
refuse it with one byte of the body changed and with another signing key.

Run by scripts/test.sh with the venv's Python (which has `standardwebhooks`), after `npm ci`
in tests/receivers.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
TIDINGS = ROOT / "target" / "debug" / "tidings"
NODE_PACKAGES = ROOT / "tests" / "receivers" / "node_modules"

PYTHON_DRIVER = """
import json, sys
from verify_webhook import verify
body = open(sys.argv[1], "rb").read()
headers = json.load(open(sys.argv[2]))
try:
    event = verify(body, headers, sys.argv[3])
    print("accepted", event["eventName"])
    sys.exit(0)
except Exception as refusal:
    print("refused:", type(refusal).__name__, refusal)
    sys.exit(3)
"""

NODE_DRIVER = """
import { readFileSync } from "node:fs";
import { verify } from "./verify_webhook.mjs";
const [bodyFile, headersFile, key] = process.argv.slice(2);
try {
  const event = verify(readFileSync(bodyFile), JSON.parse(readFileSync(headersFile, "utf8")), key);
  console.log("accepted", event.eventName);
} catch (refusal) {
  console.log("refused:", refusal.name, refusal.message);
  process.exit(3);
}
"""

received = []


class Keeper(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        received.append((body, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def snippet(readme: str, language: str) -> str:
    match = re.search(rf"<!-- receiver:{language} -->\n```\w+\n(.*?)```", readme, re.S)
    if not match:
        raise SystemExit(f"no <!-- receiver:{language} --> block in README.md")
    return match.group(1)


def api(base, method, path, key, body):
    request = Request(f"{base}{path}", method=method, data=json.dumps(body).encode(),
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urlopen(request) as response:
        return json.load(response)


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    keeper = ThreadingHTTPServer(("127.0.0.1", 0), Keeper)
    threading.Thread(target=keeper.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "verify_webhook.py").write_text(snippet(readme, "python"))
        (work / "verify_webhook.mjs").write_text(snippet(readme, "node"))
        (work / "driver.py").write_text(PYTHON_DRIVER)
        (work / "driver.mjs").write_text(NODE_DRIVER)
        (work / "node_modules").symlink_to(NODE_PACKAGES)

        data = work / "data"
        data.mkdir()
        created = subprocess.run([TIDINGS, "keys", "create", "--data-dir", data, "--org", str(uuid.uuid4()),
                                  "--scope", "READ:PRODUCT"], check=True, capture_output=True, text=True)
        key = created.stdout.strip().splitlines()[-1]
        serve = subprocess.Popen([TIDINGS, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            base = "http://" + serve.stdout.readline().split("http://", 1)[1].split(" ", 1)[0]
            subscription = api(base, "POST", "/organizations/self/subscriptions", key, {
                "uuid": "f02f80f8-8f35-11eb-8dcd-0242ac130003", "transportName": "WEBHOOK",
                "eventNames": ["ProductCreated"], "destination": f"http://127.0.0.1:{keeper.server_address[1]}/hooks",
                "contactEmail": "ops@example.com"})
            api(base, "POST", "/organizations/self/events", key,
                {"eventName": "ProductCreated", "payload": {"uuid": "p-1", "name": "12\" pizza"}})
            deadline = time.time() + 20
            while len(received) < 2 and time.time() < deadline:  # the destination check, then the delivery
                time.sleep(0.05)
        finally:
            serve.terminate()
            serve.wait(timeout=30)
        if len(received) < 2:
            print("receivers: no delivery arrived")
            return 1
        body, headers = received[-1]
        (work / "body").write_bytes(body)
        (work / "tampered").write_bytes(body.replace(b"pizza", b"pizzo"))
        (work / "headers.json").write_text(json.dumps(headers))
        signing_key = subscription["signingKey"]
        cases = [("body", signing_key, 0), ("tampered", signing_key, 3), ("body", "x" * 64, 3)]
        failed = 0
        for language, command in [("python", [sys.executable, "driver.py"]), ("node", ["node", "driver.mjs"])]:
            for body_file, key_used, expected in cases:
                run = subprocess.run([*command, body_file, "headers.json", key_used], cwd=work,
                                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(work)})
                what = f"{language}: {body_file} with {'its' if key_used == signing_key else 'another'} key"
                ok = run.returncode == expected
                failed += not ok
                print(f"receivers: {what}: {(run.stdout + run.stderr).strip()} ({'ok' if ok else 'WRONG'})")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
