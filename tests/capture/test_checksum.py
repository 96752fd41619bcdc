"""TCP checksum verification and the offload-aware policy (RELIABILITY.md A6)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from mirrorscope.capture.checksum import SETTLE_AFTER, ChecksumPolicy, tcp_checksum_ok
from mirrorscope.capture.decode import DecodeError, Decoder
from mirrorscope.model import Anomaly, RawFrame, Segment


def _frame(pkt: object, ts: float = 1.0) -> RawFrame:
    data = bytes(pkt)  # type: ignore[call-overload]
    return RawFrame(ts, 1, data, len(data))


def _segment(src: str, payload: bytes, seq: int = 1000, *, bad: bool = False) -> Ether:
    pkt = Ether() / IP(src=src, dst="10.0.0.80") / TCP(sport=40000, dport=80, flags="PA",
                                                       seq=seq) / payload  # fmt: skip
    if bad:
        pkt = Ether(bytes(pkt))
        pkt[TCP].chksum ^= 0x5A5A
    return pkt


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), v6=st.booleans(), flip=st.integers(0, 10_000))
def test_checksum_agrees_with_scapy(payload: bytes, v6: bool, flip: int) -> None:
    ip = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(src="192.0.2.1", dst="192.0.2.2")
    raw = bytes(ip / TCP(sport=1234, dport=80, seq=7, flags="PA") / payload)
    header = 40 if v6 else 20
    addrs = raw[8:40] if v6 else raw[12:20]
    segment = raw[header:]
    assert tcp_checksum_ok(addrs, segment)
    broken = bytearray(segment)
    position = flip % len(broken)
    broken[position] ^= 1 << (flip % 8)
    assert not tcp_checksum_ok(addrs, bytes(broken))


def test_strict_drops_every_bad_segment_and_says_so() -> None:
    dec = Decoder(checksum="strict")
    events = list(dec.feed(_frame(_segment("10.0.0.1", b"EVIL", bad=True))))
    assert [type(e) for e in events] == [Anomaly]
    assert events[0].kind == "tcp.bad_checksum" and "10.0.0.1" in events[0].detail
    assert dec.stats.checksum_bad_dropped == 1 and dec.stats.tcp_segments == 0
    [good] = dec.feed(_frame(_segment("10.0.0.1", b"GOOD")))
    assert isinstance(good, Segment) and good.payload == b"GOOD"


def test_off_keeps_bad_segments_without_looking() -> None:
    dec = Decoder(checksum="off")
    [seg] = dec.feed(_frame(_segment("10.0.0.1", b"EVIL", bad=True)))
    assert isinstance(seg, Segment)
    assert dec.stats.checksum_bad_dropped == dec.stats.checksum_bad_kept == 0


def test_auto_keeps_an_offloaded_senders_segments_and_reports_it_once() -> None:
    # A capture taken on the client's host: every segment it sent has a bad checksum.
    dec = Decoder()
    events = []
    for i in range(50):
        events += dec.feed(_frame(_segment("10.0.0.1", b"x" * 10, seq=1000 + 10 * i, bad=True)))
    segments = [e for e in events if isinstance(e, Segment)]
    notes = [e for e in events if isinstance(e, Anomaly)]
    assert len(segments) == 50
    assert [n.kind for n in notes] == ["capture.checksum_offload"]
    assert dec.offload_report() == ["10.0.0.1"]
    assert dec.stats.checksum_bad_kept == 50 and dec.stats.checksum_bad_dropped == 0


def test_auto_flags_insertion_from_a_sender_with_good_checksums() -> None:
    # A6: 10 % of a healthy sender's segments carry bad checksums (insertion?).  auto keeps
    # the data (hand-edited and partly offloaded captures look the same) but flags each.
    rng = random.Random(6)
    dec = Decoder()
    flagged = 0
    for i in range(200):
        bad = i >= 20 and rng.random() < 0.1
        events = list(dec.feed(_frame(_segment("10.0.0.2", b"y" * 8, seq=i * 8, bad=bad))))
        assert sum(isinstance(e, Segment) for e in events) == 1
        kinds = [e.kind for e in events if isinstance(e, Anomaly)]
        assert kinds == (["tcp.bad_checksum"] if bad else [])
        flagged += bad
    assert flagged > 5
    assert dec.stats.checksum_bad_kept == flagged and dec.stats.checksum_bad_dropped == 0
    assert dec.offload_report() == []


def test_policy_ratio_is_per_sender() -> None:
    policy = ChecksumPolicy()
    for _ in range(3):
        policy.good(b"\x0a\x00\x00\x01")
    assert policy.judge_bad(b"\x0a\x00\x00\x01") == "suspect"  # 1 bad vs 3 good
    assert policy.judge_bad(b"\x0a\x00\x00\x02") == "offload"  # never seen good
    assert policy.offloaded == [b"\x0a\x00\x00\x02"]
    assert ChecksumPolicy("strict").judge_bad(b"\x0a\x00\x00\x02") == "drop"


def test_an_offloaded_senders_verdict_settles_and_its_checksums_are_no_longer_checked(
) -> None:
    dec = Decoder()
    for i in range(SETTLE_AFTER):
        dec.feed(_frame(_segment("10.0.0.1", b"x" * 4, seq=4 * i, bad=True)))
    assert dec.stats.checksum_unverified == 0
    # Settled: even right checksums from it now go unchecked, and the data is kept.
    for i in range(10):
        [seg] = dec.feed(_frame(_segment("10.0.0.1", b"z" * 4, seq=900 + 4 * i, bad=i % 2 == 0)))
        assert isinstance(seg, Segment)
    assert dec.stats.checksum_unverified == 10
    assert dec.stats.checksum_bad_kept == SETTLE_AFTER
    assert dec.checksum_policy is not None and dec.checksum_policy.unverified(b"\x0a\0\0\x01")


def test_a_clean_senders_verdict_settles_so_a_flood_of_bad_checksums_stays_suspect() -> None:
    # Without settling, 8 bad segments per good one would tip a spoofed clean host into
    # "offloaded" and silence the alarm: after its first SETTLE_AFTER segments it cannot.
    dec = Decoder()
    for i in range(SETTLE_AFTER):
        dec.feed(_frame(_segment("10.0.0.2", b"y", seq=i)))
    flagged = 0
    for i in range(20 * SETTLE_AFTER):
        events = list(dec.feed(_frame(_segment("10.0.0.2", b"E", seq=10_000 + i, bad=True))))
        flagged += [e.kind for e in events if isinstance(e, Anomaly)] == ["tcp.bad_checksum"]
    assert flagged == 20 * SETTLE_AFTER
    assert dec.offload_report() == [] and dec.stats.checksum_unverified == 0


def test_before_settling_the_ratio_still_decides() -> None:
    policy = ChecksumPolicy()
    source = b"\x0a\x00\x00\x03"
    policy.good(source)
    assert policy.judge_bad(source) == "suspect"  # 1 bad vs 1 good
    for _ in range(6):
        policy.judge_bad(source)
    assert policy.judge_bad(source) == "offload"  # 8 bad vs 1 good
    assert source not in policy.settled


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(DecodeError, match="checksum mode"):
        Decoder(checksum="sometimes")
