"""The local store's size under the retention purge: a run of publishes (fan-out 1, each
delivered and its attempt recorded), then the same data aged past its retention (messages past
expiry, attempts past 30 days), `tidings serve` restarted so its worker purges, and the same run
again. Without the purge the second run doubles the file; with it, freed pages are reused.

    python3 scripts/bench_retention.py target/release/tidings [publishes]
"""
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

binary = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir, port):
    process = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit("tidings serve did not start")


def call(port, key, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return response.status


def size(data_dir):
    """The database file after a checkpoint (the WAL folded in and truncated)."""
    db = os.path.join(data_dir, "tidings.db")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(db)


def run(port, key, offset):
    payload = {"uuid": str(uuid.uuid4()), "name": "x" * 900}
    for n in range(count):
        call(port, key, "/organizations/self/events", {"eventName": "ProductCreated", "payload": payload, "messageId": f"m-{offset + n}"})


def attempts(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]


def main():
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    data_dir = tempfile.mkdtemp()
    org = str(uuid.uuid4())
    key = subprocess.run([binary, "keys", "create", "--data-dir", data_dir, "--org", org, "--scope", "READ:PRODUCT"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    db = os.path.join(data_dir, "tidings.db")
    port = free_port()
    process = serve(data_dir, port)
    call(port, key, "/organizations/self/subscriptions",
         {"uuid": str(uuid.uuid1()), "transportName": "WEBHOOK", "eventNames": ["ProductCreated"],
          "destination": f"http://127.0.0.1:{receiver.server_address[1]}/hook", "contactEmail": "ops@example.com"})
    run(port, key, 0)
    while attempts(db) < count:
        time.sleep(0.2)
    process.terminate()
    process.wait()
    first = size(data_dir)
    # The same data, aged past its retention.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE attempts SET at = at - ?", (31 * 86400 * 10**9,))
        conn.execute("UPDATE publishes SET expires_at = 0")
    process = serve(data_dir, port)
    while attempts(db) > 0:
        time.sleep(0.2)
    run(port, key, count)
    while attempts(db) < count:
        time.sleep(0.2)
    process.terminate()
    process.wait()
    second = size(data_dir)
    mib = 1024 * 1024
    print(f"retention: {count} publishes, fan-out 1, ~1 KB payloads: data dir {first / mib:.1f} MiB after the first run, "
          f"{second / mib:.1f} MiB after the same run again once the first aged out (no purge: about {2 * first / mib:.1f} MiB)")


if __name__ == "__main__":
    main()
