"""Properties of HttpObserver: segmentation does not matter; no input makes it raise (B20)."""

from __future__ import annotations

import dataclasses
import gzip
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http_script import events, feed_all, run

from mirrorscope.model import HttpTransaction
from mirrorscope.reassembly import http_parse
from mirrorscope.reassembly.http1 import HttpObserver

GZ = gzip.compress(b'{"ok": true, "items": [1, 2, 3]}', mtime=0)

# Each script: steps in the order the capture delivered them.
SCRIPTS: dict[str, list[tuple]] = {
    "keepalive": [
        (">", b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
        (">", b"POST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyz"),
        ("<", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ],
    "pipelined_chunked": [
        (">", b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"),
        (
            "<",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n"
            b"6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
            b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
        ),
    ],
    "odd_line_ends": [
        (">", b"GET /lf HTTP/1.1\nHost: h\nX-F: a\n  b\n\n"),
        ("<", b"HTTP/1.1 200 OK\rContent-Length: 2\rX: y\r\r\nokHTTP/1.1 404 NF\n\n"),
    ],
    "continue": [
        (">", b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
        ("<", b"HTTP/1.1 100 Continue\r\n\r\n"),
        (">", b"12345"),
        ("<", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    "gzip_and_close": [
        (">", b"GET /gz HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"),
        ("<", b"HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + GZ),
    ],
    "smuggling": [
        (
            ">",
            b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        ),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2),
    ],
    "garbage_then_request": [
        (">", b"GET /x HTTP/1.1\r\n\r\n\x00\x01junk line\r\nGET /y HTTP/1.1\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" * 2),
    ],
}


def _normalise(tx: HttpTransaction) -> tuple:
    """Everything but timestamps (they follow the event count, not the bytes)."""
    req = tx.request and dataclasses.replace(tx.request, ts_start=0.0, ts_end=0.0)
    resp = tx.response and dataclasses.replace(tx.response, ts_start=0.0, ts_end=0.0)
    return (tx.trans_depth, req, resp, tuple(sorted(tx.anomalies)), tx.partial)


def _outcome(steps: list[tuple]) -> list[tuple]:
    return sorted(_normalise(t) for t in run(steps).transactions)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.lists(st.integers(0, 10_000), max_size=12), min_size=8, max_size=8))
def test_any_segmentation_gives_the_same_transactions(name: str, cuts: list[list[int]]) -> None:
    script = SCRIPTS[name]
    expected = _outcome(script)
    assert expected, "every script yields transactions"
    split: list[tuple] = []
    for step, step_cuts in zip(script, cuts, strict=False):
        split.extend((step[0], piece) for piece in _cut(step[1], step_cuts))
    assert _outcome(split) == expected


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_one_byte_segments_give_the_same_transactions(name: str) -> None:
    script = SCRIPTS[name]
    split = [(s[0], s[1][i : i + 1]) for s in script for i in range(len(s[1]))]
    assert _outcome(split) == _outcome(script)


_chunk = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 5\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b" folded\r\n",
            b"\r",
            b"\n",
            b"Expect: 100-continue\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"CONNECT x:1 HTTP/1.1\r\n\r\n",
            b"Content-Encoding: gzip\r\n",
            GZ[:20],
        ]
    ),
)
_step = st.one_of(
    st.tuples(st.sampled_from([">", "<"]), _chunk),
    st.tuples(st.sampled_from([">gap", "<gap"]), st.integers(1, 5000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, max_size=40), partial=st.booleans())
def test_arbitrary_input_never_raises(steps: list[tuple], partial: bool) -> None:
    observer = HttpObserver(max_header_bytes=2048, max_line=1024, max_pending=8)
    result = feed_all(observer, events(steps, partial=partial))
    assert "http.internal_error" not in result.kinds()
    assert observer.stats.internal_errors == 0
    assert observer.open_connections == 0
    for tx in result.transactions:
        assert tx.request is not None or tx.response is not None
        for msg in (tx.request, tx.response):
            if msg is not None:
                assert len(msg.body.head) <= 64 << 10


def test_internal_error_becomes_an_anomaly_and_drops_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: http_parse.MessageParser, data: bytes) -> None:
        raise RuntimeError("boom")

    observer = HttpObserver()
    evs = events([(">", b"GET / HTTP/1.1\r\n\r\n"), ("<", b"HTTP/1.1 200 OK\r\n\r\n")])
    monkeypatch.setattr(http_parse.MessageParser, "feed", broken)
    result = feed_all(observer, evs)
    assert [a.kind for a in result.anomalies] == ["http.internal_error"]
    assert result.anomalies[0].detail == "RuntimeError"
    assert result.anomalies[0].conn_id == "c1"
    assert observer.stats.internal_errors == 1
    assert result.transactions == []
    assert observer.open_connections == 0  # ConnectionClosed still removed it
