#!/usr/bin/env python3
"""A webhook receiver for trying Tidings locally: answers every POST with 200 and prints it.

    python3 scripts/receiver.py [PORT]        (default 9000)

Standard library only, so it runs anywhere Python 3 does.
"""
import http.server
import sys

SHOWN_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "x-izettle-signature")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        print(f"POST {self.path}", flush=True)
        for name in SHOWN_HEADERS:
            if self.headers.get(name):
                print(f"  {name}: {self.headers[name]}", flush=True)
        print(f"  {body.decode('utf-8', 'replace')}", flush=True)
        answer = b'{"status":"OK"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"receiver listening on http://127.0.0.1:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
