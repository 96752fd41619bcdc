"""A route-rich JSON API (the ground truth for templating) and a client that exercises it.

`ROUTES` is the server's own route table: the server dispatches every request through it,
so the table is exactly what the server answers.  The client issues a shuffled mix of
requests over a few keep-alive connections: numeric ids, UUIDs, SKU codes, slugs, owner and
repository names (slugs and plain words), git SHAs, SHA-256 digests, dates, ObjectIds,
invite tokens, e-mail addresses, versions (v1/v2), `/me`-style literals, a literal that
sits beside slugs (`editors-picks`), static files and a few 404 probes.  Everything talks
to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import random
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
HOST = "api.shop.example.com"  # the Host header of the main traffic
STAGING_HOST = "staging.shop.example.com"  # a few calls to a non-production host

Handler = Callable[[dict[str, str], bytes], tuple[int, object]]


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the server's route table."""

    method: str
    template: str  # "/api/v1/users/{user_id}"
    regex: str  # the pattern the server matches the path against

    def as_dict(self) -> dict[str, str]:
        """JSON form (the sidecar file)."""
        return {"method": self.method, "template": self.template, "regex": self.regex}


_INT = r"(?P<{}>\d+)"
_UUID = r"(?P<{}>[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})"
_SEG = r"(?P<{}>[^/]+)"


def _route(method: str, template: str, **kinds: str) -> Route:
    """A route whose {params} match the given patterns (default: one segment)."""
    regex = re.escape(template)
    for name in re.findall(r"\{(\w+)\}", template):
        pattern = kinds.get(name, _SEG).format(name)
        regex = regex.replace(re.escape("{" + name + "}"), pattern)
    return Route(method, template, regex)


# Order matters where a literal and a parameter share a position: literals first.
ROUTES: tuple[Route, ...] = (
    _route("GET", "/health"),
    _route("GET", "/static/{file}"),
    _route("POST", "/api/v1/login"),
    _route("GET", "/api/v1/users/me"),
    _route("PATCH", "/api/v1/users/me"),
    _route("GET", "/api/v1/users/{user_id}", user_id=_INT),
    _route("GET", "/api/v1/users/{user_id}/orders", user_id=_INT),
    _route("GET", "/api/v1/users/{user_id}/orders/{order_id}", user_id=_INT, order_id=_UUID),
    _route("POST", "/api/v1/orders"),
    _route("GET", "/api/v1/orders/{order_id}", order_id=_UUID),
    _route("DELETE", "/api/v1/orders/{order_id}", order_id=_UUID),
    _route("GET", "/api/v1/products"),
    _route("GET", "/api/v1/products/{sku}", sku=r"(?P<{}>SKU-\d{{6}})"),
    _route("GET", "/api/v2/products"),
    _route("GET", "/api/v2/products/{product_id}", product_id=_INT),
    _route("GET", "/api/v1/articles"),
    _route("GET", "/api/v1/articles/editors-picks"),
    _route("GET", "/api/v1/articles/{slug}"),
    _route("GET", "/api/v1/articles/{slug}/comments"),
    _route("POST", "/api/v1/articles/{slug}/comments"),
    _route("GET", "/api/v1/repos/{owner}/{repo}"),
    _route("GET", "/api/v1/repos/{owner}/{repo}/commits/{sha}", sha=r"(?P<{}>[0-9a-f]{{40}})"),
    _route("GET", "/api/v1/files/{digest}", digest=r"(?P<{}>[0-9a-f]{{64}})"),
    _route("GET", "/api/v1/reports/{date}/summary", date=r"(?P<{}>\d{{4}}-\d{{2}}-\d{{2}})"),
    _route("GET", "/api/v1/events/{event_id}", event_id=r"(?P<{}>[0-9a-f]{{24}})"),
    _route("GET", "/api/v1/invites/{token}", token=r"(?P<{}>[A-Za-z0-9_\-]{{22}})"),
    _route("GET", "/api/v1/members/{email}", email=r"(?P<{}>[^/@]+@[^/@]+)"),
    _route("GET", "/api/v1/search"),
    _route("GET", "/api/v1/account/billing"),
)
_COMPILED = [(r, re.compile(r.regex)) for r in ROUTES]

_STATIC = {"app.js": ("application/javascript", b"console.log('app');\n" * 20),
           "app.css": ("text/css", b"body{margin:0}\n" * 20),
           "logo.svg": ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
           "vendor.3f9a2b1c.js": ("application/javascript", b"/*vendor*/\n" * 30),
           "inter.woff2": ("font/woff2", bytes(range(256)))}


def match_route(method: str, path: str) -> Route | None:
    """The route the server dispatches (method, path) to, or None (404/405)."""
    for route, regex in _COMPILED:
        if route.method == method and regex.fullmatch(path):
            return route
    return None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned_token(sub: str) -> str:
    """A JWT with alg "none" and no exp (what a careless client library might send)."""
    header = _b64url(b'{"alg":"none","typ":"JWT"}')
    return f"{header}.{_b64url(json.dumps({'sub': sub}).encode())}."


def _signed_token(sub: str) -> str:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64url(json.dumps({"sub": sub, "iat": 1700000000, "exp": 1700003600,
                               "iss": "https://auth.shop.example.com"}).encode())
    sig = _b64url(hashlib.sha256(f"{header}.{body}".encode()).digest())
    return f"{header}.{body}.{sig}"


def _respond(route: Route, params: dict[str, str], body: bytes) -> tuple[int, object]:
    """The JSON answer of one route (deterministic from the parameters)."""
    t = route.template
    rng = random.Random(json.dumps(params, sort_keys=True) + t)
    if t == "/health":
        return 200, {"status": "ok"}
    if t == "/api/v1/login":
        return 200, {"token": _signed_token("user-7"), "expires_in": 3600}
    if t == "/api/v1/users/me":
        return 200, {"id": 7, "username": "user007", "email": "user007@mail.example.org",
                     "phone": "+1-202-555-0143"}
    if t == "/api/v1/users/{user_id}":
        return 200, {"id": int(params["user_id"]), "username": f"user{params['user_id']}",
                     "created": "2023-05-01"}
    if t == "/api/v1/users/{user_id}/orders":
        return 200, {"items": [{"id": str(uuid.UUID(int=rng.getrandbits(128))),
                                "total": rng.randint(5, 500)}], "count": 1}
    if t in ("/api/v1/users/{user_id}/orders/{order_id}", "/api/v1/orders/{order_id}"):
        if route.method == "DELETE":
            return 204, None
        return 200, {"id": params["order_id"], "status": rng.choice(["paid", "shipped"]),
                     "total": rng.randint(5, 500)}
    if t == "/api/v1/orders":
        return 201, {"id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "created"}
    if t in ("/api/v1/products", "/api/v2/products"):
        return 200, {"page": 1, "items": [{"sku": f"SKU-{rng.randint(1, 999999):06d}",
                                           "price": rng.randint(1, 99)}]}
    if t in ("/api/v1/products/{sku}", "/api/v2/products/{product_id}"):
        return 200, {"sku": params.get("sku", "SKU-000001"), "name": "Thing",
                     "price": rng.randint(1, 99), "stock": rng.randint(0, 50)}
    if t in ("/api/v1/articles", "/api/v1/articles/editors-picks"):
        return 200, {"items": [{"slug": "a-b-c", "title": "T"}], "generated": "2024-05-01"}
    if t == "/api/v1/articles/{slug}":
        return 200, {"id": rng.randint(1, 9999), "slug": params["slug"], "title": "Title",
                     "author": "someone", "published": "2024-04-01", "body": "text"}
    if t == "/api/v1/articles/{slug}/comments":
        if route.method == "POST":
            return 201, {"id": rng.randint(1, 9999), "text": json.loads(body).get("text", "")}
        return 200, {"items": [{"id": 1, "author": "x", "text": "nice"}], "count": 1}
    if t == "/api/v1/repos/{owner}/{repo}":
        return 200, {"full_name": f"{params['owner']}/{params['repo']}",
                     "stars": rng.randint(0, 99), "default_branch": "main", "private": False}
    if t == "/api/v1/repos/{owner}/{repo}/commits/{sha}":
        return 200, {"sha": params["sha"], "message": "fix", "author": params["owner"]}
    if t == "/api/v1/files/{digest}":
        return 200, {"digest": params["digest"], "size": rng.randint(1, 10**6)}
    if t == "/api/v1/reports/{date}/summary":
        return 200, {"date": params["date"], "orders": rng.randint(0, 99), "revenue": 12.5}
    if t == "/api/v1/events/{event_id}":
        return 200, {"id": params["event_id"], "type": rng.choice(["click", "view"])}
    if t == "/api/v1/invites/{token}":
        return 200, {"valid": True, "team": "blue"}
    if t == "/api/v1/members/{email}":
        return 200, {"email": params["email"], "role": rng.choice(["admin", "member"])}
    if t == "/api/v1/search":
        return 200, {"results": [], "total": 0}
    if t == "/api/v1/account/billing":
        return 200, {"owner": "user007", "card_number": "5555 5555 5555 4444",
                     "iban": "GB82WEST12345698765432", "email": "billing@mail.example.org"}
    return 200, {}


class RouteHandler(BaseHTTPRequestHandler):
    """Dispatches every request through ROUTES."""

    protocol_version = "HTTP/1.1"
    server_version = "routes/1.0"
    sys_version = ""

    def setup(self) -> None:
        """No Nagle stalls between header and body writes."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        route = match_route(self.command, path)
        if route is None:
            known = any(rx.fullmatch(path) for _, rx in _COMPILED)
            status, payload = (405, {"error": "method"}) if known else (404, {"error": "nf"})
            content_type = "application/json"
            data = json.dumps(payload).encode()
        elif route.template == "/static/{file}":
            name = path.rsplit("/", 1)[1]
            content_type, data = _STATIC.get(name, ("text/plain", b""))
            status = 200 if name in _STATIC else 404
        else:
            params = re.compile(route.regex).fullmatch(path).groupdict()  # type: ignore[union-attr]
            status, payload = _respond(route, params, body)
            content_type = "application/json"
            data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle


@contextmanager
def route_server() -> Iterator[int]:
    """Run the route server on 127.0.0.1 in a thread; yield its port."""
    server = ThreadingHTTPServer((LOOPBACK, 0), RouteHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ----------------------------------------------------------------------------- client

_WORDS = ("bread", "garden", "winter", "river", "coffee", "rocket", "paper", "silver",
          "window", "forest", "summer", "pepper", "marble", "castle", "harbor", "lemon",
          "thunder", "violet", "meadow", "copper", "falcon", "island", "canyon", "velvet")
_OWNERS_PLAIN = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
                 "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter")
_OWNERS_SLUG = ("octo-cat", "mary-jane", "dev-ops-team", "acme-corp", "data-science",
                "blue-whale", "open-source-lab", "red-panda", "green-field", "tiny-tools")
_REPOS_PLAIN = ("website", "dotfiles", "blog", "infra", "compiler", "notes", "scripts",
                "terraform", "homepage", "api", "docs", "tools")
_REPOS_SLUG = ("api-client", "data-pipeline", "mobile-app", "design-system", "cli-tool",
               "web-frontend", "ml-models", "cloud-functions", "game-engine", "chat-bot")


@dataclass(slots=True)
class Call:
    """One request the client will make."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    host: str = HOST


def _slug(rng: random.Random) -> str:
    return "-".join(rng.sample(_WORDS, rng.randint(3, 5)))


def plan_calls(seed: int = 11) -> list[Call]:
    """The client's shuffled workload (deterministic for a seed)."""
    rng = random.Random(seed)
    auth = (("Authorization", f"Bearer {_signed_token('user-7')}"),)
    json_ct = (("Content-Type", "application/json"),)
    calls: list[Call] = []

    def add(method: str, path: str, n: int = 1, **kw: object) -> None:
        for _ in range(n):
            calls.append(Call(method, path, **kw))  # type: ignore[arg-type]

    add("GET", "/health", 4)
    for name in ("app.js", "app.css", "logo.svg", "vendor.3f9a2b1c.js", "inter.woff2"):
        add("GET", f"/static/{name}", rng.randint(1, 3))
    for _ in range(6):
        add("POST", "/api/v1/login", body=b'{"username":"user007","password":"hunter2!"}',
            headers=json_ct)
    add("GET", "/api/v1/users/me", 6, headers=auth)
    add("PATCH", "/api/v1/users/me", 3, body=b'{"display_name":"Seven"}',
        headers=auth + json_ct)
    for _ in range(12):
        user = rng.randint(1, 5000)
        add("GET", f"/api/v1/users/{user}", headers=auth)
    for _ in range(6):
        user = rng.randint(1, 5000)
        add("GET", f"/api/v1/users/{user}/orders", headers=auth)
        add("GET", f"/api/v1/users/{user}/orders/{uuid.UUID(int=rng.getrandbits(128))}",
            headers=auth)
    for _ in range(8):
        add("POST", "/api/v1/orders", body=b'{"items":[{"sku":"SKU-000042","qty":1}]}',
            headers=auth + json_ct)
        order = uuid.UUID(int=rng.getrandbits(128), version=4)
        add("GET", f"/api/v1/orders/{order}", headers=auth)
        if rng.random() < 0.5:
            add("DELETE", f"/api/v1/orders/{order}", headers=auth)
    for _ in range(6):
        add("GET", f"/api/v1/products?limit={rng.choice([10, 20])}&page={rng.randint(1, 9)}")
        add("GET", f"/api/v2/products?limit={rng.choice([10, 20])}")
    for _ in range(10):
        add("GET", f"/api/v1/products/SKU-{rng.randint(1, 999999):06d}")
    for _ in range(8):
        add("GET", f"/api/v2/products/{rng.randint(1, 99999)}")
    add("GET", "/api/v1/articles", 4)
    add("GET", "/api/v1/articles/editors-picks", 5)
    slugs = [_slug(rng) for _ in range(14)]
    for slug in slugs:
        add("GET", f"/api/v1/articles/{slug}", rng.randint(1, 2))
    for slug in rng.sample(slugs, 6):
        add("GET", f"/api/v1/articles/{slug}/comments")
    for slug in rng.sample(slugs, 4):
        add("POST", f"/api/v1/articles/{slug}/comments", body=b'{"text":"great post"}',
            headers=auth + json_ct)
    owners = list(_OWNERS_PLAIN) + list(_OWNERS_SLUG)
    repos = list(_REPOS_PLAIN) + list(_REPOS_SLUG)
    for owner in owners:
        for repo in rng.sample(repos, rng.randint(1, 2)):
            add("GET", f"/api/v1/repos/{owner}/{repo}")
            if rng.random() < 0.3:
                sha = hashlib.sha1(f"{owner}{repo}{rng.random()}".encode()).hexdigest()
                add("GET", f"/api/v1/repos/{owner}/{repo}/commits/{sha}")
    for _ in range(6):
        add("GET", f"/api/v1/files/{hashlib.sha256(rng.randbytes(8)).hexdigest()}")
    for _ in range(6):
        add("GET", f"/api/v1/reports/2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                   "/summary")
    for _ in range(6):
        add("GET", f"/api/v1/events/{rng.randbytes(12).hex()}")
    for _ in range(6):
        add("GET", f"/api/v1/invites/{_b64url(rng.randbytes(16))}")
    for first in ("ann", "ben", "cleo", "dan", "eve"):
        add("GET", f"/api/v1/members/{first}.{rng.choice(_WORDS)}@mail.example.org",
            headers=auth)
    for word in rng.sample(_WORDS, 5):
        add("GET", f"/api/v1/search?q={word}&limit=10")
    add("GET", "/api/v1/search?q=bread&api_key=sk_live_4f9a8b7c6d5e4f3a2b1c", 2)
    add("GET", "/api/v1/account/billing", 3, headers=auth)
    add("GET", "/api/v1/account/billing", 1,
        headers=(("Authorization", f"Bearer {_unsigned_token('user-7')}"),))
    # Probes for routes that do not exist: they must not become endpoints.
    for probe in ("/wp-login.php", "/.env", "/api/v1/admin", "/api/v1/users/7/password"):
        add("GET", probe)
    add("GET", "/health", 2, host=STAGING_HOST)
    add("GET", "/api/v1/users/me", 1, headers=auth, host=STAGING_HOST)
    rng.shuffle(calls)
    return calls


def run_client(port: int, calls: list[Call], connections: int = 6) -> list[dict[str, object]]:
    """Issue the calls over a few keep-alive connections; return the client's log."""
    log: list[dict[str, object]] = []
    conns = [http.client.HTTPConnection(LOOPBACK, port, timeout=10) for _ in range(connections)]
    try:
        for i, call in enumerate(calls):
            conn = conns[i % connections]
            headers = {"Host": call.host, "User-Agent": "routes-client/1.0",
                       "Accept": "application/json", **dict(call.headers)}
            conn.request(call.method, call.path, body=call.body or None, headers=headers)
            resp = conn.getresponse()
            resp.read()
            log.append({"method": call.method, "path": call.path, "host": call.host,
                        "status": resp.status})
    finally:
        for conn in conns:
            conn.close()
    return log
