"""Behaviour of the TCP reassembler, from hand-built segments (RELIABILITY.md A1-A18)."""

from __future__ import annotations

import hashlib
import random

import pytest

from mirrorscope.model import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    FlowKey,
    Segment,
    StreamClosed,
    StreamData,
    StreamGap,
)
from mirrorscope.reassembly.tcp import TcpError, TcpReassembler

ORIG = Direction.ORIG
RESP = Direction.RESP
CK = FlowKey("10.0.0.1", 40000, "10.0.0.2", 80)  # client -> server
SK = CK.reversed()
C_ISN = 1000
S_ISN = 5000
MASK = 0xFFFFFFFF


def seg(
    key: FlowKey,
    seq: int,
    flags: int = ACK,
    payload: bytes = b"",
    *,
    ack: int = 0,
    ts: float = 1.0,
    missing: int = 0,
    ttl: int = 64,
) -> Segment:
    return Segment(ts, key, seq & MASK, ack & MASK, flags, payload, 65535, missing, ttl)


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


class Run:
    """Feeds segments and keeps every event, in order."""

    def __init__(self, **kwargs: object) -> None:
        self.r = TcpReassembler(**kwargs)  # type: ignore[arg-type]
        self.events: list[object] = []

    def feed(self, *segments: Segment) -> list[object]:
        new: list[object] = []
        for s in segments:
            new.extend(self.r.feed(s))
        self.events.extend(new)
        return new

    def expire(self, now: float) -> list[object]:
        new = self.r.expire(now)
        self.events.extend(new)
        return new

    def flush(self, now: float = 99.0) -> list[object]:
        new = self.r.flush(now)
        self.events.extend(new)
        return new

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def stream(self, d: Direction, conn_id: str | None = None) -> bytes:
        return b"".join(
            e.data
            for e in self.of(StreamData)
            if e.direction is d and (conn_id is None or e.conn_id == conn_id)
        )

    def gaps(self, d: Direction) -> list[int]:
        return [e.length for e in self.of(StreamGap) if e.direction is d]

    def anomalies(self, kind: str | None = None) -> list[Anomaly]:
        return [e for e in self.of(Anomaly) if kind is None or e.kind == kind]

    def handshake(self, ts: float = 1.0) -> None:
        self.feed(
            seg(CK, C_ISN, SYN, ts=ts),
            seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1, ts=ts),
            seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1, ts=ts),
        )


def client_data(offset: int, data: bytes, flags: int = ACK | PSH, **kw: object) -> Segment:
    """Client bytes at stream offset ``offset`` (after the handshake)."""
    return seg(CK, C_ISN + 1 + offset, flags, data, ack=S_ISN + 1, **kw)  # type: ignore[arg-type]


def server_ack(client_offset: int, **kw: object) -> Segment:
    """A pure ACK from the server for client stream offset ``client_offset``."""
    return seg(SK, S_ISN + 1, ACK, ack=C_ISN + 1 + client_offset, **kw)  # type: ignore[arg-type]


def chunks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(i, data[i : i + size]) for i in range(0, len(data), size)]


# ---------------------------------------------------------------- handshake, ids


def test_handshake_and_in_order_data_both_directions() -> None:
    run = Run()
    assert run.feed(seg(CK, C_ISN, SYN)) == []  # half-open: nothing reported yet
    assert run.feed(seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1)) == []
    opened = run.feed(seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1, ts=1.5))
    assert len(opened) == 1 and isinstance(opened[0], ConnectionOpened)
    conn = opened[0]
    assert conn.client == ("10.0.0.1", 40000)
    assert conn.server == ("10.0.0.2", 80)
    assert conn.partial is False
    assert conn.ts == 1.0  # first segment's time

    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    run.feed(client_data(0, request, ts=2.0))
    run.feed(seg(SK, S_ISN + 1, ACK | PSH, response, ack=C_ISN + 1 + len(request), ts=2.1))
    run.feed(client_data(len(request), b"", ACK | FIN, ts=3.0))
    run.feed(seg(SK, S_ISN + 1 + len(response), ACK | FIN, ack=C_ISN + 2 + len(request), ts=3.1))
    run.feed(seg(CK, C_ISN + 2 + len(request), ACK, ack=S_ISN + 2 + len(response), ts=3.2))

    assert run.stream(ORIG) == request
    assert run.stream(RESP) == response
    assert isinstance(run.events[0], ConnectionOpened)
    closed = run.of(StreamClosed)
    assert [(c.direction, c.reason) for c in closed] == [(ORIG, "fin"), (RESP, "fin")]
    (final,) = run.of(ConnectionClosed)
    assert final is run.events[-1]
    assert final.reason == "fin"
    assert (final.orig_bytes, final.resp_bytes) == (len(request), len(response))
    assert (final.orig_missed, final.resp_missed) == (0, 0)
    assert final.packets == 7  # the last ACK comes after the close: absorbed by the linger
    assert all(e.conn_id == conn.conn_id for e in run.events if hasattr(e, "conn_id"))
    assert run.anomalies() == []
    assert run.r.active_flows == 0 and run.r.lingering_flows == 1
    assert run.r.stats.late_segments == 1


def test_conn_id_is_blake2b_of_endpoints_and_first_ts() -> None:
    run = Run()
    run.feed(seg(CK, C_ISN, SYN, ts=1.25), client_data(0, b"x", ts=1.3))
    (opened,) = run.of(ConnectionOpened)
    text = b"10.0.0.1|40000|10.0.0.2|80|1.250000"
    assert opened.conn_id == "C" + hashlib.blake2b(text, digest_size=8).hexdigest()
    again = Run()
    again.feed(seg(CK, C_ISN, SYN, ts=1.25), client_data(0, b"x", ts=1.3))
    assert again.of(ConnectionOpened)[0].conn_id == opened.conn_id


def test_synack_first_makes_its_receiver_the_client() -> None:
    run = Run()
    run.feed(seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1), client_data(0, b"hello"))
    (opened,) = run.of(ConnectionOpened)
    assert opened.client == ("10.0.0.1", 40000) and opened.partial is False
    assert run.stream(ORIG) == b"hello"


def test_synack_captured_before_its_syn_still_completes_the_handshake() -> None:
    run = Run()
    run.feed(
        seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1),
        seg(CK, C_ISN, SYN),
        seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1),
    )
    (opened,) = run.of(ConnectionOpened)
    assert opened.client == ("10.0.0.1", 40000) and opened.partial is False
    assert run.r.stats.flows_created == 1


def test_bogus_ack_far_ahead_reports_no_missed_bytes() -> None:
    run = Run()
    run.handshake()
    run.feed(seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1 + 999_999))  # nothing was sent
    run.feed(client_data(0, b"GET / HTTP/1.1\r\n\r\n"))
    run.flush()
    (closed,) = run.of(ConnectionClosed)
    assert (closed.orig_missed, closed.resp_missed) == (0, 0)
    assert run.of(StreamGap) == []


def test_bare_ack_fin_rst_never_create_a_flow() -> None:
    run = Run()
    run.feed(
        seg(CK, 7, ACK, ack=9),
        seg(SK, 9, FIN | ACK, ack=7),
        seg(CK, 7, RST),
    )
    assert run.events == []
    assert run.r.active_flows == 0
    assert run.r.stats.no_flow == 3


def test_midstream_pickup_is_partial_and_client_is_the_higher_port() -> None:
    run = Run()
    # The first segment seen comes from the server (port 80), mid-body.
    run.feed(seg(SK, 777, ACK, b"body bytes", ack=333))
    run.feed(seg(CK, 333, ACK, b"more", ack=777 + 10))
    (opened,) = run.of(ConnectionOpened)
    assert opened.partial is True
    assert opened.client == ("10.0.0.1", 40000)
    assert run.stream(RESP) == b"body bytes"
    assert run.stream(ORIG) == b"more"
    assert run.r.stats.midstream_pickups == 1


def test_midstream_http_request_line_names_the_client_before_ports() -> None:
    run = Run()
    key = FlowKey("127.0.0.1", 39976, "127.0.0.1", 64000)  # client has the lower port
    run.feed(seg(key, 10, ACK, b"GET /api/queues HTTP/1.1\r\n"))
    (opened,) = run.of(ConnectionOpened)
    assert opened.client == ("127.0.0.1", 39976) and opened.partial is True
    run2 = Run()
    run2.feed(seg(key.reversed(), 10, ACK, b"HTTP/1.1 200 OK\r\n"))
    assert run2.of(ConnectionOpened)[0].client == ("127.0.0.1", 39976)


def test_midstream_port_tie_client_is_source_of_first_segment() -> None:
    run = Run()
    key = FlowKey("10.0.0.9", 5000, "10.0.0.8", 5000)
    run.feed(seg(key, 1, ACK, b"abc"))
    (opened,) = run.of(ConnectionOpened)
    assert opened.client == ("10.0.0.9", 5000)
    assert opened.server == ("10.0.0.8", 5000)


# --------------------------------------------------------- ordering, duplicates


def test_full_reverse_of_64k_request_reassembles_exactly() -> None:  # A3
    body = blob(64 * 1024)
    run = Run()
    run.handshake()
    for offset, part in reversed(chunks(body, 1000)):
        run.feed(client_data(offset, part))
    assert run.stream(ORIG) == body
    assert run.gaps(ORIG) == []
    run.feed(client_data(len(body), b"", ACK | FIN), server_ack(len(body) + 1))
    assert run.r.buffered_bytes == 0
    assert run.anomalies() == []


def test_every_packet_twice_gives_same_bytes_and_no_anomaly() -> None:  # A5
    body = blob(10_000, seed=5)
    segments = [
        seg(CK, C_ISN, SYN),
        seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1),
        seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1),
    ]
    parts = chunks(body, 1460)
    for offset, part in parts:
        segments.append(client_data(offset, part))
        segments.append(server_ack(offset + len(part)))
    run = Run()
    for s in segments:
        run.feed(s, s)
    assert run.stream(ORIG) == body
    assert run.anomalies() == []
    assert run.gaps(ORIG) == []
    assert run.r.stats.duplicates == len(parts)  # each data segment's copy


def test_overlap_with_same_bytes_is_silent() -> None:  # A2, same data
    body = blob(3000, seed=2)
    run = Run()
    run.handshake()
    run.feed(
        client_data(1000, body[1000:2000]),
        client_data(1500, body[1500:2600]),  # straddles buffered data and a hole
        client_data(0, body[0:1200]),  # fills the hole, overlaps [1000, 1200)
        client_data(2500, body[2500:]),
    )
    assert run.stream(ORIG) == body
    assert run.anomalies() == []
    assert run.r.stats.overlaps >= 2


def test_overlap_with_different_bytes_keeps_first_and_flags_it() -> None:  # A1
    run = Run()
    run.handshake()
    run.feed(client_data(4, b"GOOD"), client_data(4, b"EVIL"), client_data(0, b"GET "))
    assert run.stream(ORIG) == b"GET GOOD"
    (anomaly,) = run.anomalies("tcp.overlap_mismatch")
    assert anomaly.direction is ORIG
    fields = dict(item.split("=") for item in anomaly.detail.split())
    assert fields["offset"] == "4" and fields["length"] == "4"
    assert fields["first"] == hashlib.blake2b(b"GOOD", digest_size=8).hexdigest()
    assert fields["second"] == hashlib.blake2b(b"EVIL", digest_size=8).hexdigest()
    assert b"EVIL" not in anomaly.detail.encode()
    assert run.r.stats.overlap_mismatch == 1


def test_overlap_policy_last_lets_the_second_copy_win() -> None:
    run = Run(overlap_policy="last")
    run.handshake()
    run.feed(client_data(4, b"GOOD"), client_data(4, b"EVIL"), client_data(0, b"GET "))
    assert run.stream(ORIG) == b"GET EVIL"
    assert len(run.anomalies("tcp.overlap_mismatch")) == 1


def test_straddling_segment_adds_only_bytes_outside_the_overlap() -> None:  # A2
    run = Run()
    run.handshake()
    run.feed(client_data(10, b"AAAAAAAAAA"), client_data(30, b"BBBBBBBBBB"))
    # [15, 35) differs from both buffered copies where they overlap.
    run.feed(client_data(15, b"xxxxx" + b"yyyyyyyyyy" + b"zzzzz"))
    run.feed(client_data(0, b"0123456789"))
    expected = b"0123456789" + b"AAAAAAAAAA" + b"yyyyyyyyyy" + b"BBBBBBBBBB"
    assert run.stream(ORIG) == expected
    assert len(run.anomalies("tcp.overlap_mismatch")) == 1


def test_retransmission_of_delivered_unacked_data_with_other_bytes() -> None:  # A4
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"POST /pay amount=10"))
    run.feed(client_data(0, b"POST /pay amount=99"))
    assert run.stream(ORIG) == b"POST /pay amount=10"
    (anomaly,) = run.anomalies("tcp.overlap_mismatch")
    assert "where=delivered" in anomaly.detail
    # The overlapping slice is described by offset, length and hashes, not raw bytes.
    first = hashlib.blake2b(b"POST /pay amount=10", digest_size=8).hexdigest()
    second = hashlib.blake2b(b"POST /pay amount=99", digest_size=8).hexdigest()
    assert f"offset=0 length=19 first={first} second={second}" in anomaly.detail


def test_acked_bytes_are_released_and_no_longer_compared() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abcdef"), server_ack(6))
    run.feed(client_data(0, b"zzzzzz"))
    assert run.anomalies() == []
    assert run.r.stats.old_data_unchecked == 1
    assert run.r.buffered_bytes == 0


def test_retained_bytes_are_bounded_without_acks() -> None:
    run = Run(retain_acked_window=1000)
    run.handshake()
    for offset, part in chunks(blob(50_000), 1000):
        run.feed(client_data(offset, part))
    assert run.r.buffered_bytes == 1000


def test_sequence_wraparound_with_reordering() -> None:  # A11
    isn = 0xFFFFFF00
    body = blob(4096, seed=3)
    parts = chunks(body, 100)
    order = list(range(len(parts)))
    random.Random(7).shuffle(order)
    run = Run()
    run.feed(seg(CK, isn, SYN), seg(SK, S_ISN, SYN | ACK, ack=isn + 1))
    for i in order:
        offset, part = parts[i]
        run.feed(seg(CK, isn + 1 + offset, ACK, part, ack=S_ISN + 1))
    run.feed(seg(CK, isn + 1 + len(body), ACK | FIN, ack=S_ISN + 1))
    assert run.stream(ORIG) == body
    assert run.gaps(ORIG) == []
    assert [c.reason for c in run.of(StreamClosed) if c.direction is ORIG] == ["fin"]


def test_one_byte_segments_for_a_20k_stream() -> None:  # A15
    body = blob(20 * 1024, seed=4)
    run = Run()
    run.handshake()
    for i in range(len(body)):
        run.feed(client_data(i, body[i : i + 1]))
    assert run.stream(ORIG) == body
    assert run.anomalies() == []


# ------------------------------------------------------------------ FIN and RST


def test_fin_before_last_data_closes_after_the_data() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"hello "))
    run.feed(client_data(12, b"", ACK | FIN))  # FIN overtook "world!"
    assert run.of(StreamClosed) == []
    run.feed(client_data(6, b"world!"))
    assert run.stream(ORIG) == b"hello world!"
    (closed,) = run.of(StreamClosed)
    assert (closed.direction, closed.reason) == (ORIG, "fin")


def test_fin_with_lost_data_becomes_gap_when_peer_acks_the_fin() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"hello "), client_data(12, b"", ACK | FIN))
    run.feed(server_ack(13))  # ACK of the FIN: "world!" was received, not captured
    assert run.gaps(ORIG) == [6]
    (closed,) = run.of(StreamClosed)
    assert closed.reason == "fin"


def test_in_window_rst_closes_both_sides_and_data_after_is_counted() -> None:  # A10
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"POST / HTTP/1.1\r\n"), client_data(30, b"tail"))
    run.feed(seg(SK, S_ISN + 1, RST | ACK, ack=C_ISN + 1 + 17, ts=2.0))
    assert run.stream(ORIG) == b"POST / HTTP/1.1\r\ntail"
    assert run.gaps(ORIG) == [13]  # the hole [17, 30) under the buffered "tail"
    assert [(c.direction, c.reason) for c in run.of(StreamClosed)] == [
        (ORIG, "rst"),
        (RESP, "rst"),
    ]
    (final,) = run.of(ConnectionClosed)
    assert final.reason == "rst" and final.orig_missed == 13
    before = len(run.events)
    run.feed(client_data(34, b"more body"), client_data(43, b"and more"))
    new = run.events[before:]
    assert [type(e) for e in new] == [Anomaly]
    assert new[0].kind == "tcp.data_after_rst"
    assert run.r.stats.data_after_rst == 2
    assert run.of(ConnectionOpened).__len__() == 1  # no phantom connection


def test_rst_the_peer_ignored_is_flagged_as_injection_and_data_resumes() -> None:
    """suricata-verify security-4710-01: RST, then the request, which the server ACKs."""
    run = Run()
    run.handshake()
    run.feed(seg(CK, C_ISN + 1, RST | ACK, ack=S_ISN + 1, ts=2.0))
    request = b"GET /ultrasurf.html HTTP/1.1\r\n\r\n"
    run.feed(client_data(0, request, ts=2.1))
    assert run.stream(ORIG) == b""  # not delivered on the client's word alone
    run.feed(server_ack(len(request), ts=2.2))  # the server took it: RST was ignored
    run.feed(seg(SK, S_ISN + 1, ACK | PSH, b"HTTP/1.1 200 OK\r\n", ack=C_ISN + 1, ts=2.3))
    first, resumed = run.of(ConnectionOpened)
    assert resumed.partial is True and resumed.client == first.client
    assert run.stream(ORIG, resumed.conn_id) == request
    assert run.stream(RESP, resumed.conn_id) == b"HTTP/1.1 200 OK\r\n"
    kinds = [(a.kind, a.conn_id) for a in run.anomalies()]
    assert kinds == [
        ("tcp.data_after_rst", first.conn_id),
        ("tcp.rst_injection", resumed.conn_id),
    ]
    assert run.r.stats.rst_injection == 1


def test_rst_far_outside_the_window_is_flagged_and_ignored() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abc"))
    run.feed(seg(SK, S_ISN + 1 + 0x40000000, RST))
    (anomaly,) = run.anomalies()
    assert anomaly.kind == "tcp.rst_out_of_window" and anomaly.direction is RESP
    run.feed(client_data(3, b"def"))
    assert run.stream(ORIG) == b"abcdef"
    assert run.of(StreamClosed) == []


def test_rst_to_a_syn_reports_nothing() -> None:
    run = Run()
    run.feed(seg(CK, C_ISN, SYN), seg(SK, 0, RST | ACK, ack=C_ISN + 1))
    assert run.events == []
    assert run.r.stats.flows_closed == {"rst": 1}
    assert run.r.lingering_flows == 0  # a rejected attempt is not worth remembering


def test_rst_answering_syn_then_synack_and_data_is_still_seen() -> None:
    """Evasion from suricata-verify bug-3286: the request after the teardown counts."""
    run = Run()
    run.feed(
        seg(CK, C_ISN, SYN),
        seg(SK, 0, RST | ACK, ack=C_ISN + 1),
        seg(SK, 0, FIN | ACK, ack=C_ISN + 1),
        seg(CK, C_ISN + 1, RST),
        seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1),
        seg(CK, C_ISN + 1, ACK, ack=S_ISN + 1),
        client_data(0, b"GET / HTTP/1.1\r\n\r\n"),
    )
    (opened,) = run.of(ConnectionOpened)
    assert opened.client == ("10.0.0.1", 40000)
    assert run.stream(ORIG) == b"GET / HTTP/1.1\r\n\r\n"


def test_port_reuse_after_fin_starts_a_new_connection() -> None:
    run = Run()
    run.handshake(ts=1.0)
    run.feed(client_data(0, b"one", ACK | FIN, ts=1.1))
    run.feed(seg(SK, S_ISN + 1, ACK | FIN, ack=C_ISN + 5, ts=1.2))
    assert len(run.of(ConnectionClosed)) == 1
    # Late retransmission and ACK inside the linger: absorbed, no phantom flow.
    run.feed(client_data(0, b"one", ACK | FIN, ts=1.3), server_ack(4, ts=1.3))
    assert len(run.of(ConnectionOpened)) == 1
    assert run.r.stats.late_segments == 2
    # Same 4-tuple, new ISN, one second later.
    run.feed(seg(CK, 90_000, SYN, ts=2.0), seg(CK, 90_001, ACK, b"two", ts=2.1))
    first, second = run.of(ConnectionOpened)
    assert first.conn_id != second.conn_id
    assert run.stream(ORIG, second.conn_id) == b"two"
    assert run.r.stats.connections_reused == 1


def test_new_syn_on_quiet_open_flow_closes_it_as_reused() -> None:
    run = Run(closed_linger=5.0)
    run.handshake(ts=1.0)
    run.feed(client_data(0, b"a", ts=1.0))
    run.feed(seg(CK, 424242, SYN, ts=3.0))  # not quiet yet: an oddity
    assert [a.kind for a in run.anomalies()] == ["tcp.syn_inside_connection"]
    run.feed(seg(CK, 424242, SYN, ts=10.0), seg(CK, 424243, ACK, b"b", ts=10.1))
    first, second = run.of(ConnectionOpened)
    (closed,) = run.of(ConnectionClosed)
    assert closed.conn_id == first.conn_id and closed.reason == "reused"
    assert run.stream(ORIG, second.conn_id) == b"b"


# ------------------------------------------------------------- gaps and bounds


def test_hole_never_filled_skips_ahead_at_the_bound() -> None:  # A16
    bound = 16 * 1024
    body = blob(200 * 1024, seed=6)
    run = Run(max_ooo_bytes=bound, retain_acked_window=0)
    run.handshake()
    peak = 0
    for offset, part in chunks(body, 1000)[1:]:  # the first 1000 bytes are lost
        run.feed(client_data(offset, part))
        peak = max(peak, run.r.buffered_bytes)
    assert run.gaps(ORIG) == [1000]
    assert run.stream(ORIG) == body[1000:]
    assert peak <= bound + 1000
    assert run.r.stats.ooo_bound_hits == 1
    assert [a.kind for a in run.anomalies()] == ["tcp.ooo_bound"]


def test_segment_count_bound_also_skips() -> None:
    run = Run(max_ooo_segments=10)
    run.handshake()
    for i in range(1, 12):  # 1-byte segments with a 1-byte hole before each
        run.feed(client_data(2 * i, b"x"))
    assert sum(run.gaps(ORIG)) >= 1
    assert run.r.stats.ooo_bound_hits >= 1


def test_ack_above_a_hole_declares_the_gap_at_once() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"A" * 1000), client_data(2000, b"C" * 1000))
    assert run.gaps(ORIG) == []
    run.feed(server_ack(3000))
    assert run.gaps(ORIG) == [1000]
    assert run.stream(ORIG) == b"A" * 1000 + b"C" * 1000
    assert run.r.stats.acks_above_gap == 1


def test_ack_before_its_data_with_nothing_buffered_is_not_a_gap() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"A" * 100), server_ack(300))  # mirror reordered the ACK
    run.feed(client_data(100, b"B" * 100), client_data(200, b"C" * 100))
    assert run.gaps(ORIG) == []
    assert run.stream(ORIG) == b"A" * 100 + b"B" * 100 + b"C" * 100


def test_data_beyond_an_acked_hole_declares_the_gap() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"A" * 100), server_ack(300))
    run.feed(client_data(200, b"C" * 100))  # [100, 200) was ACKed but never seen
    assert run.gaps(ORIG) == [100]
    assert run.stream(ORIG) == b"A" * 100 + b"C" * 100


def test_snaplen_missing_bytes_become_gaps_never_zeros() -> None:  # A17
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"h" * 96, missing=1404))
    run.feed(client_data(3000, b"j" * 96, missing=4))  # out of order, truncated too
    run.feed(client_data(1500, b"i" * 96, missing=1404))
    data_and_gaps = [
        (type(e).__name__, len(e.data) if isinstance(e, StreamData) else e.length)
        for e in run.events
        if isinstance(e, StreamData | StreamGap)
    ]
    assert data_and_gaps == [
        ("StreamData", 96),
        ("StreamGap", 1404),
        ("StreamData", 96),
        ("StreamGap", 1404),
        ("StreamData", 96),
        ("StreamGap", 4),
    ]
    assert b"\x00" not in run.stream(ORIG)


# ------------------------------------------------------------ timeouts, tables


def test_idle_timeout_delivers_buffered_and_closes() -> None:
    run = Run(idle_timeout=60.0)
    run.handshake(ts=1.0)
    run.feed(client_data(0, b"abc", ts=1.0), client_data(10, b"xyz", ts=2.0))
    assert run.expire(61.0) == []  # 59 s idle
    out = run.expire(62.0)
    assert [type(e) for e in out] == [
        StreamGap, StreamData, StreamClosed, StreamClosed, ConnectionClosed
    ]
    assert out[0].length == 7 and out[1].data == b"xyz"
    assert out[-1].reason == "timeout"
    assert run.r.active_flows == 0


def test_half_open_timeout_is_silent_but_counted() -> None:
    run = Run(half_open_timeout=30.0)
    run.feed(seg(CK, C_ISN, SYN, ts=1.0))
    assert run.expire(30.0) == []
    assert run.r.half_open_flows == 1
    assert run.expire(31.0) == []
    assert run.r.half_open_flows == 0
    assert run.r.stats.flows_closed == {"timeout": 1}


def test_eviction_at_max_flows_takes_the_least_recently_active() -> None:
    run = Run(max_flows=3)
    keys = [FlowKey("10.1.0.1", 50000 + i, "10.1.0.2", 80) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        run.feed(seg(key, 100, ACK, b"req", ts=1.0 + i))
    run.feed(seg(keys[0], 103, ACK, b"more", ts=4.0))  # keys[1] is now least recent
    run.feed(seg(keys[3], 100, ACK, b"req", ts=5.0))
    opened = {e.conn_id: e.client for e in run.of(ConnectionOpened)}
    (closed,) = run.of(ConnectionClosed)
    assert closed.reason == "evicted"
    assert opened[closed.conn_id] == ("10.1.0.1", 50001)
    assert run.r.stats.flows_evicted == {"max_flows": 1}
    assert run.r.active_flows == 3


def test_syn_flood_evicts_half_open_flows_without_buffers() -> None:
    run = Run(max_half_open=100, max_flows=1000)
    run.handshake()
    for i in range(10_000):
        key = FlowKey(f"172.16.{i // 250}.{i % 250}", 1024 + i % 60000, "10.0.0.2", 80)
        run.feed(seg(key, i * 7919, SYN, ts=1.0 + i * 1e-4))
    assert run.r.half_open_flows == 100
    assert run.r.stats.flows_evicted == {"max_half_open": 9900}
    assert len(run.events) == 1  # only the real connection's ConnectionOpened
    for flow in run.r._half_open.values():
        assert all(h.buf is None and h.kept is None for h in flow.halves)
    run.feed(client_data(0, b"still here"))
    assert run.stream(ORIG) == b"still here"


def test_flush_closes_everything_with_reason_end() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abc"))
    out = run.flush(50.0)
    assert [(type(e), getattr(e, "reason", None)) for e in out] == [
        (StreamClosed, "end"),
        (StreamClosed, "end"),
        (ConnectionClosed, "end"),
    ]
    assert run.r.active_flows == 0 and run.r.lingering_flows == 0


# ----------------------------------------------------------- probes, TFO, oddities


def test_zero_window_probes_are_delivered_once_and_not_flagged() -> None:  # A13
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abc"))
    for _ in range(5):
        run.feed(client_data(3, b"d"))  # the receiver's window is closed
    run.feed(client_data(3, b"defgh"))  # window opens: the real segment
    assert run.stream(ORIG) == b"abcdefgh"
    assert run.anomalies() == []


def test_keepalive_with_garbage_byte_is_ignored() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abc"), client_data(2, b"\x00"), client_data(3, b""))
    assert run.stream(ORIG) == b"abc"
    assert run.anomalies() == []
    assert run.r.stats.keepalives == 1


def test_tfo_syn_payload_is_stream_byte_zero_delivered_once() -> None:  # A14
    run = Run()
    syn = seg(CK, C_ISN, SYN, b"GET / HTTP/1.1\r\n")
    run.feed(syn, syn)  # retransmitted SYN carries the same data
    run.feed(seg(SK, S_ISN, SYN | ACK, ack=C_ISN + 1 + 16))
    run.feed(seg(CK, C_ISN + 17, ACK | PSH, b"Host: x\r\n\r\n", ack=S_ISN + 1))
    assert run.stream(ORIG) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert isinstance(run.events[0], ConnectionOpened)
    assert [a.kind for a in run.anomalies()] == ["tcp.syn_with_data"]


def test_clock_skew_is_flagged_once_and_causes_no_timeouts() -> None:  # A18
    run = Run(idle_timeout=300.0)
    run.handshake(ts=5000.0)
    run.feed(client_data(0, b"a", ts=5000.0))
    run.feed(client_data(1, b"b", ts=1400.0), client_data(2, b"c", ts=1401.0))
    assert [a.kind for a in run.anomalies()] == ["tcp.clock_skew"]
    assert run.expire(1401.0) == []
    assert run.r.active_flows == 1
    assert run.stream(ORIG) == b"abc"


def test_low_ttl_overlap_with_other_bytes_is_flagged() -> None:  # A7
    run = Run()
    run.handshake()
    run.feed(client_data(4, b"GOOD", ttl=64), client_data(4, b"EVIL", ttl=3))
    kinds = sorted(a.kind for a in run.anomalies())
    assert kinds == ["tcp.overlap_mismatch", "tcp.ttl_inconsistent"]


def test_data_beyond_fin_is_flagged_and_dropped() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"abc", ACK | FIN), client_data(3, b"sneaky"))
    assert run.stream(ORIG) == b"abc"
    assert [a.kind for a in run.anomalies()] == ["tcp.data_after_fin"]


def test_anomalies_per_flow_are_capped() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"x" * 10))
    for i in range(200):
        run.feed(client_data(0, bytes([i % 256]) * 10))
    assert len(run.anomalies()) == 64
    assert run.r.stats.anomalies_suppressed > 0


def test_capture_loss_ratio() -> None:
    run = Run()
    run.handshake()
    run.feed(client_data(0, b"A" * 10), client_data(20, b"C" * 10), server_ack(30))
    assert run.r.stats.acks_above_gap == 1
    assert run.r.stats.capture_loss == 1 / run.r.stats.acks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"overlap_policy": "bsd"},
        {"max_ooo_bytes": 0},
        {"max_flows": 0},
        {"retain_acked_window": -1},
        {"idle_timeout": -1.0},
    ],
)
def test_misconfiguration_raises_tcp_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(TcpError):
        TcpReassembler(**kwargs)  # type: ignore[arg-type]


def test_global_buffer_cap_evicts_least_recent_flows_with_holes() -> None:
    """Many flows each holding bytes above a hole: expire() brings the total under the cap."""
    per_flow, flows, cap = 4000, 50, 60_000  # 200 kB held in all, cap 60 kB
    run = Run(max_buffered_bytes=cap, retain_acked_window=0)
    for n in range(flows):
        ck = FlowKey("10.0.1.1", 30000 + n, "10.0.0.2", 80)
        sk = ck.reversed()
        ts = 1.0 + n * 0.01
        run.feed(seg(ck, C_ISN, SYN, ts=ts), seg(sk, S_ISN, SYN | ACK, ack=C_ISN + 1, ts=ts),
                 seg(ck, C_ISN + 1, ACK, ack=S_ISN + 1, ts=ts),
                 # 100 bytes lost at the start, then per_flow bytes held above the hole.
                 seg(ck, C_ISN + 1 + 100, ACK | PSH, blob(per_flow, seed=n), ack=S_ISN + 1,
                     ts=ts))
    assert run.r.buffered_bytes >= flows * per_flow
    run.expire(2.0)  # before any idle timeout: only the cap can close flows
    assert run.r.buffered_bytes <= cap * 9 // 10
    evicted = run.r.stats.flows_evicted.get("memory", 0)
    assert evicted >= (flows * per_flow - cap) // per_flow
    # Evicted flows delivered what they held after a gap of the lost 100 bytes.
    assert run.gaps(ORIG) == [100] * evicted
    assert sum(len(e.data) for e in run.of(StreamData)) == evicted * per_flow
    # The least recently active flows went first.
    closed = {e.conn_id for e in run.of(StreamGap)}
    opened = [e.conn_id for e in run.of(ConnectionOpened)]
    assert closed == set(opened[:evicted])


def test_global_buffer_cap_holds_between_expire_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst inside one expire interval (no expire() at all here) stays near the cap."""
    import mirrorscope.reassembly.tcp as tcp_module

    monkeypatch.setattr(tcp_module, "_CAP_CHECK_SLOW", 256)
    monkeypatch.setattr(tcp_module, "_CAP_CHECK_FAST", 16)
    monkeypatch.setattr(tcp_module, "_TYPICAL_SEGMENT", 4000)
    per_flow, flows, cap = 4000, 400, 200_000  # 1.6 MB would be held without the cap
    run = Run(max_buffered_bytes=cap, retain_acked_window=0)
    peak = 0
    for n in range(flows):
        ck = FlowKey("10.0.2.1", 20000 + n, "10.0.0.2", 80)
        run.feed(seg(ck, C_ISN, SYN), seg(ck.reversed(), S_ISN, SYN | ACK, ack=C_ISN + 1),
                 seg(ck, C_ISN + 1, ACK, ack=S_ISN + 1),
                 seg(ck, C_ISN + 1 + 100, ACK | PSH, blob(per_flow, seed=n), ack=S_ISN + 1))
        peak = max(peak, run.r.buffered_bytes)
    # Checks come before the room left can fill: at most one short interval (16 packets,
    # 4 of them holding data) above the cap.  The first slow interval (256 packets) would
    # reach 256 kB without the room-based schedule.
    assert peak <= cap + 4 * per_flow
    evicted = run.r.stats.flows_evicted.get("memory", 0)
    assert evicted >= (flows * per_flow - cap) // per_flow
    assert run.gaps(ORIG) == [100] * evicted  # the loss is counted, nothing invented
