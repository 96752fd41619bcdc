"""The comparison helper itself: it passes on a faithful result and fails on each kind of error."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from e2e_support import PCAPS, compare, endpoint, load_sidecar

from mirrorscope.model import HttpBody, HttpRequest, HttpResponse, HttpTransaction


def _faithful(rows: list[dict[str, Any]]) -> list[HttpTransaction]:
    """Transactions built straight from a sidecar, numbered per connection."""
    depth: dict[tuple[str, str], int] = {}
    out = []
    for row in rows:
        conn = (row["client"], row["server"])
        depth[conn] = depth.get(conn, 0) + 1
        req = HttpRequest(row["method"], row["uri"], "HTTP/1.1", (),
                          HttpBody(row["request_body_len"], sha256=row["request_body_sha256"],
                                   complete=row["request_body_complete"]), 0.0, 0.0)
        resp = HttpResponse(row["status"], "", "HTTP/1.1", (),
                            HttpBody(row["response_body_len"], sha256=row["response_body_sha256"],
                                     complete=row["response_body_complete"]), 0.0, 0.0,
                            info_code=row["info_code"])
        out.append(HttpTransaction("c", depth[conn], endpoint(row["client"]),
                                   endpoint(row["server"]), req, resp, partial=row["partial"]))
    return out


ROWS = load_sidecar(PCAPS / "crafted" / "pipelined.pcap")["transactions"]


def test_faithful_result_passes() -> None:
    """Built from the sidecar, handed over in reverse: equal (order comes from trans_depth)."""
    compare(list(reversed(_faithful(ROWS))), ROWS)


def _longer_body(t: HttpTransaction) -> HttpTransaction:
    body = dataclasses.replace(t.response.body, length=t.response.body.length + 1)
    return dataclasses.replace(t, response=dataclasses.replace(t.response, body=body))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: dataclasses.replace(t, request=dataclasses.replace(t.request, method="PUT")),
        lambda t: dataclasses.replace(t, response=dataclasses.replace(t.response, status=500)),
        _longer_body,
        lambda t: dataclasses.replace(t, partial=True),
        lambda t: dataclasses.replace(t, client=("10.9.9.9", 1)),
    ],
    ids=["method", "status", "body_len", "partial", "connection"],
)
def test_each_difference_fails(mutate: Any) -> None:
    """One changed field in one transaction is caught."""
    txs = _faithful(ROWS)
    txs[1] = mutate(txs[1])
    with pytest.raises(AssertionError):
        compare(txs, ROWS)


def test_missing_or_extra_transaction_fails() -> None:
    """Counts per connection must match."""
    with pytest.raises(AssertionError):
        compare(_faithful(ROWS)[:-1], ROWS)
    with pytest.raises(AssertionError):
        compare(_faithful(ROWS) + _faithful(ROWS[:1]), ROWS)


def test_incomplete_body_length_accepts_seen_or_declared_only() -> None:
    """A gap body counts as received or as declared; any other length fails."""
    rows = load_sidecar(PCAPS / "crafted" / "gap_in_body.pcap")["transactions"]
    declared, missing = rows[0]["response_body_len"], rows[0]["response_body_missing"]
    for length, ok in ((declared, True), (declared - missing, True), (declared - 1, False)):
        txs = _faithful(rows)
        body = dataclasses.replace(txs[0].response.body, length=length)
        txs[0] = dataclasses.replace(txs[0], response=dataclasses.replace(txs[0].response,
                                                                         body=body))
        if ok:
            compare(txs, rows)
        else:
            with pytest.raises(AssertionError):
                compare(txs, rows)
