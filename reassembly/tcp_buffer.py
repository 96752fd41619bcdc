"""Out-of-order buffer of one TCP direction: sorted, non-overlapping pieces of stream."""

from __future__ import annotations

from bisect import bisect_right

# A piece is either bytes that were captured, or an int: the length of bytes the wire
# carried but the capture cut off (snaplen).  Known-lost bytes must become a gap in
# order, so they sit in the buffer like data until everything below them is delivered.
Piece = bytes | int

# (stream offset, bytes held before, bytes just received) of the first differing overlap.
Mismatch = tuple[int, bytes, bytes]


def piece_len(piece: Piece) -> int:
    """Stream bytes a piece covers."""
    return piece if type(piece) is int else len(piece)


def _cut(piece: Piece, lo: int, hi: int) -> Piece:
    """The part [lo, hi) of a piece, relative to its start."""
    return hi - lo if type(piece) is int else piece[lo:hi]


class SegmentBuffer:
    """Pieces of a stream above the next expected offset, kept sorted and disjoint.

    Disjointness is the point: every stream byte is held at most once, so the memory
    bound counts real bytes and an overlap is resolved once, on insertion.
    """

    __slots__ = ("nbytes", "pieces", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.pieces: list[Piece] = []
        self.nbytes = 0  # captured bytes held (known-lost lengths cost nothing)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def end(self) -> int:
        """Offset just past the highest piece (the buffer must not be empty)."""
        return self.starts[-1] + piece_len(self.pieces[-1])

    def insert(self, start: int, piece: Piece, replace: bool) -> tuple[int, int, Mismatch | None]:
        """Add a piece; return (bytes newly covered, bytes overlapped, first mismatch).

        ``replace`` False keeps the bytes already held (policy "first"); True lets the
        new bytes win (policy "last").  A known-lost piece never replaces anything and
        nothing is compared against it: its content is unknown.
        """
        starts = self.starts
        pieces = self.pieces
        is_data = type(piece) is not int
        length = len(piece) if is_data else piece
        end = start + length
        lo = bisect_right(starts, start)
        if lo and starts[lo - 1] + piece_len(pieces[lo - 1]) > start:
            lo -= 1
        hi = lo
        count = len(starts)
        while hi < count and starts[hi] < end:
            hi += 1
        if lo == hi:  # the common out-of-order case: lands in a hole
            starts.insert(lo, start)
            pieces.insert(lo, piece)
            if is_data:
                self.nbytes += length
            return length, 0, None

        mismatch: Mismatch | None = None
        overlapped = 0
        removed_bytes = 0
        for j in range(lo, hi):
            old_start = starts[j]
            old = pieces[j]
            old_is_data = type(old) is not int
            old_len = len(old) if old_is_data else old
            if old_is_data:
                removed_bytes += old_len
            a = max(old_start, start)
            b = min(old_start + old_len, end)
            overlapped += b - a
            if mismatch is None and is_data and old_is_data:
                before = old[a - old_start : b - old_start]
                after = piece[a - start : b - start]
                if before != after:
                    mismatch = (a, before, after)

        new_starts: list[int] = []
        new_pieces: list[Piece] = []
        if replace and is_data:
            first_start = starts[lo]
            if first_start < start:
                new_starts.append(first_start)
                new_pieces.append(_cut(pieces[lo], 0, start - first_start))
            new_starts.append(start)
            new_pieces.append(piece)
            last_start = starts[hi - 1]
            last = pieces[hi - 1]
            last_end = last_start + piece_len(last)
            if last_end > end:
                new_starts.append(end)
                new_pieces.append(_cut(last, end - last_start, last_end - last_start))
            added = length - overlapped
        else:
            cursor = start
            added = 0
            for j in range(lo, hi):
                old_start = starts[j]
                if cursor < old_start:
                    new_starts.append(cursor)
                    new_pieces.append(_cut(piece, cursor - start, old_start - start))
                    added += old_start - cursor
                new_starts.append(old_start)
                new_pieces.append(pieces[j])
                cursor = max(cursor, old_start + piece_len(pieces[j]))
            if cursor < end:
                new_starts.append(cursor)
                new_pieces.append(_cut(piece, cursor - start, length))
                added += end - cursor
        starts[lo:hi] = new_starts
        pieces[lo:hi] = new_pieces
        self.nbytes += sum(len(p) for p in new_pieces if type(p) is not int) - removed_bytes
        return added, overlapped, mismatch

    def take(self, next_off: int, target: int) -> tuple[list[int], list[Piece]]:
        """Remove and return the pieces reachable from ``next_off``.

        A piece is reachable when it is contiguous with what precedes it, or when it
        starts at or below ``target`` (the caller declares the holes below it lost).
        """
        starts = self.starts
        pieces = self.pieces
        pos = next_off
        limit = max(next_off, target)
        i = 0
        count = len(starts)
        while i < count:
            start = starts[i]
            if start > pos and start > limit:
                break
            pos = start + piece_len(pieces[i])
            i += 1
        taken_starts = starts[:i]
        taken_pieces = pieces[:i]
        del starts[:i]
        del pieces[:i]
        self.nbytes -= sum(len(p) for p in taken_pieces if type(p) is not int)
        return taken_starts, taken_pieces

    def truncate(self, limit: int) -> int:
        """Drop everything at or above ``limit``; return the captured bytes dropped."""
        starts = self.starts
        pieces = self.pieces
        dropped = 0
        while starts and starts[-1] + piece_len(pieces[-1]) > limit:
            start = starts[-1]
            piece = pieces[-1]
            is_data = type(piece) is not int
            if start >= limit:
                starts.pop()
                pieces.pop()
                if is_data:
                    dropped += len(piece)
                continue
            pieces[-1] = _cut(piece, 0, limit - start)
            if is_data:
                dropped += start + len(piece) - limit
            break
        self.nbytes -= dropped
        return dropped
