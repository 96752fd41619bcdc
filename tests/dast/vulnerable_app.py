"""A deliberately vulnerable JSON API (stdlib only) for the DAST tests: never expose it.

Every weakness has a safe twin that differs only by the missing check:

| vulnerable | safe twin | weakness |
|---|---|---|
| GET /api/vuln/notes/{id} | GET /api/safe/notes/{id} | BOLA: any valid token reads any note |
| GET /api/vuln/search?q= | GET /api/safe/search?q= | SQL injection: q is pasted into the SQL |
| GET /api/vuln/blind-search?q= | (same) | the same injection, errors hidden (blind) |
| GET /api/vuln/admin/users | GET /api/safe/admin/users | no authentication (and no admin check) |
| POST /api/vuln/profile | POST /api/safe/profile | mass assignment: any field is stored |

GET /api/vuln/go answers a redirect to ``redirect_to`` (a decoy the scanner must never follow).
It listens on 127.0.0.1 on an ephemeral port, in a thread, and counts what it received.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NOTES = ((1, "alice", "groceries", "milk, eggs"), (2, "alice", "holiday", "Lisbon in May"),
         (3, "bob", "travel", "train to Porto"), (4, "bob", "budget", "rent 900"))
_NOTE_PATH = re.compile(r"^/api/(vuln|safe)/notes/([^/]+)$")
_SAFE_PROFILE_FIELDS = frozenset({"display_name", "bio"})


class VulnerableApp:
    """The app: users alice and bob (role user) and root (role admin), each with a token."""

    def __init__(self, redirect_to: str = "http://127.0.0.1:9/") -> None:
        self.tokens = {name: secrets.token_hex(16) for name in ("alice", "bob", "root")}
        self.roles = {"alice": "user", "bob": "user", "root": "admin"}
        self.redirect_to = redirect_to
        self.methods: Counter[str] = Counter()
        self.paths: list[str] = []
        self.hosts: set[str] = set()
        self.profiles: dict[str, dict[str, object]] = {
            name: {"user": name, "display_name": name.title(), "role": role}
            for name, role in self.roles.items()}
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, owner TEXT, title TEXT,"
                         " body TEXT)")
        self._db.executemany("INSERT INTO notes VALUES (?, ?, ?, ?)", NOTES)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The ephemeral port it listens on."""
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VulnerableApp:
        """Listen on 127.0.0.1:0 and serve in a daemon thread."""
        app = self

        class Handler(_Handler):
            owner = app

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> VulnerableApp:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------- logic

    def user_of(self, authorization: str | None) -> str | None:
        """The user a 'Bearer <token>' header names, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer "):].strip()
        return next((user for user, known in self.tokens.items() if known == token), None)

    def note(self, note_id: str) -> dict[str, object] | None:
        """A note by id (parameterised)."""
        if not note_id.isdigit():
            return None
        with self._lock:
            row = self._db.execute("SELECT id, owner, title, body FROM notes WHERE id = ?",
                                   (int(note_id),)).fetchone()
        fields = ("id", "owner", "title", "body")
        return None if row is None else dict(zip(fields, row, strict=True))

    def search(self, user: str, query: str, vulnerable: bool) -> list[dict[str, object]]:
        """The user's notes with this title; the vulnerable flavour pastes q into the SQL."""
        with self._lock:
            if vulnerable:
                sql = f"SELECT id, title FROM notes WHERE owner = '{user}' AND title = '{query}'"
                rows = self._db.execute(sql).fetchall()
            else:
                rows = self._db.execute("SELECT id, title FROM notes WHERE owner = ? AND "
                                        "title = ?", (user, query)).fetchall()
        return [{"id": row[0], "title": row[1]} for row in rows]


class _Handler(BaseHTTPRequestHandler):
    owner: VulnerableApp
    protocol_version = "HTTP/1.0"

    def log_message(self, *_args: object) -> None:  # quiet tests
        return

    def _record(self) -> None:
        app = self.owner
        with app._lock:
            app.methods[self.command] += 1
            app.paths.append(self.path)
            app.hosts.add(self.headers.get("Host", ""))

    def _send(self, status: int, doc: object, headers: tuple[tuple[str, str], ...] = ()) -> None:
        body = json.dumps(doc, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        """Every GET route."""
        self._record()
        app = self.owner
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        user = app.user_of(self.headers.get("Authorization"))
        if path == "/api/vuln/admin/users":
            return self._send(200, {"users": sorted(app.roles)})
        if path == "/api/safe/admin/users":
            if user is None:
                return self._send(401, {"error": "authentication required"})
            if app.roles[user] != "admin":
                return self._send(403, {"error": "admins only"})
            return self._send(200, {"users": sorted(app.roles)})
        if path == "/api/vuln/go":
            return self._send(302, {"moved": True}, (("Location", app.redirect_to),))
        if user is None:
            return self._send(401, {"error": "authentication required"})
        note_match = _NOTE_PATH.match(path)
        if note_match:
            note = app.note(note_match.group(2))
            if note is None or (note_match.group(1) == "safe" and note["owner"] != user):
                return self._send(404, {"error": "no such note"})
            return self._send(200, note)
        if path in ("/api/vuln/search", "/api/vuln/blind-search", "/api/safe/search"):
            try:
                rows = app.search(user, query.get("q", ""), vulnerable="vuln" in path)
            except sqlite3.Error as exc:
                if "blind" in path:
                    return self._send(500, {"error": "internal error"})
                # The leak error-based detection looks for.
                return self._send(500, {"error": f"sqlite3.OperationalError: {exc}"})
            return self._send(200, {"results": rows})
        if path == "/api/me":
            return self._send(200, app.profiles[user])
        return self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        """Profile updates."""
        self._record()
        app = self.owner
        user = app.user_of(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if user is None:
            return self._send(401, {"error": "authentication required"})
        path = urlsplit(self.path).path
        if path not in ("/api/vuln/profile", "/api/safe/profile"):
            return self._send(404, {"error": "not found"})
        try:
            update = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": "bad json"})
        if not isinstance(update, dict):
            return self._send(400, {"error": "bad json"})
        with app._lock:
            profile = dict(app.profiles[user])
            for name, value in update.items():
                if path == "/api/vuln/profile" or name in _SAFE_PROFILE_FIELDS:
                    profile[name] = value
            if path == "/api/safe/profile":
                app.profiles[user] = profile  # the vulnerable one would, too; kept per call
        return self._send(200, profile)

    def _other(self) -> None:
        self._record()
        self._send(405, {"error": "method not allowed"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other
