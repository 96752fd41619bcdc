"""Unit tests of the out-of-order SegmentBuffer (sorted, disjoint pieces)."""

from __future__ import annotations

from mirrorscope.reassembly.tcp_buffer import SegmentBuffer


def _contents(buf: SegmentBuffer) -> list[tuple[int, bytes | int]]:
    return list(zip(buf.starts, buf.pieces, strict=True))


def test_insert_into_holes_keeps_order_and_counts_bytes() -> None:
    buf = SegmentBuffer()
    assert buf.insert(30, b"ccc", False) == (3, 0, None)
    assert buf.insert(10, b"aaa", False) == (3, 0, None)
    assert buf.insert(20, b"bb", False) == (2, 0, None)
    assert _contents(buf) == [(10, b"aaa"), (20, b"bb"), (30, b"ccc")]
    assert buf.nbytes == 8
    assert buf.end == 33


def test_first_policy_fills_only_holes_and_reports_mismatch() -> None:
    buf = SegmentBuffer()
    buf.insert(10, b"0123456789", False)  # [10, 20)
    buf.insert(30, b"ABCDEFGHIJ", False)  # [30, 40)
    # [15, 35): overlaps the tail of the first and the head of the second.
    new = b"56789" + b"xxxxxxxxxx" + b"ABCDE"
    added, overlapped, mismatch = buf.insert(15, new, False)
    assert (added, overlapped, mismatch) == (10, 10, None)
    assert _contents(buf) == [(10, b"0123456789"), (20, b"xxxxxxxxxx"), (30, b"ABCDEFGHIJ")]
    assert buf.nbytes == 30


def test_first_policy_mismatch_keeps_old_bytes() -> None:
    buf = SegmentBuffer()
    buf.insert(100, b"GOOD", False)
    added, overlapped, mismatch = buf.insert(100, b"EVIL", False)
    assert (added, overlapped) == (0, 4)
    assert mismatch == (100, b"GOOD", b"EVIL")
    assert _contents(buf) == [(100, b"GOOD")]


def test_last_policy_replaces_and_trims_neighbours() -> None:
    buf = SegmentBuffer()
    buf.insert(10, b"0123456789", False)
    buf.insert(30, b"ABCDEFGHIJ", False)
    new = b"zzzzzzzzzzzzzzzzzzzz"  # [15, 35)
    added, overlapped, mismatch = buf.insert(15, new, True)
    assert (added, overlapped) == (10, 10)
    assert mismatch == (15, b"56789", b"zzzzz")
    assert _contents(buf) == [(10, b"01234"), (15, new), (35, b"FGHIJ")]
    assert buf.nbytes == 30


def test_known_lost_piece_fills_holes_only_and_costs_no_bytes() -> None:
    buf = SegmentBuffer()
    buf.insert(10, b"abc", False)
    assert buf.insert(5, 20, True) == (17, 3, None)  # [5,25) around [10,13)
    assert _contents(buf) == [(5, 5), (10, b"abc"), (13, 12)]
    assert buf.nbytes == 3


def test_take_contiguous_only_without_target() -> None:
    buf = SegmentBuffer()
    for start, data in ((0, b"ab"), (2, b"cd"), (10, b"xy")):
        buf.insert(start, data, False)
    starts, pieces = buf.take(0, 0)
    assert (starts, pieces) == ([0, 2], [b"ab", b"cd"])
    assert _contents(buf) == [(10, b"xy")]
    assert buf.nbytes == 2


def test_take_up_to_target_crosses_holes_then_continues_contiguous() -> None:
    buf = SegmentBuffer()
    for start, data in ((5, b"aa"), (10, b"bb"), (12, b"cc"), (20, b"dd")):
        buf.insert(start, data, False)
    starts, _ = buf.take(0, 10)  # holes [0,5) and [7,10) are below the target
    assert starts == [5, 10, 12]
    assert _contents(buf) == [(20, b"dd")]


def test_truncate_cuts_pieces_at_limit() -> None:
    buf = SegmentBuffer()
    buf.insert(0, b"abcdef", False)
    buf.insert(10, b"ghij", False)
    assert buf.truncate(3) == 7
    assert _contents(buf) == [(0, b"abc")]
    assert buf.nbytes == 3
