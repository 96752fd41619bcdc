"""The DAST's only way out: an HTTP client pinned to one origin, paced and budgeted.

Every request goes to the target's scheme://host:port and nowhere else: request targets
are origin-form paths, absolute URLs naming another origin are refused, and redirects are
returned as they are, never followed.  Requests are spaced to at most ``rate`` per second
and counted against ``max_requests``.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0  # seconds per request (connect + read)
MAX_RESPONSE_BYTES = 1 << 20  # a probe never needs more of a body than this
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                         "upgrade", "te", "trailer", "host", "content-length"})


class DastHttpError(Exception):
    """A target or request the client refuses (bad URL, another origin)."""


class BudgetExhausted(DastHttpError):
    """--max-requests was reached: the session stops where it is."""


@dataclass(frozen=True, slots=True)
class Target:
    """The one origin a DAST session may contact."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """host:port as a Host header carries it (default ports omitted)."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """scheme://host[:port]"""
        return f"{self.scheme}://{self.netloc}"


def parse_target(url: str) -> Target:
    """The origin of --target; anything but http(s)://host[:port][/] is refused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DastHttpError(f"--target {url!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DastHttpError(f"--target {url!r} must be http://host[:port] or https://host[:port]")
    if parts.username or parts.password:
        raise DastHttpError("--target must not carry credentials (use --credentials)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DastHttpError(f"--target {url!r} must be an origin (scheme://host[:port]) without "
                            "a path: the paths come from the recorded inventory")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def origin_path(target: Target, uri: str) -> str:
    """The origin-form request target for uri; an absolute URI naming another origin is refused."""
    if uri.startswith("/") and not uri.startswith("//"):  # "//host/x" names another host
        return uri
    parts = urlsplit(uri)
    if parts.scheme and parts.netloc:
        if parse_target(f"{parts.scheme}://{parts.netloc}") != target:
            raise DastHttpError(f"refusing {uri!r}: not on the target {target.origin}")
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path
    raise DastHttpError(f"refusing request target {uri!r}: not an origin-form path")


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as sent and the response it got (body capped at MAX_RESPONSE_BYTES)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int  # 0: no response (connection error or timeout)
    reason: str
    response_headers: tuple[tuple[str, str], ...]
    response_body: bytes
    elapsed: float  # seconds from sending to the end of the (capped) body
    error: str = ""


@dataclass
class DastClient:
    """Sends requests to one Target at most ``rate`` per second, at most ``max_requests``."""

    target: Target
    rate: float = 10.0
    max_requests: int = 1000
    timeout: float = DEFAULT_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    sent: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    _next_slot: float = 0.0

    def remaining(self) -> int:
        """Requests left in the budget."""
        return max(0, self.max_requests - self.sent)

    def request(self, method: str, uri: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes = b"", *, timeout: float | None = None) -> Sent:
        """Send one request to the target (paced, budgeted); redirects are not followed."""
        path = origin_path(self.target, uri)
        if any(ch in path for ch in "\r\n ") or any(ch in method for ch in "\r\n /"):
            raise DastHttpError(f"refusing a malformed request line: {method} {path!r}")
        if self.sent >= self.max_requests:
            raise BudgetExhausted(f"the request budget ({self.max_requests}) is spent")
        self._pace()
        self.sent += 1
        self.methods[method] += 1
        clean = [(name, value) for name, value in headers
                 if name.lower() not in _HOP_BY_HOP and "\r" not in value and "\n" not in value]
        clean.insert(0, ("Host", self.target.netloc))
        if body or method in ("POST", "PUT", "PATCH"):
            clean.append(("Content-Length", str(len(body))))
        started = time.monotonic()
        connection = self._connect(timeout or self.timeout)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in clean:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read(MAX_RESPONSE_BYTES)
            return Sent(method, path, tuple(clean), body, response.status, response.reason,
                        tuple(response.getheaders()), payload, time.monotonic() - started)
        except (OSError, http.client.HTTPException) as exc:
            return Sent(method, path, tuple(clean), body, 0, "", (), b"",
                        time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.target.scheme == "https":
            return http.client.HTTPSConnection(self.target.host, self.target.port,
                                               timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.target.host, self.target.port, timeout=timeout)

    def _pace(self) -> None:
        """Wait for this request's slot: consecutive requests are >= 1/rate seconds apart."""
        now = self.clock()
        if self._next_slot > now:
            self.sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + 1.0 / self.rate
