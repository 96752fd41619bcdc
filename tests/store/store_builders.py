"""Small constructors of mirrorscope.model objects for the store tests."""

from __future__ import annotations

from mirrorscope.model import (
    ConnectionClosed,
    ConnectionOpened,
    Headers,
    HttpBody,
    HttpRequest,
    HttpResponse,
    HttpTransaction,
)

HMAC_KEY = b"store-tests-hmac-key-0123456789ab"  # the `store` fixture's key
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)


def opened(conn_id: str, ts: float = 100.0, *, partial: bool = False) -> ConnectionOpened:
    """A ConnectionOpened between CLIENT and SERVER."""
    return ConnectionOpened(conn_id, ts, CLIENT, SERVER, partial)


def closed(conn_id: str, ts: float = 200.0) -> ConnectionClosed:
    """A ConnectionClosed with distinctive counters."""
    return ConnectionClosed(conn_id, ts, "fin", 111, 222, 3, 4, 55)


def request(
    *,
    method: str = "GET",
    target: str = "/api/items?id=1",
    headers: Headers = (("Host", "api.example.com"), ("User-Agent", "curl/8.0")),
    body: bytes = b"",
    ts: float = 100.5,
) -> HttpRequest:
    """An HTTP/1.1 request whose body is complete."""
    return HttpRequest(
        method=method,
        target=target,
        version="HTTP/1.1",
        headers=headers,
        body=HttpBody(length=len(body), wire_length=len(body), head=body, sha256=None),
        ts_start=ts,
        ts_end=ts + 0.01,
    )


def response(
    *,
    status: int = 200,
    reason: str = "OK",
    headers: Headers = (("Content-Type", "application/json"),),
    body: bytes = b'{"ok":true}',
    ts: float = 100.7,
    sha256: str | None = "ab" * 32,
) -> HttpResponse:
    """An HTTP/1.1 response whose body is complete."""
    return HttpResponse(
        status=status,
        reason=reason,
        version="HTTP/1.1",
        headers=headers,
        body=HttpBody(length=len(body), wire_length=len(body), head=body, sha256=sha256),
        ts_start=ts,
        ts_end=ts + 0.02,
    )


def transaction(
    conn_id: str,
    depth: int = 1,
    *,
    req: HttpRequest | None = None,
    resp: HttpResponse | None = None,
    anomalies: tuple[str, ...] = (),
    partial: bool = False,
) -> HttpTransaction:
    """A transaction on CLIENT -> SERVER."""
    return HttpTransaction(conn_id, depth, CLIENT, SERVER, req, resp, anomalies, partial)
