"""A small keep-alive HTTP/1.1 server for the live tests: run inside a namespace.

GET /item/<n>  -> 200 with n bytes of body
POST /echo     -> 201 with "got <length>"
anything else  -> 404
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """Deterministic answers, so the client can log exactly what it received."""

    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/item/"):
            try:
                size = int(self.path.split("/")[2].split("?")[0])
            except ValueError:
                size = -1
            if 0 <= size <= 1 << 20:
                self._answer(200, b"x" * size)
                return
        self._answer(404, b"not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._answer(201, b"got %d" % len(body))

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    """Serve on argv[1]:argv[2] until killed."""
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
    server.daemon_threads = True
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
