"""Builders of HttpTransactions for the inventory tests (and a check that they build right)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from mirrorscope.model import HttpBody, HttpRequest, HttpResponse, HttpTransaction

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus"
DEMO = REPO / "pcaps" / "demo.pcap"
ROUTES_PCAP = REPO / "pcaps" / "routes" / "routes.pcap"
ROUTES_SIDECAR = REPO / "pcaps" / "routes" / "routes.pcap.routes.json"


def body(data: bytes) -> HttpBody:
    """A complete body."""
    return HttpBody(len(data), len(data), data, True, None)


def make_tx(method: str = "GET", target: str = "/", *, status: int | None = 200,
            host: str | None = "api.example.com", headers: tuple[tuple[str, str], ...] = (),
            req_json: object = None, req_body: bytes = b"", resp_json: object = None,
            resp_body: bytes = b"", resp_type: str | None = None,
            client: tuple[str, int] = ("10.1.2.3", 50000),
            server: tuple[str, int] = ("10.0.0.1", 80), ts: float = 1000.0,
            conn: str = "C1", depth: int = 1, partial: bool = False) -> HttpTransaction:
    """One transaction; JSON bodies are encoded and typed for you."""
    req_headers = list(headers)
    if host is not None:
        req_headers.insert(0, ("Host", host))
    if req_json is not None:
        req_body = json.dumps(req_json).encode()
        req_headers.append(("Content-Type", "application/json"))
    request = HttpRequest(method, target, "HTTP/1.1", tuple(req_headers), body(req_body),
                          ts, ts + 0.001)
    response = None
    if status is not None:
        resp_headers: list[tuple[str, str]] = []
        if resp_json is not None:
            resp_body = json.dumps(resp_json).encode()
            resp_type = resp_type or "application/json"
        if resp_type:
            resp_headers.append(("Content-Type", resp_type))
        response = HttpResponse(status, "", "HTTP/1.1", tuple(resp_headers), body(resp_body),
                                ts + 0.003, ts + 0.004)
    return HttpTransaction(conn, depth, client, server, request, response, partial=partial)


@lru_cache(maxsize=8)
def pcap_transactions(path: str) -> tuple[HttpTransaction, ...]:
    """The transactions of a capture (parsed once per test session)."""
    from mirrorscope.pipeline import transactions_from_pcap

    return tuple(transactions_from_pcap(path))


def test_make_tx_builds_what_it_says() -> None:
    tx = make_tx("POST", "/a?b=1", req_json={"x": 1}, resp_json={"ok": True}, status=201)
    assert tx.request is not None and tx.response is not None
    assert ("Host", "api.example.com") in tx.request.headers
    assert ("Content-Type", "application/json") in tx.request.headers
    assert json.loads(tx.request.body.head) == {"x": 1}
    assert tx.response.status == 201 and json.loads(tx.response.body.head) == {"ok": True}
    assert make_tx(status=None).response is None
