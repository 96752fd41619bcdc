"""Fuzz targets over the sans-I/O stages: the HTTP observer alone, and decode -> TCP -> HTTP.

Inputs are split FuzzBuffer-style (Zeek's ``src/fuzzers/FuzzBuffer.cc`` idea): chunks are
separated by the magic ``b"\\x01PKT"``; the first byte after each magic is a control byte
and the rest of the chunk is its payload; at most 64 chunks per input.  For the stream
target the control byte's low bit picks the direction, bit 1 turns the chunk into a gap
marker (its payload only gives the gap length) and bit 2 closes that direction.  For the
packet target the control byte picks the link type and advances the packet clock.

A target returns normally when the stages behaved; it raises ``FuzzFinding`` when a stage
reported an internal error or broke an invariant.  Any other exception escaping a stage
is a finding too (the runner catches it).
"""

from __future__ import annotations

from dataclasses import dataclass

from mirrorscope.capture.decode import Decoder
from mirrorscope.model import (
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    HttpTransaction,
    RawFrame,
    StreamClosed,
    StreamData,
    StreamGap,
)
from mirrorscope.reassembly.http1 import HttpObserver
from mirrorscope.reassembly.tcp import TcpReassembler

MAGIC = b"\x01PKT"
MAX_CHUNKS = 64
CTL_RESP = 0x01  # stream target: chunk travels server -> client
CTL_GAP = 0x02  # stream target: chunk is a gap of the length its first two bytes give
CTL_CLOSE = 0x04  # stream target: close this direction after the chunk

# Link types the packet target cycles through (pcap LINKTYPE_* values): Ethernet, raw IP,
# BSD loopback, Linux SLL and SLL2.  Ethernet first and most likely.
LINKTYPES = (1, 1, 1, 1, 101, 0, 113, 276)


class FuzzFinding(Exception):
    """A stage misbehaved on this input: internal error or broken invariant."""


@dataclass(slots=True)
class Outcome:
    """What one input produced: used by the runner as cheap behavioural coverage."""

    transactions: int
    anomaly_kinds: frozenset[str]


def split_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """Split an input into at most 64 (control byte, payload) chunks on the magic."""
    parts = data.split(MAGIC)
    chunks: list[tuple[int, bytes]] = []
    # Bytes before the first magic form a chunk of their own with control byte 0, so a
    # plain byte string (no magic at all) is still a meaningful input.
    if parts[0]:
        chunks.append((0, parts[0]))
    for part in parts[1 : MAX_CHUNKS + 1]:
        if not part:
            continue
        chunks.append((part[0], part[1:]))
        if len(chunks) >= MAX_CHUNKS:
            break
    return chunks


def join_chunks(chunks: list[tuple[int, bytes]]) -> bytes:
    """The inverse of split_chunks (for building seeds)."""
    return b"".join(MAGIC + bytes([ctl]) + payload for ctl, payload in chunks)


def _check_transaction(tx: HttpTransaction) -> None:
    for msg in (tx.request, tx.response):
        if msg is None:
            continue
        body = msg.body
        if body.length < 0 or body.missed < 0 or body.wire_length < 0:
            raise FuzzFinding(f"negative body accounting: {body}")
        if body.complete and body.missed:
            raise FuzzFinding(f"complete body with missed bytes: {body}")
        if not body.complete and body.sha256 is not None:
            raise FuzzFinding("incomplete body carries a sha256")
    if tx.request is None and tx.response is None:
        raise FuzzFinding("transaction with neither request nor response")


def _collect(results: list[object], kinds: set[str]) -> int:
    count = 0
    for item in results:
        if type(item) is HttpTransaction:
            _check_transaction(item)
            count += 1
        elif type(item) is Anomaly:
            kinds.add(item.kind)
            if item.kind == "http.internal_error":
                raise FuzzFinding(f"http.internal_error: {item.detail}")
    return count


def stream_target(data: bytes, observer: HttpObserver | None = None) -> Outcome:
    """Feed one two-sided TCP stream, described by ``data``, to an HttpObserver."""
    obs = observer if observer is not None else HttpObserver(body_keep=4096)
    conn = "fuzz"
    ts = 1_000_000.0
    kinds: set[str] = set()
    txs = _collect(obs.feed(ConnectionOpened(conn, ts, ("10.0.0.1", 40000),
                                             ("10.0.0.2", 80), False)), kinds)
    closed = [False, False]
    for ctl, payload in split_chunks(data):
        ts += 0.001
        d = Direction.RESP if ctl & CTL_RESP else Direction.ORIG
        if closed[d]:
            continue
        if ctl & CTL_GAP:
            length = int.from_bytes(payload[:2], "big") + 1
            event: object = StreamGap(conn, d, ts, length)
        else:
            event = StreamData(conn, d, ts, payload)
        txs += _collect(obs.feed(event), kinds)  # type: ignore[arg-type]
        if ctl & CTL_CLOSE:
            closed[d] = True
            txs += _collect(obs.feed(StreamClosed(conn, d, ts, "fin")), kinds)
    for d in (Direction.ORIG, Direction.RESP):
        if not closed[d]:
            txs += _collect(obs.feed(StreamClosed(conn, d, ts, "end")), kinds)
    txs += _collect(obs.feed(ConnectionClosed(conn, ts, "end")), kinds)
    if obs.open_connections:
        raise FuzzFinding("connection still tracked after ConnectionClosed")
    if obs.stats.internal_errors:
        raise FuzzFinding("HttpObserver counted an internal error")
    return Outcome(txs, frozenset(kinds))


def packet_target(data: bytes) -> Outcome:
    """Feed each chunk of ``data`` as one captured frame through decode -> TCP -> HTTP."""
    decoder = Decoder(max_frag_bytes=1 << 20, max_frag_sets=64)
    tcp = TcpReassembler(max_ooo_bytes=256 << 10, max_flows=256, max_half_open=128)
    http = HttpObserver(body_keep=4096)
    kinds: set[str] = set()
    txs = 0
    ts = 1_000_000.0
    for ctl, payload in split_chunks(data):
        # The high bits move the clock, sometimes backwards (A18), sometimes past timeouts.
        step = (ctl >> 4) - 4
        ts += step * 0.5 if step != 11 else 400.0
        linktype = LINKTYPES[ctl & 0x07]
        # Bit 3 claims a longer wire length than captured: snaplen truncation (A17).
        wire_len = len(payload) + (64 if ctl & 0x08 else 0)
        frame = RawFrame(ts, linktype, payload, wire_len)
        for item in decoder.feed(frame):
            if type(item) is Anomaly:
                kinds.add(item.kind)
                continue
            for event in tcp.feed(item):  # type: ignore[arg-type]
                txs += _feed_http(http, event, kinds)
        for item in decoder.expire(ts):
            kinds.add(item.kind)
        for event in tcp.expire(ts):
            txs += _feed_http(http, event, kinds)
    for event in tcp.flush(ts):
        txs += _feed_http(http, event, kinds)
    if tcp.active_flows or tcp.lingering_flows:
        raise FuzzFinding("TCP flows still tracked after flush")
    if http.open_connections:
        raise FuzzFinding("HTTP connections still tracked after the TCP flush")
    return Outcome(txs, frozenset(kinds))


def _feed_http(http: HttpObserver, event: object, kinds: set[str]) -> int:
    if type(event) is Anomaly:
        kinds.add(event.kind)  # type: ignore[attr-defined]
        return 0
    return _collect(http.feed(event), kinds)  # type: ignore[arg-type]


TARGETS = {"stream": stream_target, "packet": packet_target}
