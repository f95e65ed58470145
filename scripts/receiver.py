#!/usr/bin/env python3
"""A webhook receiver for trying Tidings locally.

Answers every POST with 200 and {"status":"OK"} (so Metro's test_connection passes too) and
prints the request: path, every header, body. With --save DIR it also writes the last request
received to DIR/body.json (the exact bytes) and DIR/headers.txt (one "Name: value" a line),
which `tidings verify --body DIR/body.json --headers DIR/headers.txt` reads.

Standard library only, so it runs anywhere Python 3 does.
"""
import argparse
import http.server
from pathlib import Path


def handler(save: Path | None):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            print(f"POST {self.path}", flush=True)
            for name, value in self.headers.items():
                print(f"  {name.lower()}: {value}", flush=True)
            print(f"  {body.decode('utf-8', 'replace')}", flush=True)
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / "body.json").write_bytes(body)
                (save / "headers.txt").write_text("".join(f"{n}: {v}\n" for n, v in self.headers.items()))
            answer = b'{"status":"OK"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", nargs="?", type=int, default=9000, help="port on 127.0.0.1 (default 9000)")
    parser.add_argument("--save", type=Path, metavar="DIR",
                        help="write the last request to DIR/body.json and DIR/headers.txt")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.save))
    print(f"receiver listening on http://127.0.0.1:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
