"""Builders for the detection tests: crafted HttpTransactions and a simple path templater."""

from __future__ import annotations

import hashlib
import json
import re

from mirrorscope.model import EndpointKey, HttpBody, HttpRequest, HttpResponse, HttpTransaction

_ID_SEGMENT = re.compile(r"^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def body(data: bytes = b"", *, complete: bool = True) -> HttpBody:
    """An HttpBody holding all of ``data``."""
    return HttpBody(length=len(data), wire_length=len(data), head=data, complete=complete,
                    sha256=hashlib.sha256(data).hexdigest() if data and complete else None)


def make_tx(method: str = "GET", target: str = "/", *, client: str = "10.0.0.1",
            port: int = 40000, headers: tuple[tuple[str, str], ...] = (),
            req_body: bytes = b"", status: int | None = 200,
            resp_headers: tuple[tuple[str, str], ...] = (
                ("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")),
            resp_body: bytes = b"{}", ts: float = 1_000.0, latency: float = 0.01,
            conn_id: str | None = None, depth: int = 1, partial: bool = False,
            anomalies: tuple[str, ...] = (), host: str = "api.test") -> HttpTransaction:
    """One transaction; ``status=None`` leaves it unanswered."""
    all_headers = (("Host", host), *headers)
    request = HttpRequest(method, target, "HTTP/1.1", all_headers, body(req_body), ts, ts)
    response = None
    if status is not None:
        response = HttpResponse(status, "X", "HTTP/1.1", resp_headers, body(resp_body),
                                ts + latency, ts + latency)
    return HttpTransaction(conn_id or f"c-{client}-{port}-{ts}", depth, (client, port),
                           ("10.9.9.9", 80), request, response, anomalies, partial)


def json_tx(method: str, target: str, doc: object, **kwargs: object) -> HttpTransaction:
    """A transaction with a JSON request body."""
    headers = (("Content-Type", "application/json"), *kwargs.pop("headers", ()))  # type: ignore[misc]
    return make_tx(method, target, req_body=json.dumps(doc).encode(), headers=headers, **kwargs)  # type: ignore[arg-type]


def endpoint_of(tx: HttpTransaction) -> EndpointKey:
    """Template numeric and UUID path segments as {id}; the query is not part of it."""
    assert tx.request is not None
    path = tx.request.target.split("?", 1)[0]
    segments = ["{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/")]
    host = next((v for k, v in tx.request.headers if k.lower() == "host"), "")
    return EndpointKey(host, tx.request.method, "/".join(segments))


def test_endpoint_of_templates_ids() -> None:
    """The helper itself: ids become {id}, literals stay."""
    tx = make_tx("GET", "/api/users/42/orders/0b7e6a52-3c1d-4f7a-8e2b-5d9c0a1b2c3d?x=1")
    assert endpoint_of(tx) == EndpointKey("api.test", "GET", "/api/users/{id}/orders/{id}")
