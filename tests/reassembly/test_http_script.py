"""libhtp-style stream scripts for the HTTP observer tests, plus tests of the helper itself.

A script is a list of steps, each one of:
    (">", b"...")      client -> server bytes        ("<", b"...")     server -> client bytes
    (">gap", n)        n client bytes lost           ("<gap", n)       n server bytes lost
    (">close", why)    client direction ends         ("<close", why)   server direction ends
    ("close",)         both directions end by FIN, then the connection closes
Unless a step closes it, ``run`` closes the connection at the end ("fin").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mirrorscope.model import (
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    HttpTransaction,
    StreamClosed,
    StreamData,
    StreamEvent,
    StreamGap,
)
from mirrorscope.reassembly.http1 import HttpObserver

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
Step = tuple


@dataclass
class Result:
    """What one script produced."""

    observer: HttpObserver
    transactions: list[HttpTransaction] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    def kinds(self) -> set[str]:
        """Every anomaly kind raised."""
        return {a.kind for a in self.anomalies}

    def by_depth(self) -> list[HttpTransaction]:
        """Transactions ordered by trans_depth."""
        return sorted(self.transactions, key=lambda t: t.trans_depth)


def events(
    steps: Sequence[Step],
    *,
    conn_id: str = "c1",
    partial: bool = False,
    server: tuple[str, int] = SERVER,
    close: bool = True,
) -> list[StreamEvent]:
    """Turn a script into the TCP stage's events."""
    out: list[StreamEvent] = [ConnectionOpened(conn_id, 0.0, CLIENT, server, partial)]
    ts = 0.0
    closed = False
    for step in steps:
        ts += 1.0
        kind = step[0]
        if kind in (">", "<"):
            direction = Direction.ORIG if kind == ">" else Direction.RESP
            out.append(StreamData(conn_id, direction, ts, step[1]))
        elif kind in (">gap", "<gap"):
            direction = Direction.ORIG if kind == ">gap" else Direction.RESP
            out.append(StreamGap(conn_id, direction, ts, step[1]))
        elif kind in (">close", "<close"):
            direction = Direction.ORIG if kind == ">close" else Direction.RESP
            out.append(StreamClosed(conn_id, direction, ts, step[1] if len(step) > 1 else "fin"))
        elif kind == "close":
            reason = step[1] if len(step) > 1 else "fin"
            out.append(StreamClosed(conn_id, Direction.ORIG, ts, reason))
            out.append(StreamClosed(conn_id, Direction.RESP, ts, reason))
            out.append(ConnectionClosed(conn_id, ts, reason))
            closed = True
        else:
            raise ValueError(f"unknown step {step!r}")
    if close and not closed:
        ts += 1.0
        out.append(StreamClosed(conn_id, Direction.ORIG, ts, "fin"))
        out.append(StreamClosed(conn_id, Direction.RESP, ts, "fin"))
        out.append(ConnectionClosed(conn_id, ts, "fin"))
    return out


def feed_all(observer: HttpObserver, evs: Iterable[StreamEvent]) -> Result:
    """Feed events; collect what comes out."""
    result = Result(observer)
    for ev in evs:
        for item in observer.feed(ev):
            if isinstance(item, HttpTransaction):
                result.transactions.append(item)
            elif isinstance(item, Anomaly):
                result.anomalies.append(item)
            else:  # pragma: no cover - the observer only emits these two
                raise AssertionError(f"unexpected output {item!r}")
    return result


def run(steps: Sequence[Step], observer: HttpObserver | None = None, **kwargs: object) -> Result:
    """Run a script through a (fresh) observer."""
    return feed_all(observer or HttpObserver(), events(steps, **kwargs))  # type: ignore[arg-type]


def split_steps(steps: Sequence[Step], size: int) -> list[Step]:
    """The same script with every data step cut into pieces of ``size`` bytes."""
    out: list[Step] = []
    for step in steps:
        if step[0] in (">", "<"):
            data = step[1]
            out.extend((step[0], data[i : i + size]) for i in range(0, len(data), size))
        else:
            out.append(step)
    return out


GET = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


# ----------------------------------------------------------------- tests of the helper


def test_events_shape() -> None:
    evs = events([(">", b"a"), ("<gap", 3), ("<", b"b")])
    assert isinstance(evs[0], ConnectionOpened)
    assert [type(e).__name__ for e in evs[1:4]] == ["StreamData", "StreamGap", "StreamData"]
    assert isinstance(evs[-1], ConnectionClosed)


def test_split_steps_keeps_bytes() -> None:
    steps = [(">", b"abcdefg"), ("<gap", 2), ("<", b"xyz")]
    pieces = split_steps(steps, 3)
    assert b"".join(s[1] for s in pieces if s[0] == ">") == b"abcdefg"
    assert ("<gap", 2) in pieces
    assert max(len(s[1]) for s in pieces if s[0] in (">", "<")) == 3


def test_run_simple_exchange() -> None:
    result = run([(">", GET), ("<", OK)])
    assert len(result.transactions) == 1
    tx = result.transactions[0]
    assert tx.request is not None and tx.request.target == "/index.html"
    assert tx.response is not None and tx.response.body.head == b"hello"
