"""Record real exchanges with the vulnerable app and write them as a capture (scapy)."""

from __future__ import annotations

import importlib
import json
import socket
import sys
from pathlib import Path
from types import ModuleType

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"

CLIENT_IP = "10.9.0.10"


def craft_module() -> ModuleType:
    """pcaps/craft.py, the crafted captures' scapy building blocks (pcaps/ is not a package)."""
    if str(PCAPS) not in sys.path:
        sys.path.insert(0, str(PCAPS))
    return importlib.import_module("craft")


def exchange(port: int, method: str, target: str, headers: dict[str, str],
             body: bytes = b"") -> tuple[bytes, bytes]:
    """Send one request to 127.0.0.1:port; return the exact request and response bytes.

    A "Host" in headers replaces the default 127.0.0.1:port.
    """
    host = headers.pop("Host", f"127.0.0.1:{port}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}",
             "User-Agent: recorder/1.0", "Accept: application/json", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return request, b"".join(chunks)


def record_pcap(path: Path, port: int,
                calls: list[tuple[str, str, dict[str, str], bytes]]) -> list[int]:
    """Make each call for real, write every exchange as one TCP connection; return statuses."""
    craft = craft_module()
    packets = []
    statuses = []
    for index, (method, target, headers, body) in enumerate(calls):
        request, response = exchange(port, method, target, dict(headers), body)
        statuses.append(int(response.split(b" ", 2)[1]))
        flow = craft.Flow(client=(CLIENT_IP, 40000 + index), server=("127.0.0.1", port),
                          client_isn=1000 + index * 7919, server_isn=500000 + index * 104729)
        packets += flow.handshake() + flow.exchange(request, response) + flow.close()
    craft.write_pcap(path, packets)
    return statuses


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def json_bytes(doc: object) -> bytes:
    """Compact JSON."""
    return json.dumps(doc).encode()


class CountingServer:
    """A decoy on 127.0.0.1 that answers 200 to anything and counts what reached it."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        counter = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                return

            def do_GET(self) -> None:
                counter.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        import threading

        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Shut it down."""
        self._server.shutdown()
        self._server.server_close()
