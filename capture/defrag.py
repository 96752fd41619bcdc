"""Bounded IPv4/IPv6 fragment reassembly (sans-I/O; time comes from packet timestamps)."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Hashable

from mirrorscope.model import Anomaly

# No IP datagram (without IPv6 jumbograms) carries more than 65535 bytes after its header;
# a fragment beyond that is the "ping of death", not data.
MAX_DATAGRAM_PAYLOAD = 65535
# Fragments of 8 bytes cover a maximal datagram in 8192 pieces; more means an attack.
MAX_PIECES_PER_SET = 8192


class _FragmentSet:
    """The pieces of one datagram seen so far, kept sorted and non-overlapping."""

    __slots__ = ("covered", "first_ts", "meta", "pieces", "starts", "total")

    def __init__(self, first_ts: float) -> None:
        self.first_ts = first_ts
        self.starts: list[int] = []
        self.pieces: list[tuple[int, int, bytes]] = []
        self.total: int | None = None  # payload length, known once the last fragment is in
        self.covered = 0  # bytes held: pieces never overlap, so this is their sum
        self.meta: object = None  # the caller's data from the offset-0 fragment


class FragmentReassembler:
    """Reassemble fragments keyed by the caller; keep-first on overlap; LRU-bounded."""

    def __init__(self, *, max_bytes: int, max_sets: int, timeout: float) -> None:
        self.max_bytes = max_bytes
        self.max_sets = max_sets
        self.timeout = timeout
        self._sets: OrderedDict[Hashable, _FragmentSet] = OrderedDict()
        self.held_bytes = 0
        # Counters, read by the decoder's stats.
        self.fragments = 0
        self.reassembled = 0
        self.overlaps = 0
        self.duplicates = 0
        self.evicted = 0
        self.timed_out = 0
        self.dropped = 0  # sets dropped as invalid (oversize, inconsistent, too many pieces)

    def __len__(self) -> int:
        return len(self._sets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._sets

    def add(
        self,
        key: Hashable,
        offset: int,
        more: bool,
        data: bytes,
        ts: float,
        meta: object,
        out: list[Anomaly],
    ) -> tuple[bytes, object] | None:
        """Add one fragment; return (payload, meta of the first fragment) once complete.

        Anomalies (overlap, eviction, invalid sets) are appended to ``out``.
        """
        self.fragments += 1
        end = offset + len(data)
        if end > MAX_DATAGRAM_PAYLOAD:
            self._drop(key, out, ts, "ip.frag_oversize", f"fragment ends at byte {end}")
            return None
        fset = self._sets.get(key)
        if fset is None:
            if len(self._sets) >= self.max_sets:
                self._evict_oldest(out, ts, "too many fragment sets")
            fset = _FragmentSet(ts)
            self._sets[key] = fset
        else:
            self._sets.move_to_end(key)
        if fset.total is not None and end > fset.total:
            self._drop(key, out, ts, "ip.frag_inconsistent", "fragment beyond the last one")
            return None
        if not more:
            if fset.total is not None and fset.total != end:
                self._drop(key, out, ts, "ip.frag_inconsistent", "two different last fragments")
                return None
            if fset.pieces and fset.pieces[-1][1] > end:
                self._drop(key, out, ts, "ip.frag_inconsistent", "data beyond the last fragment")
                return None
            fset.total = end
        self.held_bytes += self._insert(fset, offset, end, data, out, ts)
        if len(fset.pieces) > MAX_PIECES_PER_SET:
            self._drop(key, out, ts, "ip.frag_too_many", f"{len(fset.pieces)} pieces")
            return None
        if offset == 0 and fset.meta is None:
            fset.meta = meta
        if self.held_bytes > self.max_bytes:
            self._enforce_byte_bound(out, ts)
            if key not in self._sets:
                return None
        if fset.total is not None and fset.covered == fset.total:
            del self._sets[key]
            self.held_bytes -= fset.covered
            self.reassembled += 1
            return b"".join(piece for _start, _end, piece in fset.pieces), fset.meta
        return None

    def _insert(
        self,
        fset: _FragmentSet,
        start: int,
        end: int,
        data: bytes,
        out: list[Anomaly],
        ts: float,
    ) -> int:
        """Insert the parts of [start, end) not yet held; return how many bytes were new."""
        pieces = fset.pieces
        if not pieces or start >= pieces[-1][1]:  # the common case: in order, no overlap
            if end > start:
                pieces.append((start, end, data))
                fset.starts.append(start)
                fset.covered += end - start
            return end - start
        gaps: list[tuple[int, int]] = []
        cursor = start
        overlapped = 0
        differ = False
        index = max(bisect_right(fset.starts, start) - 1, 0)
        while index < len(pieces) and cursor < end:
            p_start, p_end, p_data = pieces[index]
            index += 1
            if p_end <= cursor:
                continue
            if p_start >= end:
                break
            if p_start > cursor:
                gaps.append((cursor, p_start))
            lo, hi = max(p_start, cursor), min(p_end, end)
            overlapped += hi - lo
            if p_data[lo - p_start : hi - p_start] != data[lo - start : hi - start]:
                differ = True
            cursor = hi
        if cursor < end:
            gaps.append((cursor, end))
        added = 0
        for lo, hi in gaps:
            piece = (lo, hi, data[lo - start : hi - start])
            insort(pieces, piece)
            insort(fset.starts, lo)
            added += hi - lo
        fset.covered += added
        if overlapped:
            if not differ and not gaps and overlapped == end - start:
                # An identical copy (SPAN ports duplicate packets): not an anomaly.
                self.duplicates += 1
            else:
                self.overlaps += 1
                what = "different bytes" if differ else "identical bytes"
                out.append(
                    Anomaly(
                        "ip.frag_overlap",
                        ts,
                        detail=f"{overlapped} bytes at offset {start} overlap with {what};"
                        " first copy kept",
                    )
                )
        return added

    def _remove(self, key: Hashable) -> _FragmentSet:
        fset = self._sets.pop(key)
        self.held_bytes -= fset.covered
        return fset

    def _drop(self, key: Hashable, out: list[Anomaly], ts: float, kind: str, why: str) -> None:
        if key in self._sets:
            self._remove(key)
        self.dropped += 1
        out.append(Anomaly(kind, ts, detail=why))

    def _evict_oldest(self, out: list[Anomaly], ts: float, why: str) -> None:
        key = next(iter(self._sets))
        fset = self._remove(key)
        self.evicted += 1
        out.append(Anomaly("ip.frag_evicted", ts, detail=f"{why}: dropped {fset.covered} bytes"))

    def _enforce_byte_bound(self, out: list[Anomaly], ts: float) -> None:
        while self.held_bytes > self.max_bytes and self._sets:
            self._evict_oldest(out, ts, "fragment memory bound reached")

    def expire(self, now: float) -> list[Anomaly]:
        """Drop sets whose first fragment is older than the timeout."""
        if not self._sets:
            return []
        limit = now - self.timeout
        stale = [key for key, fset in self._sets.items() if fset.first_ts < limit]
        out: list[Anomaly] = []
        for key in stale:
            fset = self._remove(key)
            self.timed_out += 1
            have = fset.covered
            total = "unknown" if fset.total is None else str(fset.total)
            out.append(
                Anomaly(
                    "ip.frag_timeout",
                    now,
                    detail=f"incomplete after {self.timeout:g}s: {have} of {total} bytes",
                )
            )
        return out
