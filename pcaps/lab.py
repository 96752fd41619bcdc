"""A loopback lab: a real JSON API server, a scripted client that logs what it did, a recorder.

Everything talks to 127.0.0.1 only.  The client's log is the ground truth the end-to-end test
compares the pipeline against, so it records what went over the wire *as the client saw it*:
the request target exactly as sent, the status, the request body length and the response body
length after de-chunking and after gzip decoding (``response_body_len``), plus the length
before content decoding (``response_content_len``).

Used by tests/e2e (small sessions), pcaps/make_pcaps.py (demo.pcap) and bench/make_capture.py
(large captures, with the server in its own process).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
USERS = {f"user{n:03d}": f"pw-{n:03d}-secret" for n in range(1, 41)} | {"alice": "wonderland"}
KNOWN_USER_IDS = range(1, 21)  # /api/v1/users/{id} answers 200 for these, 404 otherwise
_JWT_KEY = b"lab-signing-key"  # the token only has to *look* like a JWT
_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_USER_RE = re.compile(r"/api/v1/users/(\d+)")
_ORDER_RE = re.compile(rf"/api/v1/orders/({_UUID_RE})")
_CHUNK = 1024  # chunk size of chunked responses


class CaptureUnavailable(RuntimeError):
    """Neither tcpdump nor scapy can capture on the loopback interface here."""


# ---------------------------------------------------------------------------- server


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(username: str) -> str:
    """A deterministic, JWT-shaped bearer token (HS256-signed) for ``username``."""
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url(json.dumps({"sub": username, "iat": 1700000000}).encode())
    signature = hmac.new(_JWT_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _token_user(authorization: str | None) -> str | None:
    if not authorization or not authorization.startswith("Bearer "):
        return None
    token = authorization[7:].strip()
    try:
        payload = token.split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    return sub if hmac.compare_digest(make_token(sub), token) else None


def _static_app_js(size: int = 50_000) -> bytes:
    """A deterministic, JavaScript-looking bundle of about ``size`` bytes."""
    rng = random.Random(1234)
    words = ["fetch", "render", "state", "props", "user", "order", "cart", "token", "route"]
    parts: list[str] = ["/* lab app bundle */\n'use strict';\n"]
    total = len(parts[0])
    n = 0
    while total < size:
        name = f"{rng.choice(words)}{rng.choice(words).title()}{n}"
        line = (
            f"function {name}(a, b) {{ const v = a.{rng.choice(words)} || {rng.randint(0, 999)};"
            f" return b ? v + '{rng.choice(words)}' : [v, {n}]; }}\n"
        )
        parts.append(line)
        total += len(line)
        n += 1
    return "".join(parts).encode()[:size]


APP_JS = _static_app_js()
APP_JS_ETAG = '"' + hashlib.sha256(APP_JS).hexdigest()[:16] + '"'


def _user(user_id: int) -> dict[str, object]:
    rng = random.Random(user_id)
    return {
        "id": user_id,
        "username": f"user{user_id:03d}",
        "display_name": f"User {user_id}",
        "created": f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "roles": ["customer"] if user_id % 7 else ["customer", "admin"],
    }


def _products(limit: int, page: int) -> list[dict[str, object]]:
    first = (page - 1) * limit + 1
    out = []
    for pid in range(first, first + limit):
        rng = random.Random(pid)
        out.append(
            {
                "id": pid,
                "sku": f"SKU-{pid:06d}",
                "name": f"Product {pid}",
                "price": round(rng.uniform(1, 500), 2),
                "stock": rng.randint(0, 1000),
                "tags": rng.sample(["new", "sale", "eco", "bulk", "gift", "b2b"], 2),
            }
        )
    return out


class ApiHandler(BaseHTTPRequestHandler):
    """The lab's JSON API (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "labapi/1.0"
    sys_version = ""

    def setup(self) -> None:
        """Disable Nagle: headers and body go out as separate writes without a 40 ms stall."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    # -------------------------------------------------------------- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _wants_gzip(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "").lower()

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
        compressible: bool = False,
        chunked: bool = False,
    ) -> None:
        if compressible and body and self._wants_gzip():
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers = (*headers, ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
        self.send_response(status)
        no_body = status in (204, 304) or 100 <= status < 200
        if body or not no_body:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        if chunked and not no_body:
            self.send_header("Transfer-Encoding", "chunked")
        elif not no_body:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD" or no_body:
            return
        if chunked:
            for start in range(0, len(body), _CHUNK):
                piece = body[start : start + _CHUNK]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def _json(self, status: int, obj: object, **kwargs: object) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), **kwargs)  # type: ignore[arg-type]

    def _unauthorized(self) -> None:
        self._json(401, {"error": "unauthorized"}, headers=(("WWW-Authenticate", "Bearer"),))

    # --------------------------------------------------------------- routing

    def do_GET(self) -> None:
        """Serve GET (and HEAD through it)."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Serve HEAD: GET's headers without the body."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve POST."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Serve PUT (always 405: the API has none)."""
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            self._route(body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _route(self, body: bytes) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        method = self.command
        user = _token_user(self.headers.get("Authorization"))
        if ".." in path or "%2e%2e" in self.path.lower() or "%2f" in path.lower():
            self._json(400, {"error": "bad path"})
        elif path == "/health":
            self._json(200, {"status": "ok", "version": "1.4.2"})
        elif path == "/static/app.js" and method in ("GET", "HEAD"):
            if self.headers.get("If-None-Match") == APP_JS_ETAG:
                self._send(304, headers=(("ETag", APP_JS_ETAG),))
            else:
                self._send(200, APP_JS, content_type="application/javascript",
                           headers=(("ETag", APP_JS_ETAG), ("Cache-Control", "max-age=60")))
        elif path == "/api/v1/login" and method == "POST":
            self._login(body)
        elif path == "/api/v1/users/me" and method == "GET":
            if user is None:
                self._unauthorized()
            else:
                number = int(user[4:]) if user.startswith("user") else 99
                self._json(200, {**_user(number), "username": user,
                                 "email": f"{user}@example.com", "phone": "+1-202-555-0143"})
        elif (m := _USER_RE.fullmatch(path)) and method == "GET":
            user_id = int(m.group(1))
            if user_id in KNOWN_USER_IDS:
                self._json(200, _user(user_id))
            else:
                self._json(404, {"error": "no such user", "id": user_id})
        elif path == "/api/v1/products" and method == "GET":
            self._products(query, chunked=False)
        elif path == "/api/v2/products" and method == "GET":
            self._products(query, chunked=True)
        elif path == "/api/v1/orders" and method == "POST":
            self._create_order(user, body)
        elif (m := _ORDER_RE.fullmatch(path)) and method in ("GET", "DELETE"):
            if user is None:
                self._unauthorized()
            elif method == "DELETE":
                self._send(204)
            else:
                rng = random.Random(m.group(1))
                self._json(200, {"id": m.group(1), "status": "paid", "owner": user,
                                 "total": round(rng.uniform(5, 900), 2)})
        elif path == "/api/v1/account/billing" and method == "GET":
            if user is None:
                self._unauthorized()
            else:
                # Sensitive-looking data for detectors: e-mail, phone, a test card number.
                self._json(200, {"owner": user, "email": f"{user}@example.com",
                                 "phone": "+1-202-555-0187", "card_number": "4111 1111 1111 1111",
                                 "card_expiry": "12/29", "iban": "DE89370400440532013000"})
        elif path.startswith("/api/") and method == "PUT":
            self._json(405, {"error": "method not allowed"}, headers=(("Allow", "GET, POST"),))
        else:
            self._json(404, {"error": "not found", "path": path})

    def _login(self, body: bytes) -> None:
        try:
            creds = json.loads(body)
            username, password = str(creds["username"]), str(creds["password"])
        except (ValueError, KeyError, TypeError):
            self._json(400, {"error": "bad request"})
            return
        if USERS.get(username) != password:
            self._json(401, {"error": "invalid credentials"})
            return
        session = hashlib.sha256(username.encode()).hexdigest()[:32]
        self._json(200, {"token": make_token(username), "expires_in": 3600},
                   headers=(("Set-Cookie", f"session={session}; Path=/; HttpOnly"),))

    def _products(self, query: dict[str, list[str]], *, chunked: bool) -> None:
        try:
            limit = int(query.get("limit", ["20"])[0])
            page = int(query.get("page", ["1"])[0])
        except ValueError:
            self._json(400, {"error": "limit and page must be integers"})
            return
        if not (1 <= limit <= 200 and 1 <= page <= 1000):
            self._json(400, {"error": "out of range"})
            return
        self._json(200, {"page": page, "items": _products(limit, page)},
                   compressible=True, chunked=chunked)

    def _create_order(self, user: str | None, body: bytes) -> None:
        if user is None:
            self._unauthorized()
            return
        try:
            order = json.loads(body)
            items = order["items"]
        except (ValueError, KeyError, TypeError):
            self._json(400, {"error": "bad order"})
            return
        order_id = str(uuid.UUID(bytes=hashlib.md5(body).digest()))
        self._json(201, {"id": order_id, "items": len(items), "status": "created"},
                   headers=(("Location", f"/api/v1/orders/{order_id}"),))


class _LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


@contextmanager
def lab_server(port: int = 0) -> Iterator[int]:
    """Run the API server on 127.0.0.1 in a thread; yield its port."""
    server = _LabHTTPServer((LOOPBACK, port), ApiHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_forever(port: int, ready: object = None) -> None:
    """Run the server in the current process until killed (for multiprocessing)."""
    server = _LabHTTPServer((LOOPBACK, port), ApiHandler)
    if ready is not None:
        ready.put(server.server_address[1])  # type: ignore[attr-defined]
    server.serve_forever(poll_interval=0.1)


# ---------------------------------------------------------------------------- client


@dataclass(slots=True)
class Exchange:
    """One request/response as the client did it."""

    conn_index: int  # the client's own numbering of the TCP connections it opened
    client_port: int  # the local port of that connection: the key to match flows by
    method: str
    path: str  # the request target exactly as sent
    status: int
    request_body_len: int  # bytes of request body (decoded, i.e. before chunk framing)
    response_body_len: int  # after de-chunking AND after gzip decoding
    response_content_len: int  # after de-chunking, before content decoding
    content_encoding: str  # "" for identity
    chunked_response: bool
    interim_status: int | None = None  # 100 when the client waited for 100-continue
    request_body_sha256: str | None = None  # of the decoded body; None when empty
    response_body_sha256: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def _digest(data: bytes) -> str | None:
    return hashlib.sha256(data).hexdigest() if data else None


class LabConnection:
    """One TCP connection of the client; every request on it is logged."""

    def __init__(self, client: LabClient, index: int, timeout: float) -> None:
        self.client = client
        self.index = index
        self.http = http.client.HTTPConnection(client.host, client.port, timeout=timeout)
        self.http.connect()
        # Nagle + delayed ACK would stall every request sent in two writes by 40 ms.
        self.http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        """Close the socket (FIN)."""
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | list[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        expect_continue: bool = False,
        auth: bool = False,
        close: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request, read the whole response, log it; return (status, headers, body)."""
        hdrs = dict(self.client.default_headers)
        hdrs.update(headers or {})
        if auth and self.client.token:
            hdrs["Authorization"] = f"Bearer {self.client.token}"
        if self.client.cookie:
            hdrs["Cookie"] = self.client.cookie
        if close:
            hdrs["Connection"] = "close"
        raw_request = b"".join(body) if isinstance(body, list) else (body or b"")
        interim = None
        conn = self.http
        if expect_continue:
            if not isinstance(body, bytes):
                raise TypeError("expect_continue needs a bytes body")
            conn.putrequest(method, path, skip_accept_encoding="Accept-Encoding" in hdrs)
            for name, value in hdrs.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Expect", "100-continue")
            conn.endheaders()
            # The server answers "100 Continue" at once; getresponse() skips it later, so
            # peek to log whether it really came before the body was sent.
            readable, _, _ = select.select([conn.sock], [], [], 2.0)
            if readable and conn.sock.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 100"):
                interim = 100
            conn.send(body)
        elif isinstance(body, list):
            conn.request(method, path, body=iter(body), headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        port = conn.sock.getsockname()[1]
        resp = conn.getresponse()
        raw = resp.read()  # de-chunked by http.client
        encoding = (resp.getheader("Content-Encoding") or "").lower()
        decoded = gzip.decompress(raw) if encoding == "gzip" and raw else raw
        chunked = "chunked" in (resp.getheader("Transfer-Encoding") or "").lower()
        set_cookie = resp.getheader("Set-Cookie")
        if set_cookie:
            self.client.cookie = set_cookie.split(";", 1)[0]
        self.client.exchanges.append(
            Exchange(self.index, port, method, path, resp.status, len(raw_request), len(decoded),
                     len(raw), encoding, chunked, interim, _digest(raw_request), _digest(decoded))
        )
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, decoded


class LabClient:
    """A client of the lab API that keeps a log of every exchange."""

    def __init__(self, port: int, host: str = LOOPBACK, *, user_agent: str = "lab-client/1.0",
                 timeout: float = 10.0) -> None:
        if host != LOOPBACK:
            raise ValueError("the lab only ever talks to 127.0.0.1")
        self.host, self.port, self.timeout = host, port, timeout
        self.exchanges: list[Exchange] = []
        self.token: str | None = None
        self.cookie: str | None = None
        self.default_headers: dict[str, str] = {"User-Agent": user_agent,
                                                "Accept": "application/json"}
        self._next_index = 0

    @contextmanager
    def connection(self) -> Iterator[LabConnection]:
        """A keep-alive connection for several sequential requests."""
        conn = LabConnection(self, self._next_index, self.timeout)
        self._next_index += 1
        try:
            yield conn
        finally:
            conn.close()

    def one_shot(self, method: str, path: str,
                 **kwargs: object) -> tuple[int, dict[str, str], bytes]:
        """A single request on its own connection, with ``Connection: close``."""
        with self.connection() as conn:
            return conn.request(method, path, close=True, **kwargs)  # type: ignore[arg-type]

    def login(self, conn: LabConnection, username: str, password: str) -> bool:
        """POST /api/v1/login; keep the token on success."""
        body = json.dumps({"username": username, "password": password}).encode()
        status, _, data = conn.request("POST", "/api/v1/login", body,
                                       {"Content-Type": "application/json"})
        if status == 200:
            self.token = json.loads(data)["token"]
        return status == 200


# -------------------------------------------------------------------------- scenarios


def _order_body(rng: random.Random, items: int) -> bytes:
    lines = [{"sku": f"SKU-{rng.randint(1, 99999):06d}", "qty": rng.randint(1, 5)}
             for _ in range(items)]
    return json.dumps({"items": lines, "note": "deliver to the back door"}).encode()


def user_session(client: LabClient, rng: random.Random, username: str, *,
                 first_visit: bool = True) -> None:
    """A plausible user: static asset, login, browse (gzip, chunked), order, check out, logout."""
    with client.connection() as conn:
        headers = {"Accept": "*/*"}
        if not first_visit:
            headers["If-None-Match"] = APP_JS_ETAG
        conn.request("GET", "/static/app.js", headers=headers)
        conn.request("HEAD", "/health")
        if rng.random() < 0.3:
            client.login(conn, username, "wrong-password")
        client.login(conn, username, USERS.get(username, "x"))
        conn.request("GET", "/api/v1/users/me", auth=True)
        gz = {"Accept-Encoding": "gzip, deflate"}
        for page in range(1, rng.randint(2, 4)):
            conn.request("GET", f"/api/v1/products?limit={rng.choice([10, 20, 50])}&page={page}",
                         headers=gz if rng.random() < 0.7 else None)
        conn.request("GET", f"/api/v2/products?limit={rng.choice([20, 60])}",
                     headers=gz if rng.random() < 0.5 else None)
        status, _, data = conn.request("POST", "/api/v1/orders",
                                       _order_body(rng, rng.randint(1, 6)),
                                       {"Content-Type": "application/json"}, auth=True)
        if status == 201:
            order_id = json.loads(data)["id"]
            conn.request("GET", f"/api/v1/orders/{order_id}", auth=True)
            if rng.random() < 0.5:
                conn.request("DELETE", f"/api/v1/orders/{order_id}", auth=True)
        conn.request("GET", "/api/v1/account/billing", auth=True)
        if rng.random() < 0.2:
            conn.request("GET", "/api/v1/wishlist")  # unknown: 404
    # A couple of short Connection: close requests (health checks, a user lookup).
    client.one_shot("HEAD", "/health")
    client.one_shot("GET", f"/api/v1/users/{rng.randint(1, 25)}", auth=True)


def bulk_upload(client: LabClient, rng: random.Random) -> None:
    """A large order with Expect: 100-continue, and one chunked-encoded upload."""
    with client.connection() as conn:
        client.login(conn, "alice", "wonderland")
        conn.request("POST", "/api/v1/orders", _order_body(rng, 400),
                     {"Content-Type": "application/json"}, expect_continue=True, auth=True)
        body = _order_body(rng, 30)
        pieces = [body[i : i + 700] for i in range(0, len(body), 700)]
        conn.request("POST", "/api/v1/orders", pieces, {"Content-Type": "application/json"},
                     auth=True)


def attacker_session(client: LabClient, rng: random.Random) -> None:
    """Attack-shaped traffic: credential stuffing, SQLi, traversal, id enumeration."""
    client.default_headers["User-Agent"] = "python-requests/2.31.0"
    with client.connection() as conn:
        for n in range(8):
            client.login(conn, f"user{rng.randint(1, 40):03d}", f"guess{n}")
        client.login(conn, "user007", USERS["user007"])
        conn.request("GET", "/api/v1/products?limit=10&page=1%27%20OR%20%271%27=%271")
        conn.request("GET", "/api/v1/products?limit=10;DROP%20TABLE%20users--&page=1")
        conn.request("GET", "/static/../../../etc/passwd")
        conn.request("GET", "/static/..%2f..%2f..%2fetc%2fpasswd")
        conn.request("PUT", "/api/v1/users/1", b'{"roles":["admin"]}',
                     {"Content-Type": "application/json"}, auth=True)
    with client.connection() as conn:
        for user_id in range(1, 31):
            conn.request("GET", f"/api/v1/users/{user_id}", auth=True)


def standard_scenario(port: int, *, seed: int = 7, users: int = 10,
                      attackers: int = 1) -> list[Exchange]:
    """A mixed workload: users, one bulk uploader, attackers.  Returns the client's log."""
    rng = random.Random(seed)
    exchanges: list[Exchange] = []
    for n in range(users):
        client = LabClient(port, user_agent=f"Mozilla/5.0 lab-browser/{n % 3 + 1}")
        user_session(client, rng, f"user{n % 40 + 1:03d}", first_visit=n < 2)
        exchanges += client.exchanges
    client = LabClient(port)
    bulk_upload(client, rng)
    exchanges += client.exchanges
    for _ in range(attackers):
        client = LabClient(port)
        attacker_session(client, rng)
        exchanges += client.exchanges
    return exchanges


# --------------------------------------------------------------------------- recorder


@dataclass(slots=True)
class RecordResult:
    """What the recorder captured."""

    pcap_path: str
    tool: str  # "tcpdump" | "scapy"
    port: int = 0  # the recorded server port
    packets_captured: int | None = None
    packets_dropped: int | None = None  # by the kernel (capture buffer overrun)


def capture_tool() -> str | None:
    """The capture tool this host can use: "tcpdump", "scapy" (root only) or None."""
    if shutil.which("tcpdump") and os.geteuid() == 0:
        return "tcpdump"
    if os.geteuid() == 0:
        try:
            import scapy.all  # noqa: F401
        except ImportError:
            return None
        return "scapy"
    return None


def record(pcap_path: str | os.PathLike[str], fn: Callable[[], object], *, port: int,
           iface: str = "lo", settle: float = 0.3, buffer_kib: int = 32768,
           tool: str | None = None) -> RecordResult:
    """Capture ``tcp port <port>`` on ``iface`` into ``pcap_path`` while ``fn()`` runs."""
    tool = tool or capture_tool()
    if tool == "tcpdump":
        return _record_tcpdump(str(pcap_path), fn, port, iface, settle, buffer_kib)
    if tool == "scapy":
        return _record_scapy(str(pcap_path), fn, port, iface, settle)
    raise CaptureUnavailable("cannot capture: need root and tcpdump (or scapy)")


def _record_tcpdump(pcap_path: str, fn: Callable[[], object], port: int, iface: str,
                    settle: float, buffer_kib: int) -> RecordResult:
    # --immediate-mode: without it TPACKET_V3 holds packets in a ring block until a 1 s
    # timeout, and whatever sits in the current block is lost when tcpdump is stopped.
    cmd = ["tcpdump", "-i", iface, "-w", pcap_path, "-U", "-s", "0", "-n", "--immediate-mode",
           "-B", str(buffer_kib), "-Z", "root", f"tcp port {port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    listening = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.strip())
            if "listening on" in line:
                listening.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not listening.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise CaptureUnavailable("tcpdump did not start: " + " | ".join(lines))
    try:
        fn()
        time.sleep(settle)  # let the last FIN/ACKs reach the capture
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    result = RecordResult(pcap_path, "tcpdump", port)
    for line in lines:
        if m := re.match(r"(\d+) packets? captured", line):
            result.packets_captured = int(m.group(1))
        elif m := re.match(r"(\d+) packets? dropped by kernel", line):
            result.packets_dropped = int(m.group(1))
    return result


def _record_scapy(pcap_path: str, fn: Callable[[], object], port: int, iface: str,
                  settle: float) -> RecordResult:
    try:
        from scapy.all import TCP, AsyncSniffer, conf, wrpcap
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureUnavailable(f"scapy unavailable: {exc}") from exc
    started = threading.Event()

    def ours(pkt: object) -> bool:
        return TCP in pkt and port in (pkt[TCP].sport, pkt[TCP].dport)  # type: ignore[index,operator]

    try:
        # An L2Socket (not the default listen socket) drops PACKET_OUTGOING copies: on
        # loopback every packet would otherwise be captured twice.
        sock = conf.L2socket(iface=iface)
        sniffer = AsyncSniffer(opened_socket=sock, lfilter=ours, store=True,
                               started_callback=started.set)
        sniffer.start()
    except (OSError, PermissionError, RuntimeError) as exc:
        raise CaptureUnavailable(f"scapy cannot sniff on {iface}: {exc}") from exc
    if not started.wait(5):
        sniffer.stop()
        raise CaptureUnavailable("scapy sniffer did not start")
    time.sleep(0.1)  # the socket is bound slightly before the callback on some versions
    try:
        fn()
        time.sleep(settle)
    finally:
        packets = sniffer.stop()
        sock.close()
    wrpcap(pcap_path, packets)
    return RecordResult(pcap_path, "scapy", port, packets_captured=len(packets))


def record_lab(pcap_path: str | os.PathLike[str],
               scenario: Callable[[int], list[Exchange]] = standard_scenario,
               **record_kwargs: object) -> tuple[list[Exchange], RecordResult]:
    """Start a lab server, record ``scenario(port)`` against it; return (client log, result)."""
    exchanges: list[Exchange] = []
    with lab_server() as port:
        result = record(pcap_path, lambda: exchanges.extend(scenario(port)), port=port,
                        **record_kwargs)  # type: ignore[arg-type]
    return exchanges, result


def write_log(path: str | os.PathLike[str], exchanges: list[Exchange]) -> None:
    """Write the client's log as JSON lines (one exchange a line)."""
    Path(path).write_text("".join(json.dumps(e.as_dict()) + "\n" for e in exchanges))


if __name__ == "__main__":  # a quick manual check: python pcaps/lab.py /tmp/lab.pcap
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lab.pcap"
    log, res = record_lab(out)
    print(f"{len(log)} exchanges; {res}")
