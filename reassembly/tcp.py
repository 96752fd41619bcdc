"""TCP reassembly: decoded segments in, ordered per-direction byte streams out (sans-I/O).

Policy (DESIGN.md "Reassembly policy", RELIABILITY.md §1 and §2.3):
- flows are bidirectional; offsets are 64-bit and relative to each side's first byte,
  so sequence wraparound never shows;
- overlapping bytes keep the first copy (or the last, by option) and differing copies
  raise ``tcp.overlap_mismatch``;
- a hole becomes a ``StreamGap`` when the peer ACKs beyond it (the capture lost it),
  when the out-of-order buffer hits its bound, or when the connection ends;
- every table and buffer is bounded; time is packet time only.

Anomaly kinds raised (all carry conn_id and direction; at most 64 per connection):
tcp.overlap_mismatch, tcp.ttl_inconsistent, tcp.rst_injection (security signals);
tcp.rst_out_of_window, tcp.rst_with_data, tcp.data_after_rst, tcp.data_after_fin,
tcp.fin_below_data, tcp.fin_changed, tcp.fin_out_of_window, tcp.syn_with_data,
tcp.syn_inside_connection, tcp.isn_changed, tcp.ooo_bound, tcp.clock_skew, tcp.urgent.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable

from mirrorscope.model import (
    ACK,
    FIN,
    RST,
    SYN,
    URG,
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    FlowKey,
    Segment,
    StreamClosed,
    StreamEvent,
)

from .tcp_flow import (
    ESTABLISHED,
    HALF_OPEN,
    LINGER,
    MASK,
    ONCE_DATA_AFTER_RST,
    ONCE_ISN_CHANGED,
    ONCE_SKEW,
    ONCE_SYN_DATA,
    ONCE_URGENT,
    SIGN,
    SLACK,
    WRAP,
    Flow,
    HalfStream,
    make_conn_id,
    offset_of,
)
from .tcp_stats import TcpStats
from .tcp_stream import StreamPlacement

__all__ = ["TcpError", "TcpReassembler", "TcpStats"]

Event = StreamEvent | Anomaly

ORIG = Direction.ORIG
RESP = Direction.RESP
_OTHER = (RESP, ORIG)  # indexed by a Direction: cheaper than Direction.other() per ACK

_CLOCK_SKEW = 1.0  # seconds a segment may be older than its flow's newest one
_MAX_ANOMALIES_PER_FLOW = 64  # beyond this, anomalies of a flow are only counted
_POLICIES = ("first", "last")
# Global bounds of one reassembler (a process sharing the flows with others divides them).
DEFAULT_MAX_FLOWS = 500_000
DEFAULT_MAX_HALF_OPEN = 100_000
DEFAULT_MAX_BUFFERED_BYTES = 512 << 20
# Segments kept after an RST until the peer shows (by ACKing them) that it ignored it.
_HELD_SEGMENTS = 64
_HELD_BYTES = 256 << 10


_CAP_CHECK_SLOW = 16384  # most packets between global-cap checks (far below the cap)
_CAP_CHECK_FAST = 256  # fewest (at the cap)
_TYPICAL_SEGMENT = 1460  # bytes a data segment may add (GRO/jumbo captures add more)

class TcpError(ValueError):
    """The reassembler was configured or called wrongly (never raised for bad traffic)."""


def _is_new_isn(half: HalfStream, seq: int) -> bool:
    """A SYN from this side that cannot belong to the connection already tracked."""
    if half.base is None:
        return False  # e.g. the SYN/ACK was captured first: this SYN completes it
    if half.syn_seq >= 0:
        return half.syn_seq != seq
    return half.base != (seq + 1) & MASK  # picked up mid-stream: a late SYN may match


_REQUEST_START = re.compile(
    rb"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|PROPPATCH|MKCOL"
    rb"|COPY|MOVE|LOCK|UNLOCK|SEARCH|REPORT) [\x21-\x7e]"
)


def _http_role(payload: bytes) -> bool | None:
    """True if the payload opens like an HTTP request, False like a response, else None.

    Used once per mid-stream pickup, to name the client better than a port guess.
    """
    if payload.startswith(b"HTTP/1."):
        return False
    if _REQUEST_START.match(payload):
        return True
    return None


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


class TcpReassembler(StreamPlacement):
    """Turns decoded TCP segments into connection and stream events."""

    def __init__(
        self,
        *,
        max_ooo_bytes: int = 4 << 20,
        max_ooo_segments: int = 3072,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_half_open: int = DEFAULT_MAX_HALF_OPEN,
        idle_timeout: float = 300.0,
        half_open_timeout: float = 30.0,
        closed_linger: float = 5.0,
        retain_acked_window: int = 64 << 10,
        overlap_policy: str = "first",
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        recency_table: Callable[[str], OrderedDict[int, Flow]] | None = None,
    ) -> None:
        """recency_table: builds the "half_open" and "established" recency tables (an
        OrderedDict subclass that observes moves, for a caller that must order closes
        across reassemblers, as the sharded replay does); plain OrderedDicts by default."""
        if overlap_policy not in _POLICIES:
            raise TcpError(f"overlap_policy must be one of {_POLICIES}, not {overlap_policy!r}")
        for name, value in (
            ("max_ooo_bytes", max_ooo_bytes),
            ("max_ooo_segments", max_ooo_segments),
            ("max_flows", max_flows),
            ("max_half_open", max_half_open),
            ("max_buffered_bytes", max_buffered_bytes),
        ):
            if value < 1:
                raise TcpError(f"{name} must be >= 1, not {value}")
        if retain_acked_window < 0:
            raise TcpError(f"retain_acked_window must be >= 0, not {retain_acked_window}")
        for name, seconds in (
            ("idle_timeout", idle_timeout),
            ("half_open_timeout", half_open_timeout),
            ("closed_linger", closed_linger),
        ):
            if not seconds >= 0:
                raise TcpError(f"{name} must be >= 0, not {seconds}")
        self.max_ooo_bytes = max_ooo_bytes
        # Global cap over every flow's buffers, enforced at each expire() (once a second of
        # packet time in the pipeline) and every few thousand packets in between: the
        # per-flow bound times the flow count can be GBs.
        self.max_buffered_bytes = max_buffered_bytes
        self.max_ooo_segments = max_ooo_segments
        self.max_flows = max_flows
        self.max_half_open = min(max_half_open, max_flows)
        self.idle_timeout = idle_timeout
        self.half_open_timeout = half_open_timeout
        self.closed_linger = closed_linger
        self.retain_acked_window = retain_acked_window
        self.overlap_policy = overlap_policy
        self._replace = overlap_policy == "last"
        self._held_bytes = min(_HELD_BYTES, max_ooo_bytes)
        self.stats = TcpStats()
        # Both wire orientations of a flow map to (flow, direction of that orientation).
        self._index: dict[FlowKey, tuple[Flow, Direction]] = {}
        # Recency order per state, keyed by Flow.serial: oldest first, O(1) eviction.
        make = recency_table or (lambda _name: OrderedDict())
        self._half_open: OrderedDict[int, Flow] = make("half_open")
        self._established: OrderedDict[int, Flow] = make("established")
        self._lingering: OrderedDict[int, Flow] = OrderedDict()
        self._serial = 0
        self._clock = float("-inf")  # newest packet time seen (never goes backwards)
        # Packets until the global cap is checked again between expire() calls: a burst
        # of packet time shorter than the expire interval must not overshoot the cap.
        self._cap_countdown = min(_CAP_CHECK_SLOW,
                                  max(_CAP_CHECK_FAST, max_buffered_bytes // _TYPICAL_SEGMENT))

    # ------------------------------------------------------------------ public API

    @property
    def clock(self) -> float:
        """The newest packet time seen (it never goes backwards)."""
        return self._clock

    def advance_clock(self, ts: float) -> None:
        """Move the clock to ``ts`` if later: packets another reassembler saw (sharding)."""
        if ts > self._clock:
            self._clock = ts

    @property
    def active_flows(self) -> int:
        """Flows currently tracked (half-open and established, not lingering)."""
        return len(self._half_open) + len(self._established)

    @property
    def half_open_flows(self) -> int:
        """Flows still in the handshake."""
        return len(self._half_open)

    @property
    def lingering_flows(self) -> int:
        """Closed flows kept briefly to absorb late packets."""
        return len(self._lingering)

    @property
    def buffered_bytes(self) -> int:
        """Out-of-order and retained bytes held by all flows (O(flows): not per packet)."""
        return sum(_held_bytes(flow) for table in (self._half_open, self._established)
                   for flow in table.values())

    def feed(self, seg: Segment) -> list[Event]:
        """Process one segment; return the events it completes, in order."""
        out: list[Event] = []
        self.stats.packets += 1
        if seg.ts > self._clock:
            self._clock = seg.ts
        self._cap_countdown -= 1
        if not self._cap_countdown:
            self._check_memory_cap(out)
        entry = self._index.get(seg.key)
        flags = seg.flags
        if entry is None:
            if not (flags & SYN or seg.payload or seg.missing):
                # A bare ACK/FIN/RST is usually the tail of a connection we no longer
                # track; starting a flow from it would invent a phantom connection.
                self.stats.no_flow += 1
                return out
            entry = self._create(seg, out)
        elif entry[0].state == LINGER:
            entry = self._on_linger(entry[0], entry[1], seg, out)
            if entry is None:
                return out
        elif flags & (SYN | ACK) == SYN and _is_new_isn(entry[0].halves[entry[1]], seg.seq):
            entry = self._on_new_syn(entry[0], entry[1], seg, out)
            if entry is None:
                return out
        self._process(entry[0], entry[1], seg, out)
        return out

    def expire(self, now: float) -> list[Event]:
        """Close flows idle for longer than their timeout at packet time ``now``."""
        out: list[Event] = []
        for table, timeout in (
            (self._half_open, self.half_open_timeout),
            (self._established, self.idle_timeout),
        ):
            # Tables are in recency order and last_ts is monotonic, so the scan stops
            # at the first flow still alive.
            while table:
                flow = next(iter(table.values()))
                if flow.last_ts + timeout > now:
                    break
                self._close_flow(flow, "timeout", now, out)
        lingering = self._lingering
        while lingering:
            flow = next(iter(lingering.values()))
            if flow.closed_ts + self.closed_linger > now:
                break
            self._forget(flow)
        self._enforce_memory_cap(now, out)
        return out

    def _check_memory_cap(self, out: list[Event]) -> None:
        """The periodic check between expire() calls; the next one comes before the room
        left under the cap can fill with full-sized segments."""
        held = self._enforce_memory_cap(self._clock, out)
        room_in_segments = (self.max_buffered_bytes - held) // _TYPICAL_SEGMENT
        self._cap_countdown = min(_CAP_CHECK_SLOW, max(_CAP_CHECK_FAST, room_in_segments))

    def _enforce_memory_cap(self, now: float, out: list[Event]) -> int:
        """Over the global cap: evict flows that hold buffers, least recently active first.

        Eviction closes a flow the way a timeout does: buffered bytes are delivered and the
        holes become gaps, so nothing is invented and the loss is counted.  It stops at 90 %
        of the cap so the next packets do not trip it again at once.
        """
        total = self._established_buffered_bytes()
        if total <= self.max_buffered_bytes:
            return total
        target = self.max_buffered_bytes * 9 // 10
        for flow in list(self._established.values()):
            if total <= target:
                break
            held = _held_bytes(flow)
            if held == 0:
                continue
            self._evict(flow, "memory", now, out)
            total -= held
        return total

    def _established_buffered_bytes(self) -> int:
        """Bytes held by established flows (half-open flows hold no stream buffers)."""
        return sum(_held_bytes(flow) for flow in self._established.values())

    def flush(self, now: float) -> list[Event]:
        """End of input: close every flow with reason "end" and forget everything."""
        out: list[Event] = []
        for table in (self._half_open, self._established):
            while table:
                self._close_flow(next(iter(table.values())), "end", now, out)
        while self._lingering:
            self._forget(next(iter(self._lingering.values())))
        return out

    # ------------------------------------------------------------- flow lifecycle

    def _create(self, seg: Segment, out: list[Event]) -> tuple[Flow, Direction]:
        """Start a flow for a segment that may open one; pick client and server."""
        stats = self.stats
        key = seg.key
        flags = seg.flags
        if flags & SYN:
            partial = False
            client_sent = not flags & ACK  # SYN: its sender; SYN+ACK: its receiver
            half_open = not (seg.payload or seg.missing)
        else:
            partial = True
            # Mid-stream: DESIGN.md's order is "speaks an HTTP request line first",
            # then the higher port (most likely the ephemeral one).
            speaker = _http_role(seg.payload)
            client_sent = key.sport >= key.dport if speaker is None else speaker
            half_open = False
            stats.midstream_pickups += 1
        self._make_room(half_open, seg.ts, out)
        rev = key.reversed()
        ckey, skey = (key, rev) if client_sent else (rev, key)
        self._serial += 1
        flow = Flow(
            serial=self._serial,
            ckey=ckey,
            skey=skey,
            first_ts=seg.ts,
            partial=partial,
            state=HALF_OPEN if half_open else ESTABLISHED,
            halves=(HalfStream(), HalfStream()),
            last_ts=self._clock,
            max_ts=seg.ts,
        )
        self._index[skey] = (flow, RESP)
        self._index[ckey] = (flow, ORIG)
        (self._half_open if half_open else self._established)[flow.serial] = flow
        stats.flows_created += 1
        if not half_open:
            self._announce(flow, out)
        return flow, ORIG if client_sent else RESP

    def _make_room(self, half_open: bool, ts: float, out: list[Event]) -> None:
        """Evict flows so one more fits: half-open ones first, then the least recent."""
        if half_open and len(self._half_open) >= self.max_half_open:
            self._evict(next(iter(self._half_open.values())), "max_half_open", ts, out)
        while len(self._half_open) + len(self._established) >= self.max_flows:
            table = self._half_open or self._established
            self._evict(next(iter(table.values())), "max_flows", ts, out)

    def _evict(self, flow: Flow, cause: str, ts: float, out: list[Event]) -> None:
        _bump(self.stats.flows_evicted, cause)
        self._close_flow(flow, "evicted", ts, out)

    def _announce(self, flow: Flow, out: list[Event]) -> None:
        """Emit ConnectionOpened once, before any other event of the connection."""
        if flow.announced:
            return
        flow.announced = True
        client = (flow.ckey.src, flow.ckey.sport)
        server = (flow.ckey.dst, flow.ckey.dport)
        flow.conn_id = make_conn_id(client, server, flow.first_ts)
        out.append(ConnectionOpened(flow.conn_id, flow.first_ts, client, server, flow.partial))
        for d in (ORIG, RESP):
            half = flow.halves[d]
            if half.closed:  # a bare FIN closed it before anything was reported
                out.append(StreamClosed(flow.conn_id, d, flow.last_ts, half.close_reason))

    def _establish(self, flow: Flow, out: list[Event]) -> None:
        if flow.state == HALF_OPEN:
            del self._half_open[flow.serial]
            self._established[flow.serial] = flow
            flow.state = ESTABLISHED
        self._announce(flow, out)

    def _on_linger(
        self, flow: Flow, d: Direction, seg: Segment, out: list[Event]
    ) -> tuple[Flow, Direction] | None:
        """A segment for a recently closed connection: absorb it, or start anew."""
        flags = seg.flags
        has_data = bool(seg.payload or seg.missing)
        if self._clock - flow.closed_ts > self.closed_linger:
            self._forget(flow)  # expire() was not called recently: linger is over
            if not (flags & SYN or has_data):
                self.stats.no_flow += 1
                return None
            return self._create(seg, out)
        half = flow.halves[d]
        if flags & (SYN | ACK) == SYN and (half.base is None or _is_new_isn(half, seg.seq)):
            # Busy clients reuse ports quickly: a new ISN is a new connection.
            self._forget(flow)
            self.stats.connections_reused += 1
            return self._create(seg, out)
        flow.packets += 1
        if flow.rst and not flags & (RST | SYN):
            if has_data:
                self.stats.data_after_rst += 1
                self._once(flow, ONCE_DATA_AFTER_RST, "tcp.data_after_rst", d, seg.ts,
                           f"bytes={len(seg.payload) + seg.missing}", out)
                self._hold(flow, d, seg)
            if flags & ACK and flow.held and self._rst_ignored(flow, d, seg):
                if not has_data:
                    self._hold(flow, d, seg)  # replay it too: its ACK is the proof
                self._resume_after_rst(flow, out)
            return None
        self.stats.late_segments += 1
        return None

    def _hold(self, flow: Flow, d: Direction, seg: Segment) -> None:
        """Keep (bounded) a segment sent after an RST, in case the RST was ignored."""
        size = len(seg.payload)
        if flow.held is None:
            flow.held = []
        if len(flow.held) < _HELD_SEGMENTS and flow.held_bytes + size <= self._held_bytes:
            flow.held.append((d, seg))
            flow.held_bytes += size

    def _rst_ignored(self, flow: Flow, d: Direction, seg: Segment) -> bool:
        """True when ``seg`` ACKs bytes the peer sent after the RST: the receiver took
        them, so the RST never reached it or was refused (forged, out of its window)."""
        peer = flow.halves[1 - d]
        if peer.base is None:
            return False
        ack_off = offset_of(peer, seg.ack)
        if not peer.next_off < ack_off <= peer.next_off + SLACK:
            return False
        return any(
            held_d != d and offset_of(peer, held.seq) < ack_off
            for held_d, held in flow.held or ()
        )

    def _resume_after_rst(self, flow: Flow, out: list[Event]) -> None:
        """The RST was not honoured: carry on with the held bytes as a new, partial
        connection at the same stream offsets (the closed one stays closed)."""
        held = flow.held or []
        old_conn_id = flow.conn_id
        self._forget(flow)
        first_ts = held[0][1].ts
        self._make_room(False, first_ts, out)
        halves = tuple(
            HalfStream(
                base=h.base, syn_seq=h.syn_seq, next_off=h.next_off, high=h.high,
                acked=h.acked, ttl_min=h.ttl_min, ttl_max=h.ttl_max,
            )
            for h in flow.halves
        )
        self._serial += 1
        resumed = Flow(
            serial=self._serial,
            ckey=flow.ckey,
            skey=flow.skey,
            first_ts=first_ts,
            partial=True,
            state=ESTABLISHED,
            halves=halves,  # type: ignore[arg-type]
            last_ts=self._clock,
            max_ts=max(s.ts for _, s in held),
        )
        self._index[flow.skey] = (resumed, RESP)
        self._index[flow.ckey] = (resumed, ORIG)
        self._established[resumed.serial] = resumed
        self.stats.flows_created += 1
        self.stats.rst_injection += 1
        self._announce(resumed, out)
        self._anomaly(resumed, "tcp.rst_injection", held[0][0], first_ts,
                      f"after={old_conn_id} held={len(held)}", out)
        for d, seg in held:
            if resumed.state == LINGER:  # closed again (FIN or another RST)
                break
            self._process(resumed, d, seg, out)

    def _on_new_syn(
        self, flow: Flow, d: Direction, seg: Segment, out: list[Event]
    ) -> tuple[Flow, Direction] | None:
        """A SYN with a new ISN on a live flow: a retry, a reused port, or an oddity."""
        if not flow.announced:
            # A retried or spoofed attempt: nothing was reported about the old one.
            self._close_flow(flow, "reused", seg.ts, out)
            return self._create(seg, out)
        if self._clock - flow.last_ts >= self.closed_linger:
            self.stats.connections_reused += 1
            self._close_flow(flow, "reused", seg.ts, out)
            return self._create(seg, out)
        self.stats.syn_inside_connection += 1
        flow.packets += 1
        self._anomaly(flow, "tcp.syn_inside_connection", d, seg.ts, f"seq={seg.seq}", out)
        return None

    def _close_flow(self, flow: Flow, reason: str, ts: float, out: list[Event]) -> None:
        """End both directions: deliver what is buffered, holes become gaps."""
        for d in (ORIG, RESP):
            half = flow.halves[d]
            if half.closed:
                continue
            if flow.announced and half.base is not None:
                target = half.next_off
                if half.buf is not None and half.buf.starts:
                    target = max(target, half.buf.end)
                if half.fin_off is not None:
                    target = max(target, half.fin_off)  # the buffer never passes the FIN
                # An ACK beyond everything seen is not turned into a trailing gap: one
                # bogus ACK would otherwise report megabytes as missed.
                if target > half.next_off:
                    self._advance(flow, d, half, target, ts, out)
            fin_reached = half.fin_off is not None and half.next_off >= half.fin_off
            self._close_half(flow, d, half, "fin" if fin_reached else reason, ts, out)
        self._finish(flow, reason, ts, out)

    def _close_half(
        self, flow: Flow, d: Direction, half: HalfStream, reason: str, ts: float, out: list[Event]
    ) -> None:
        half.closed = True
        half.close_reason = reason
        half.buf = None
        if flow.announced:
            out.append(StreamClosed(flow.conn_id, d, ts, reason))

    def _finish(self, flow: Flow, reason: str, ts: float, out: list[Event]) -> None:
        """Both directions are closed: report the connection and retire the flow."""
        orig, resp = flow.halves
        if flow.announced:
            out.append(
                ConnectionClosed(
                    flow.conn_id, ts, reason, orig.delivered, resp.delivered,
                    orig.missed, resp.missed, flow.packets,
                )
            )
        _bump(self.stats.flows_closed, reason)
        (self._half_open if flow.state == HALF_OPEN else self._established).pop(flow.serial, None)
        orig.buf = resp.buf = None
        orig.kept = resp.kept = None
        if reason not in ("fin", "rst") or not flow.announced:
            # Timed-out or evicted flows may still be alive: if they speak again they
            # must come back as a (partial) connection, not be swallowed by a linger.
            # Nor may a handshake that was never reported linger: an RST answering a
            # SYN followed by a fresh SYN/ACK and data is a known evasion (Suricata
            # bug 3286), and the connection that follows must be seen.
            self._unindex(flow)
            return
        flow.state = LINGER
        flow.closed_ts = self._clock
        self._lingering[flow.serial] = flow
        if len(self._lingering) > self.max_flows:
            self.stats.linger_dropped += 1
            self._forget(next(iter(self._lingering.values())))

    def _forget(self, flow: Flow) -> None:
        """Drop a lingering flow entirely."""
        self._lingering.pop(flow.serial, None)
        self._unindex(flow)

    def _unindex(self, flow: Flow) -> None:
        index = self._index
        for key in (flow.ckey, flow.skey):
            entry = index.get(key)
            if entry is not None and entry[0] is flow:
                del index[key]

    # ------------------------------------------------------------- segment path

    def _process(self, flow: Flow, d: Direction, seg: Segment, out: list[Event]) -> None:
        """Apply one segment to its flow (the per-packet hot path)."""
        stats = self.stats
        ts = seg.ts
        flow.packets += 1
        if ts > flow.max_ts:
            flow.max_ts = ts
        elif ts < flow.max_ts - _CLOCK_SKEW and not flow.reported & ONCE_SKEW:
            stats.clock_skew += 1
            self._once(flow, ONCE_SKEW, "tcp.clock_skew", d, ts,
                       f"behind={flow.max_ts - ts:.6f}", out)
        flow.last_ts = self._clock
        if flow.state == ESTABLISHED:
            self._established.move_to_end(flow.serial)
        else:
            self._half_open.move_to_end(flow.serial)
        half = flow.halves[d]
        peer = flow.halves[1 - d]
        ttl = seg.ttl
        if ttl:
            if ttl < half.ttl_min:
                half.ttl_min = ttl
            if ttl > half.ttl_max:
                half.ttl_max = ttl
        flags = seg.flags
        seq = seg.seq & MASK
        payload = seg.payload
        missing = seg.missing
        if flags & SYN:
            if half.base is None:
                half.base = (seq + 1) & MASK
                half.syn_seq = seq
            elif half.syn_seq != seq:
                if half.syn_seq < 0 and half.base == (seq + 1) & MASK:
                    half.syn_seq = seq  # a late SYN/ACK of a flow picked up by its data
                else:
                    self._once(flow, ONCE_ISN_CHANGED, "tcp.isn_changed", d, ts,
                               f"seq={seq} syn_seq={half.syn_seq}", out)
                    return
            seq = (seq + 1) & MASK
            if payload or missing:
                stats.syn_with_data += 1
                self._once(flow, ONCE_SYN_DATA << d, "tcp.syn_with_data", d, ts,
                           f"bytes={len(payload) + missing}", out)
        if flags & RST:
            self._on_rst(flow, d, half, peer, seg, out)
            return
        if flags & ACK and peer.base is not None:
            if flow.state == HALF_OPEN and d == ORIG and not flags & SYN and peer.syn_seq >= 0:
                self._establish(flow, out)  # third packet of the handshake
            self._on_ack(flow, _OTHER[d], peer, seg.ack, ts, out)
        end = 0
        if payload or missing:
            if flow.state == HALF_OPEN:
                self._establish(flow, out)
            if half.base is None:
                half.base = seq  # mid-stream: the first byte seen is offset 0
            # offset_of(), inlined: this is the per-packet path.
            delta = (seq - half.base - half.next_off) & MASK
            if delta & SIGN:
                delta -= WRAP
            off = half.next_off + delta
            end = off + len(payload) + missing
            if flags & URG:
                self._once(flow, ONCE_URGENT, "tcp.urgent", d, ts, "", out)
            self._accept(flow, d, half, off, payload, missing, ts, out)
        if flags & FIN and not half.closed:
            if half.base is not None and not (payload or missing):
                end = offset_of(half, seq)
            self._on_fin(flow, d, half, end, ts, out)

    def _maybe_finish(self, flow: Flow, ts: float, out: list[Event]) -> None:
        if flow.halves[0].closed and flow.halves[1].closed and flow.state != LINGER:
            self._finish(flow, "rst" if flow.rst else "fin", ts, out)

    def _on_rst(
        self, flow: Flow, d: Direction, half: HalfStream, peer: HalfStream, seg: Segment,
        out: list[Event],
    ) -> None:
        """An RST inside the (loose) window ends both directions."""
        ts = seg.ts
        if not self._rst_plausible(half, peer, seg):
            self.stats.rst_out_of_window += 1
            self._anomaly(flow, "tcp.rst_out_of_window", d, ts, f"seq={seg.seq}", out)
            return
        if seg.payload:
            # Diagnostic text some stacks put in RSTs; never stream data.
            self._anomaly(flow, "tcp.rst_with_data", d, ts, f"bytes={len(seg.payload)}", out)
        if seg.flags & ACK and peer.base is not None:
            self._on_ack(flow, _OTHER[d], peer, seg.ack, ts, out)
            if flow.state == LINGER:  # that ACK completed both FINs
                return
        flow.rst = True
        self._close_flow(flow, "rst", ts, out)

    @staticmethod
    def _rst_plausible(half: HalfStream, peer: HalfStream, seg: Segment) -> bool:
        """Loose window check: mirrors miss window scaling, so only far-off RSTs fail."""
        if half.base is not None:
            off = offset_of(half, seg.seq)
            return half.next_off - SLACK <= off <= half.high + SLACK
        if seg.flags & ACK and peer.base is not None:
            off = offset_of(peer, seg.ack)
            return peer.next_off - SLACK <= off <= peer.high + SLACK
        return True  # nothing known about either side: cannot judge

    # ------------------------------------------------------------------ anomalies

    def _anomaly(
        self, flow: Flow, kind: str, d: Direction, ts: float, detail: str, out: list[Event]
    ) -> None:
        self.stats.anomalies += 1
        if flow.anomalies >= _MAX_ANOMALIES_PER_FLOW:
            self.stats.anomalies_suppressed += 1
            return
        flow.anomalies += 1
        self._announce(flow, out)
        out.append(Anomaly(kind, ts, flow.conn_id, d, detail))

    def _once(
        self, flow: Flow, bit: int, kind: str, d: Direction, ts: float, detail: str,
        out: list[Event],
    ) -> None:
        """Raise an anomaly only the first time for this flow (and direction)."""
        if flow.reported & bit:
            return
        flow.reported |= bit
        self._anomaly(flow, kind, d, ts, detail, out)


def _held_bytes(flow: Flow) -> int:
    """Out-of-order and retained bytes one flow holds."""
    return sum((half.buf.nbytes if half.buf is not None else 0)
               + (len(half.kept) if half.kept is not None else 0) for half in flow.halves)
