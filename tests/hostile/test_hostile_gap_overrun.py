"""B18 corner: a gap that runs a few bytes past a known-length response body.

suricata-verify ``http-gap-whole-body``: the whole body of /1 and its stray trailing CRLF
are lost in one gap; libhtp (gap accepted in its Finalize state) still pairs /2 and /3.
Sound only when the overrun is too short to hide a response and a status line starts
right after the gap; otherwise pairing must stop, never guess.
"""

from __future__ import annotations

from mirrorscope.model import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    HttpTransaction,
    StreamClosed,
    StreamData,
    StreamGap,
)
from mirrorscope.reassembly.http1 import HttpObserver

C = "conn"
ORIG, RESP = Direction.ORIG, Direction.RESP
REQUESTS = b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"
HEAD_1 = b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n"
RESP_2 = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _run(gap: int, after_gap: bytes) -> list[HttpTransaction]:
    obs = HttpObserver()
    events = [
        ConnectionOpened(C, 1.0, ("10.0.0.1", 1234), ("10.0.0.2", 80), False),
        StreamData(C, ORIG, 1.1, REQUESTS),
        StreamData(C, RESP, 1.2, HEAD_1),
        StreamGap(C, RESP, 1.3, gap),
        StreamData(C, RESP, 1.4, after_gap),
        StreamClosed(C, ORIG, 1.5, "fin"),
        StreamClosed(C, RESP, 1.5, "fin"),
        ConnectionClosed(C, 1.5, "fin"),
    ]
    out = [r for e in events for r in obs.feed(e)]
    return [r for r in out if isinstance(r, HttpTransaction)]


def _pairs(txs: list[HttpTransaction]) -> list[tuple[str | None, int | None]]:
    return [(t.request.target if t.request else None,
             t.response.body.length if t.response else None) for t in txs]


def test_gap_over_body_and_stray_crlf_keeps_pairing() -> None:
    txs = _run(12 + 2, RESP_2)  # body (12) + "\r\n" lost
    assert _pairs(txs) == [("/1", 0), ("/2", 2)]
    first = txs[0].response
    assert first is not None and first.body.missed == 12 and not first.body.complete
    assert txs[1].response is not None and txs[1].response.body.head == b"ok"


def test_gap_eating_the_next_status_line_start_stops_pairing() -> None:
    # 2 bytes past the body, but they were "HT" of the next response: sync is lost.
    txs = _run(12 + 2, RESP_2[2:])
    assert ("/2", 2) not in _pairs(txs)
    assert all(t.request is None or t.request.target != "/2" or t.response is None
               for t in txs)


def test_long_overrun_still_stops_pairing() -> None:
    # 12 body bytes + 30 more: enough to hide a whole small response.
    txs = _run(12 + 30, RESP_2)
    assert ("/2", 2) not in _pairs(txs)
