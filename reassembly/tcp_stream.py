"""Byte placement of one TCP direction: in-order delivery, overlaps, holes, ACKs, FIN.

A mixin of TcpReassembler: it owns everything that moves a HalfStream's next_off, while
the reassembler owns the flow table, connection lifecycle and anomaly emission.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from mirrorscope.model import (
    Anomaly,
    Direction,
    StreamData,
    StreamEvent,
    StreamGap,
)

from .tcp_buffer import Mismatch, SegmentBuffer
from .tcp_flow import (
    MASK,
    ONCE_DATA_AFTER_FIN,
    ONCE_FIN_CHANGED,
    ONCE_OOO_BOUND,
    ONCE_TTL,
    SIGN,
    SLACK,
    WRAP,
    Flow,
    HalfStream,
)
from .tcp_stats import TcpStats

Event = StreamEvent | Anomaly

_TTL_HOPS = 3  # TTL spread tolerated within one direction (routes can differ a little)


def _digest(data: bytes) -> str:
    """Short content hash for anomaly details (raw payload never leaves the stage)."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class StreamPlacement:
    """Places each direction's bytes; declares gaps; closes a direction at its FIN."""

    # Provided by TcpReassembler.
    stats: TcpStats
    max_ooo_bytes: int
    max_ooo_segments: int
    retain_acked_window: int
    _replace: bool

    if TYPE_CHECKING:

        def _anomaly(
            self, flow: Flow, kind: str, d: Direction, ts: float, detail: str,
            out: list[Event],
        ) -> None: ...

        def _once(
            self, flow: Flow, bit: int, kind: str, d: Direction, ts: float, detail: str,
            out: list[Event],
        ) -> None: ...

        def _establish(self, flow: Flow, out: list[Event]) -> None: ...

        def _close_half(
            self, flow: Flow, d: Direction, half: HalfStream, reason: str, ts: float,
            out: list[Event],
        ) -> None: ...

        def _maybe_finish(self, flow: Flow, ts: float, out: list[Event]) -> None: ...

    def _accept(
        self,
        flow: Flow,
        d: Direction,
        half: HalfStream,
        off: int,
        payload: bytes,
        missing: int,
        ts: float,
        out: list[Event],
    ) -> None:
        """Place the bytes [off, off + len(payload) + missing) of one direction."""
        stats = self.stats
        length = len(payload)
        end = off + length
        total_end = end + missing
        next_off = half.next_off
        if total_end > half.high:
            half.high = total_end
        fin = half.fin_off
        if half.closed or (fin is not None and total_end > fin):
            limit = next_off if half.closed else fin
            if total_end > limit:
                stats.data_after_fin += 1
                self._once(flow, ONCE_DATA_AFTER_FIN << d, "tcp.data_after_fin", d, ts,
                           f"offset={off} fin={limit}", out)
                if off >= limit:
                    return
                if end > limit:
                    payload = payload[: limit - off]
                    length = limit - off
                    end = limit
                missing = limit - end
                total_end = limit
        if off < next_off:
            if total_end <= next_off:
                if length <= 1:
                    # Keep-alive (garbage byte at next-1) or a re-sent zero-window
                    # probe: never compared, never delivered twice.
                    stats.keepalives += 1
                    return
                self._check_old(flow, d, half, off, payload, ts, out)
                return
            if end > next_off:
                self._check_old(flow, d, half, off, payload, ts, out)
                payload = payload[next_off - off :]
            else:
                if length > 1:
                    self._check_old(flow, d, half, off, payload, ts, out)
                missing = total_end - next_off
                payload = b""
            off = next_off
        buf = half.buf
        if payload:
            if off == next_off and (buf is None or not buf.starts):
                self._deliver(flow, d, half, payload, ts, out)
            else:
                if buf is None:
                    half.buf = buf = SegmentBuffer()
                added, overlapped, mismatch = buf.insert(off, payload, self._replace)
                if overlapped:
                    if mismatch is not None:
                        self._mismatch(flow, d, half, mismatch, "buffered", ts, out)
                    elif added:
                        stats.overlaps += 1
                    else:
                        stats.duplicates += 1
                    self._check_ttl(flow, d, half, ts, out)
        if missing:
            start = off + len(payload)
            if start == half.next_off and (buf is None or not buf.starts):
                self._gap(flow, d, half, missing, ts, out)
            else:
                if buf is None:
                    half.buf = buf = SegmentBuffer()
                buf.insert(start, missing, False)
        if buf is not None and buf.starts:
            if buf.starts[0] <= half.next_off:
                self._advance(flow, d, half, half.next_off, ts, out)
            if buf.starts and half.acked > half.next_off:
                # Bytes beyond a hole the peer already ACKed: the hole was lost by
                # the capture and will never fill.
                self._skip_acked_holes(flow, d, half, ts, out)
            if buf.starts and (
                buf.nbytes > self.max_ooo_bytes or len(buf.starts) > self.max_ooo_segments
            ):
                self._skip_over_bound(flow, d, half, buf, ts, out)
        self._check_fin(flow, d, half, ts, out)

    def _check_old(
        self, flow: Flow, d: Direction, half: HalfStream, off: int, data: bytes, ts: float,
        out: list[Event],
    ) -> None:
        """Compare a retransmission with the delivered bytes still kept (first wins)."""
        stats = self.stats
        next_off = half.next_off
        end = off + len(data)
        kept = half.kept
        compared = False
        if kept:
            kept_start = next_off - len(kept)
            a = max(off, kept_start)
            b = min(end, next_off)
            if a < b:
                compared = True
                before = bytes(kept[a - kept_start : b - kept_start])
                after = data[a - off : b - off]
                if before != after:
                    self._mismatch(flow, d, half, (a, before, after), "delivered", ts, out)
                    return
        if not compared:
            stats.old_data_unchecked += 1
        if end <= next_off:
            stats.duplicates += 1
        else:
            stats.overlaps += 1
        self._check_ttl(flow, d, half, ts, out)

    def _mismatch(
        self,
        flow: Flow,
        d: Direction,
        half: HalfStream,
        mismatch: Mismatch,
        where: str,
        ts: float,
        out: list[Event],
    ) -> None:
        offset, before, after = mismatch
        self.stats.overlap_mismatch += 1
        winner = "second" if self._replace and where == "buffered" else "first"
        self._anomaly(
            flow, "tcp.overlap_mismatch", d, ts,
            f"offset={offset} length={len(before)} first={_digest(before)} "
            f"second={_digest(after)} where={where} kept={winner}",
            out,
        )
        self._check_ttl(flow, d, half, ts, out)

    def _check_ttl(
        self, flow: Flow, d: Direction, half: HalfStream, ts: float, out: list[Event]
    ) -> None:
        """Overlapping data with TTLs far apart: a likely insertion attempt."""
        if half.ttl_max - half.ttl_min > _TTL_HOPS and not flow.reported & (ONCE_TTL << d):
            self.stats.ttl_inconsistent += 1
            self._once(flow, ONCE_TTL << d, "tcp.ttl_inconsistent", d, ts,
                       f"ttl_min={half.ttl_min} ttl_max={half.ttl_max}", out)

    def _skip_acked_holes(
        self, flow: Flow, d: Direction, half: HalfStream, ts: float, out: list[Event]
    ) -> None:
        """Declare lost the holes below both the peer's ACK and data seen above them."""
        seen_end = half.next_off
        if half.buf is not None and half.buf.starts:
            seen_end = half.buf.end
        if half.fin_off is not None and half.fin_off > seen_end:
            seen_end = half.fin_off
        # Bytes above the last thing seen may still be in flight (the mirror reorders
        # directions), so they are not declared lost yet.
        target = min(half.acked, seen_end)
        if target > half.next_off:
            self.stats.acks_above_gap += 1
            self._advance(flow, d, half, target, ts, out)

    def _skip_over_bound(
        self, flow: Flow, d: Direction, half: HalfStream, buf: SegmentBuffer, ts: float,
        out: list[Event],
    ) -> None:
        """The out-of-order buffer is full: give up on holes until half of it is free."""
        stats = self.stats
        stats.ooo_bound_hits += 1
        self._once(flow, ONCE_OOO_BOUND << d, "tcp.ooo_bound", d, ts,
                   f"bytes={buf.nbytes} segments={len(buf.starts)}", out)
        # Draining to half the bound (not just under it) keeps a flow that keeps
        # sending above a hole from paying a skip on every packet.
        low_bytes = self.max_ooo_bytes // 2
        low_segments = self.max_ooo_segments // 2
        while buf.starts and (buf.nbytes > low_bytes or len(buf.starts) > low_segments):
            self._advance(flow, d, half, buf.starts[0], ts, out)

    def _advance(
        self, flow: Flow, d: Direction, half: HalfStream, target: int, ts: float,
        out: list[Event],
    ) -> None:
        """Deliver buffered pieces up to ``target`` and beyond while contiguous.

        Holes below ``target`` become gaps; contiguous runs are coalesced into one
        StreamData.
        """
        buf = half.buf
        if buf is not None and buf.starts:
            starts, pieces = buf.take(half.next_off, target)
            pending: list[bytes] = []
            pos = half.next_off
            for start, piece in zip(starts, pieces, strict=True):
                if start > pos or type(piece) is int:
                    if pending:
                        self._deliver(flow, d, half, b"".join(pending), ts, out)
                        pending = []
                    if start > pos:
                        self._gap(flow, d, half, start - pos, ts, out)
                        pos = start
                if type(piece) is int:
                    self._gap(flow, d, half, piece, ts, out)
                    pos += piece
                else:
                    pending.append(piece)
                    pos += len(piece)
            if pending:
                self._deliver(flow, d, half, b"".join(pending), ts, out)
        if target > half.next_off:
            self._gap(flow, d, half, target - half.next_off, ts, out)

    def _deliver(
        self, flow: Flow, d: Direction, half: HalfStream, data: bytes, ts: float,
        out: list[Event],
    ) -> None:
        out.append(StreamData(flow.conn_id, d, ts, data))
        size = len(data)
        half.next_off += size
        half.delivered += size
        self.stats.bytes_delivered += size
        retain = self.retain_acked_window
        if retain:
            kept = half.kept
            if kept is None:
                half.kept = kept = bytearray()
            kept += data
            excess = len(kept) - retain
            if excess > 0:
                del kept[:excess]

    def _gap(
        self, flow: Flow, d: Direction, half: HalfStream, length: int, ts: float,
        out: list[Event],
    ) -> None:
        if not flow.announced:
            # Only ACK/FIN arithmetic revealed these bytes (no payload was seen yet):
            # the connection carried data, so it is real and must be reported.
            self._establish(flow, out)
        out.append(StreamGap(flow.conn_id, d, ts, length))
        half.next_off += length
        half.missed += length
        self.stats.gaps += 1
        self.stats.gap_bytes += length
        if half.kept:
            half.kept.clear()  # kept must stay contiguous with next_off

    def _on_ack(
        self, flow: Flow, d: Direction, half: HalfStream, ack: int, ts: float, out: list[Event]
    ) -> None:
        """The peer acknowledges ``half`` (direction ``d``) up to ``ack``."""
        self.stats.acks += 1
        delta = ((ack & MASK) - half.base - half.next_off) & MASK
        if delta & SIGN:
            delta -= WRAP
        ack_off = half.next_off + delta
        if ack_off <= half.acked or ack_off > half.high + SLACK:
            return  # old, duplicate, or not believable
        half.acked = ack_off
        kept = half.kept
        if kept:
            release = min(ack_off, half.next_off) - (half.next_off - len(kept))
            if release > 0:
                del kept[:release]
        if half.closed or ack_off <= half.next_off:
            return
        if (half.buf is not None and half.buf.starts) or half.fin_off is not None:
            self._skip_acked_holes(flow, d, half, ts, out)
            self._check_fin(flow, d, half, ts, out)

    def _on_fin(
        self, flow: Flow, d: Direction, half: HalfStream, fin_off: int, ts: float,
        out: list[Event],
    ) -> None:
        """This side sends no byte at or beyond ``fin_off``."""
        if half.base is None:
            # Nothing was ever seen from this side, so nothing can be pending.
            self._close_half(flow, d, half, "fin", ts, out)
            self._maybe_finish(flow, ts, out)
            return
        if fin_off > half.high + SLACK:
            # Far beyond anything this side sent: believing it would let one forged
            # FIN (plus an ACK) declare megabytes lost.
            self._once(flow, ONCE_FIN_CHANGED << d, "tcp.fin_out_of_window", d, ts,
                       f"fin={fin_off} high={half.high}", out)
            return
        if half.fin_off is None:
            if fin_off < half.next_off:
                # Bytes beyond the FIN were already delivered: it cannot move back.
                self._once(flow, ONCE_FIN_CHANGED << d, "tcp.fin_below_data", d, ts,
                           f"fin={fin_off} delivered={half.next_off}", out)
                fin_off = half.next_off
            half.fin_off = fin_off
            if half.buf is not None and half.buf.starts and half.buf.end > fin_off:
                self.stats.data_after_fin += 1
                self._once(flow, ONCE_DATA_AFTER_FIN << d, "tcp.data_after_fin", d, ts,
                           f"fin={fin_off} buffered_end={half.buf.end}", out)
                half.buf.truncate(fin_off)
        elif fin_off != half.fin_off:
            self._once(flow, ONCE_FIN_CHANGED << d, "tcp.fin_changed", d, ts,
                       f"fin={fin_off} first={half.fin_off}", out)
        if half.acked > half.next_off:
            self._skip_acked_holes(flow, d, half, ts, out)
        self._check_fin(flow, d, half, ts, out)

    def _check_fin(
        self, flow: Flow, d: Direction, half: HalfStream, ts: float, out: list[Event]
    ) -> None:
        """Close this direction once every byte below its FIN is accounted for."""
        if half.fin_off is not None and not half.closed and half.next_off >= half.fin_off:
            self._close_half(flow, d, half, "fin", ts, out)
            self._maybe_finish(flow, ts, out)
