"""FragmentReassembler on its own: ordering, overlaps, invalid sets and bounds."""

from __future__ import annotations

import itertools
import random

from mirrorscope.capture.defrag import MAX_PIECES_PER_SET, FragmentReassembler
from mirrorscope.model import Anomaly

DATA = bytes(range(256)) * 4  # 1024 distinct-ish bytes


def reassembler(**bounds: float) -> FragmentReassembler:
    settings = {"max_bytes": 1 << 20, "max_sets": 64, "timeout": 30.0}
    settings.update(bounds)
    return FragmentReassembler(**settings)  # type: ignore[arg-type]


def feed(
    defrag: FragmentReassembler, pieces: list[tuple[int, int]], key: object = "k"
) -> tuple[list[tuple[bytes, object]], list[Anomaly]]:
    """Add [start, end) slices of DATA; the slice ending at len(DATA) is the last one."""
    done: list[tuple[bytes, object]] = []
    anomalies: list[Anomaly] = []
    for start, end in pieces:
        result = defrag.add(
            key, start, end != len(DATA), DATA[start:end], 1.0, f"meta@{start}", anomalies
        )
        if result is not None:
            done.append(result)
    return done, anomalies


def test_random_orders_reassemble_exactly() -> None:
    rng = random.Random(6)
    cuts = [*range(0, len(DATA), 64), len(DATA)]
    pieces = list(itertools.pairwise(cuts))
    for _ in range(20):
        rng.shuffle(pieces)
        defrag = reassembler()
        done, anomalies = feed(defrag, pieces)
        assert done == [(DATA, "meta@0")]
        assert anomalies == []
        assert len(defrag) == 0 and defrag.held_bytes == 0


def test_a_fragment_spanning_several_holes_fills_only_the_holes() -> None:
    defrag = reassembler()
    pieces = [(0, 100), (200, 300), (400, 500), (50, 450), (500, len(DATA)), (100, 200)]
    done, anomalies = feed(defrag, pieces)
    assert done == [(DATA, "meta@0")]
    assert [a.kind for a in anomalies] == ["ip.frag_overlap"]
    assert "identical" in anomalies[0].detail
    assert defrag.overlaps == 1


def test_differing_overlap_keeps_the_first_bytes() -> None:
    defrag = reassembler()
    out: list[Anomaly] = []
    assert defrag.add("k", 0, True, b"A" * 16, 1.0, None, out) is None
    assert defrag.add("k", 8, True, b"B" * 16, 1.0, None, out) is None
    result = defrag.add("k", 24, False, b"C" * 8, 1.0, None, out)
    assert result == (b"A" * 16 + b"B" * 8 + b"C" * 8, None)
    assert [a.kind for a in out] == ["ip.frag_overlap"]
    assert "different" in out[0].detail and "8 bytes" in out[0].detail


def test_two_different_last_fragments_drop_the_set() -> None:
    defrag = reassembler()
    out: list[Anomaly] = []
    defrag.add("k", 8, False, b"x" * 8, 1.0, None, out)  # the datagram ends at 16
    defrag.add("k", 16, False, b"y" * 8, 1.0, None, out)  # no: at 24
    assert [a.kind for a in out] == ["ip.frag_inconsistent"]
    assert len(defrag) == 0 and defrag.dropped == 1 and defrag.held_bytes == 0


def test_data_beyond_the_last_fragment_drops_the_set() -> None:
    defrag = reassembler()
    out: list[Anomaly] = []
    defrag.add("k", 8, True, b"b" * 8, 1.0, None, out)
    defrag.add("k", 0, False, b"a" * 4, 1.0, None, out)  # "ends at 4", yet bytes 8-16 exist
    assert [a.kind for a in out] == ["ip.frag_inconsistent"]
    assert defrag.held_bytes == 0


def test_oversize_and_too_many_pieces() -> None:
    defrag = reassembler()
    out: list[Anomaly] = []
    assert defrag.add("k", 65528, False, b"z" * 16, 1.0, None, out) is None
    assert [a.kind for a in out] == ["ip.frag_oversize"]
    out.clear()
    for index in range(MAX_PIECES_PER_SET + 1):
        # One-byte pieces with holes between them (the decoder does not insist on
        # multiples of 8, so an attacker can send these).
        defrag.add("many", index * 2, True, b"p", 1.0, None, out)
    assert [a.kind for a in out] == ["ip.frag_too_many"]
    assert "many" not in defrag and defrag.held_bytes == 0


def test_lru_eviction_by_count_and_bytes() -> None:
    defrag = reassembler(max_sets=3, max_bytes=100)
    out: list[Anomaly] = []
    for key in "abc":
        defrag.add(key, 0, True, b"x" * 10, 1.0, None, out)
    defrag.add("a", 10, True, b"x" * 10, 1.0, None, out)  # "a" is now the most recent
    defrag.add("d", 0, True, b"x" * 10, 1.0, None, out)  # evicts "b"
    assert [a.kind for a in out] == ["ip.frag_evicted"]
    assert [key in defrag for key in "abcd"] == [True, False, True, True]
    defrag.add("d", 10, True, b"y" * 61, 1.0, None, out)  # 101 bytes held: evict "c"
    assert [key in defrag for key in "abcd"] == [True, False, False, True]
    assert defrag.held_bytes == 91
    assert defrag.evicted == 2


def test_timeout_counts_from_the_first_fragment() -> None:
    defrag = reassembler(timeout=10.0)
    out: list[Anomaly] = []
    defrag.add("k", 0, True, b"x" * 8, 100.0, None, out)
    defrag.add("k", 16, True, b"x" * 8, 109.0, None, out)  # activity does not extend it
    assert defrag.expire(109.5) == []
    (anomaly,) = defrag.expire(110.5)
    assert anomaly.kind == "ip.frag_timeout" and "16 of unknown" in anomaly.detail
    assert len(defrag) == 0 and defrag.timed_out == 1
