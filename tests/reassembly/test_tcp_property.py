"""Property tests: reordering, duplication and overlap never change the delivered bytes."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorscope.model import (
    ACK,
    FIN,
    SYN,
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    FlowKey,
    Segment,
    StreamClosed,
    StreamData,
    StreamGap,
)
from mirrorscope.reassembly.tcp import TcpReassembler

KEY = FlowKey("192.0.2.1", 51000, "192.0.2.2", 443)
MASK = 0xFFFFFFFF


def _segment(isn: int, offset: int, data: bytes, flags: int = ACK) -> Segment:
    return Segment(1.0, KEY, (isn + 1 + offset) & MASK, 0, flags, data)


def _run(isn: int, segments: list[Segment]) -> tuple[bytes, list[object]]:
    reassembler = TcpReassembler()
    events: list[object] = []
    events.extend(reassembler.feed(Segment(1.0, KEY, isn, 0, SYN, b"")))
    for s in segments:
        events.extend(reassembler.feed(s))
    events.extend(reassembler.flush(2.0))
    data = b"".join(e.data for e in events if isinstance(e, StreamData))
    return data, events


@st.composite
def covered_stream(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    """A body and (start, end) ranges that cover all of it, possibly overlapping."""
    body = draw(st.binary(min_size=1, max_size=3000))
    cuts = draw(st.lists(st.integers(1, len(body)), max_size=40, unique=True))
    bounds = [0, *sorted(c for c in cuts if c < len(body)), len(body)]
    ranges = list(pairwise(bounds))
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, len(body) - 1), st.integers(1, 600)),
            max_size=15,
        )
    )
    ranges += [(start, min(len(body), start + size)) for start, size in extra]
    return body, ranges


@settings(max_examples=150, deadline=None)
@given(
    stream=covered_stream(),
    isn=st.one_of(st.integers(0, MASK), st.integers(MASK - 2000, MASK)),
    copies=st.lists(st.integers(1, 3), min_size=60, max_size=60),
    with_fin=st.booleans(),
    rnd=st.randoms(use_true_random=False),
)
def test_any_permutation_and_duplication_yields_the_original_bytes(
    stream: tuple[bytes, list[tuple[int, int]]],
    isn: int,
    copies: list[int],
    with_fin: bool,
    rnd: object,
) -> None:
    body, ranges = stream
    segments = []
    for i, (start, end) in enumerate(ranges):
        segments += [_segment(isn, start, body[start:end])] * copies[i % len(copies)]
    if with_fin:
        segments.append(_segment(isn, len(body), b"", ACK | FIN))
    rnd.shuffle(segments)  # type: ignore[attr-defined]
    data, events = _run(isn, segments)
    assert data == body
    assert not [e for e in events if isinstance(e, StreamGap)]
    assert not [e for e in events if isinstance(e, Anomaly)]


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 2000),
    pieces=st.lists(
        st.tuples(st.integers(0, 1999), st.integers(1, 300), st.binary(min_size=1, max_size=1)),
        max_size=30,
    ),
    isn=st.integers(0, MASK),
)
def test_first_copy_of_every_byte_wins(
    size: int, pieces: list[tuple[int, int, bytes]], isn: int
) -> None:
    """Conflicting overlaps: each byte comes from the first segment that carried it."""
    segments = []
    expected: list[int | None] = [None] * size
    for start, length, fill in pieces:
        start %= size
        end = min(size, start + length)
        segments.append(_segment(isn, start, fill * (end - start)))
        for pos in range(start, end):
            if expected[pos] is None:
                expected[pos] = fill[0]
    # Finally a segment with the whole range, so no hole is left.
    segments.append(_segment(isn, 0, b"\xee" * size))
    reference = bytes(b if b is not None else 0xEE for b in expected)
    data, events = _run(isn, segments)
    assert data == reference
    assert not [e for e in events if isinstance(e, StreamGap)]



@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=4000),
    seg_size=st.integers(1, 500),
    lost=st.sets(st.integers(0, 40), max_size=6),
    swaps=st.lists(st.integers(0, 200), max_size=30),
    ack_every=st.integers(1, 5),
    ooo_bound=st.sampled_from([300, 1 << 20]),
)
def test_loss_and_reordering_never_misplace_a_byte(
    body: bytes,
    seg_size: int,
    lost: set[int],
    swaps: list[int],
    ack_every: int,
    ooo_bound: int,
) -> None:
    """Dropped segments, local reordering and receiver ACKs: every delivered byte sits
    at its true offset, and data plus gaps account for the whole stream."""
    isn = 4_000_000_000
    server = KEY.reversed()
    sent = 0
    wire: list[Segment] = []
    for i, start in enumerate(range(0, len(body), seg_size)):
        part = body[start : start + seg_size]
        if i not in lost:  # lost by the capture, not by the network: the peer got it
            wire.append(_segment(isn, start, part))
        sent = start + len(part)
        if i % ack_every == 0:
            wire.append(Segment(1.0, server, 7, (isn + 1 + sent) & MASK, ACK, b""))
    for k in swaps:  # local reordering, as a mirror port does
        j = k % len(wire)
        if j + 1 < len(wire):
            wire[j], wire[j + 1] = wire[j + 1], wire[j]
    wire.append(_segment(isn, len(body), b"", ACK | FIN))
    reassembler = TcpReassembler(max_ooo_bytes=ooo_bound)
    events: list[object] = list(reassembler.feed(Segment(1.0, KEY, isn, 0, SYN, b"")))
    for s in wire:
        events.extend(reassembler.feed(s))
    events.extend(reassembler.flush(2.0))
    pos = 0
    for e in events:
        if isinstance(e, StreamData) and e.direction == 0:
            assert e.data == body[pos : pos + len(e.data)]
            pos += len(e.data)
        elif isinstance(e, StreamGap) and e.direction == 0:
            pos += e.length
    assert pos == len(body)
    assert not [e for e in events if isinstance(e, Anomaly)]


_FLAG_CHOICES = [SYN, SYN | ACK, ACK, ACK, ACK, ACK | FIN, FIN, 0x04, 0x04 | ACK, ACK | 0x20]


@st.composite
def hostile_traffic(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Random segments on a few 4-tuples, sequence numbers close enough to interact."""
    keys = [KEY, KEY.reversed(), FlowKey("192.0.2.1", 51001, "192.0.2.2", 443)]
    keys.append(keys[2].reversed())
    base = draw(st.sampled_from([0, 1000, MASK - 300]))
    steps: list[tuple[str, object]] = []
    ts = 1.0
    for _ in range(draw(st.integers(1, 60))):
        if draw(st.integers(0, 15)) == 0:
            steps.append(("expire", ts + draw(st.sampled_from([0.0, 10.0, 40.0, 400.0]))))
            continue
        ts += draw(st.sampled_from([0.0, 0.001, 1.0, 7.0, -3.0, 50.0]))
        size = draw(st.sampled_from([0, 0, 1, 3, 10, 200]))
        steps.append((
            "feed",
            Segment(
                ts,
                draw(st.sampled_from(keys)),
                (base + draw(st.integers(-50, 600))) & MASK,
                (base + draw(st.integers(-50, 600))) & MASK,
                draw(st.sampled_from(_FLAG_CHOICES)),
                draw(st.sampled_from([b"", b"a" * size, b"b" * size])),
                0,
                draw(st.sampled_from([0, 0, 0, 5])),
                draw(st.sampled_from([64, 64, 2])),
            ),
        ))
    return steps


@settings(max_examples=120, deadline=None)
@given(steps=hostile_traffic(), ooo=st.sampled_from([1, 50, 4 << 20]))
def test_hostile_traffic_keeps_the_event_contract(
    steps: list[tuple[str, object]], ooo: int
) -> None:
    """Never raises; per connection: opened first, closed once, accounting adds up."""
    r = TcpReassembler(max_ooo_bytes=ooo, max_ooo_segments=4, max_flows=3, max_half_open=2,
                       idle_timeout=30.0, half_open_timeout=5.0)
    events: list[object] = []
    for what, arg in steps:
        events.extend(r.feed(arg) if what == "feed" else r.expire(arg))  # type: ignore[arg-type]
        assert r.active_flows <= 3 and r.half_open_flows <= 2
    events.extend(r.flush(1e9))
    assert r.active_flows == 0

    state: dict[str, dict[str, object]] = {}
    for e in events:
        conn_id = getattr(e, "conn_id", None)
        assert conn_id is not None
        if isinstance(e, ConnectionOpened):
            # Ids hash the 4-tuple and first timestamp: only a replay of the very same
            # first packet (time went back) may reuse one, after the first use closed.
            assert conn_id not in state or state[conn_id]["done"] is not None
            state[conn_id] = {"closed": set(), "done": None, "bytes": [0, 0], "gaps": [0, 0]}
            continue
        assert conn_id in state, f"{type(e).__name__} before ConnectionOpened"
        conn = state[conn_id]
        if isinstance(e, Anomaly):
            continue
        assert conn["done"] is None, f"{type(e).__name__} after ConnectionClosed"
        if isinstance(e, StreamData | StreamGap | StreamClosed):
            assert e.direction not in conn["closed"]  # type: ignore[operator]
        if isinstance(e, StreamData):
            assert e.data
            conn["bytes"][e.direction] += len(e.data)  # type: ignore[index]
        elif isinstance(e, StreamGap):
            assert e.length > 0
            conn["gaps"][e.direction] += e.length  # type: ignore[index]
        elif isinstance(e, StreamClosed):
            conn["closed"].add(e.direction)  # type: ignore[attr-defined]
        elif isinstance(e, ConnectionClosed):
            assert len(conn["closed"]) == 2  # type: ignore[arg-type]
            assert [e.orig_bytes, e.resp_bytes] == conn["bytes"]
            assert [e.orig_missed, e.resp_missed] == conn["gaps"]
            conn["done"] = e
    assert all(conn["done"] is not None for conn in state.values())
