"""One replay worker's share of a capture: the flows of its shard, decode -> TCP -> HTTP.

Every worker reads the whole file and keeps the frames of its shard.  The other design,
one reader dispatching each worker its frames, was measured against it in instructions
(bench/bench_dispatch.py, 20 000 packets of the lab capture, 2 workers): the workers
here spent 3.64 G in all; the reader spent 0.37 G and its workers at least 3.24 G, 0.99x
as much before it even sends them the foreign frames' times and checksum verdicts that
keep the clock and checksum policy exact, and in a process the workers would wait on.
So each worker reads.

A worker's output is tagged with the key at which a single-process Analyzer would have
emitted it, so the parent can merge the streams back into exactly that order:

- ``(i, 0)``: what frame ``i`` produced (only its owner produces anything);
- ``(i, 1)``: IP fragment timeouts of the expiry sweep run after frame ``i`` (worker 0);
- ``(i, 2 | 3 | 4, rank)``: one connection closed by that sweep (half-open timeout,
  idle timeout, memory cap), ``rank`` being the frame index of the connection's last
  move in the reassembler's recency table: the single process closes them in that order;
- ``(END, ...)``: the same for the end-of-input flush.

What makes a worker's state equal to the single process's, frame by frame:

- frames of the decoder's fast path (untagged Ethernet, IPv4 without options or
  fragmentation, TCP) are sharded by the unordered address/port pair, read straight
  from the frame bytes; a foreign one only updates the shared checksum policy (which
  judges senders across flows) and the TCP clock;
- every other frame (VLAN, IPv6, fragments, tunnels, non-IP, damaged) is decoded by
  every worker with a second decoder, so fragment reassembly and tunnels need no
  special case; the worker owning the resulting TCP flow keeps the output (worker 0
  when there is none) and worker 0's copy of that decoder's counters is the one reported;
- the expiry schedule, the reassembler's clock and the end-of-input time follow every
  frame's timestamp, not just the shard's.

Where a sharded run may legitimately differ from one process: the reassembler's global
bounds (max_flows, max_half_open, max_buffered_bytes) are split evenly between the
workers (pipeline.shared_limits: together they hold what one process would), but the
flows are not split exactly evenly, so under memory pressure or a SYN flood evictions
differ; so does the checksum policy's source table after 65536 senders.  Normal
captures give identical output (tests/test_replay_workers.py).
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from mirrorscope.capture.checksum import tcp_checksum_ok
from mirrorscope.capture.decode import Decoder
from mirrorscope.model import Anomaly, ConnectionClosed, RawFrame, Segment
from mirrorscope.pipeline import EXPIRE_EVERY_SECONDS, Analyzer, _counters, shared_limits
from mirrorscope.reassembly.tcp import TcpReassembler

END = 1 << 62  # frame index of the end-of-input flush (after every real frame)
PHASE_FRAME = 0
PHASE_FRAGMENTS = 1
PHASE_HALF_OPEN = 2
PHASE_IDLE = 3
PHASE_MEMORY = 4
_LINKTYPE_ETHERNET = 1
# Ethertype, version/IHL, total length, flags/fragment offset, protocol, addresses,
# ports and the TCP data offset of an untagged IPv4 frame: one unpack per frame.
_FAST = struct.Struct("!12xHBxH2xHxB2xIIHH8xB")
_MIX = 0x9E3779B1  # Knuth's multiplicative hash constant

_NOT_MINE: tuple[object, ...] = ("not mine",)  # a frame another worker owns

Key = tuple[int, ...]
Group = tuple[Key, list[object]]


def shard_of(src: int, dst: int, sport: int, dport: int, shards: int) -> int:
    """The shard of a flow: the same for both directions (the unordered pair)."""
    mixed = src ^ dst ^ ((sport ^ dport) * _MIX)
    return ((mixed * _MIX) >> 16 & 0xFFFF) % shards


def segment_shard(seg: Segment, shards: int) -> int:
    """The shard of a decoded segment, equal to the fast path's for the same flow."""
    key = seg.key
    family = socket.AF_INET6 if ":" in key.src else socket.AF_INET
    src = int.from_bytes(socket.inet_pton(family, key.src), "big")
    dst = int.from_bytes(socket.inet_pton(family, key.dst), "big")
    return shard_of(src, dst, key.sport, key.dport, shards)


class RankedTable(OrderedDict):
    """A reassembler recency table that remembers when each flow last moved to its end.

    ``rank`` is the global frame index of that move; a closed flow's (table, rank) is kept
    in ``closed`` by connection id until the caller clears it.
    """

    def __init__(self, tag: int, position: list[int], closed: dict[str, tuple[int, int]]
                 ) -> None:
        super().__init__()
        self.tag = tag
        self.position = position  # [current global frame index], shared with the worker
        self.closed = closed
        self.ranks: dict[Any, int] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        OrderedDict.__setitem__(self, key, value)
        self.ranks[key] = self.position[0]

    def move_to_end(self, key: Any, last: bool = True) -> None:
        """Move as OrderedDict does, and remember the frame that moved it."""
        OrderedDict.move_to_end(self, key, last)
        self.ranks[key] = self.position[0]

    def __delitem__(self, key: Any) -> None:
        flow = OrderedDict.__getitem__(self, key)
        OrderedDict.__delitem__(self, key)
        self._removed(key, flow)

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove as OrderedDict does, and remember the removed flow's rank."""
        if key not in self:
            return OrderedDict.pop(self, key, *default)
        flow = OrderedDict.pop(self, key)
        self._removed(key, flow)
        return flow

    def _removed(self, key: Any, flow: Any) -> None:
        rank = self.ranks.pop(key, 0)
        conn_id = getattr(flow, "conn_id", "")
        if conn_id:
            self.closed[conn_id] = (self.tag, rank)


class ShardAnalyzer(Analyzer):
    """An Analyzer that sees every frame of a capture but analyses only its shard."""

    def __init__(self, index: int, shards: int, *, until: str = "http",
                 body_keep: int = 64 << 10, checksum: str = "auto") -> None:
        """index: this worker's shard (0-based) of ``shards``."""
        super().__init__(until, body_keep=body_keep, checksum=checksum, share=shards)
        if self.tcp is None:
            raise ValueError("a sharded replay needs the tcp stage")
        self.index = index
        self.shards = shards
        self.checksum = checksum
        # Frames off the fast path go through this decoder in every worker; it shares
        # the checksum policy, which every worker keeps equal to the single process's.
        self.slow = Decoder(checksum=checksum, checksum_policy=self.decoder.checksum_policy)
        self.position = [0]
        self.closed: dict[str, tuple[int, int]] = {}
        phases = {"half_open": PHASE_HALF_OPEN, "established": PHASE_IDLE}
        self.tcp = TcpReassembler(**shared_limits(shards), recency_table=lambda name: RankedTable(
            phases[name], self.position, self.closed))
        self.tcp_clock = float("-inf")  # newest segment time of all shards
        self.ts_first: float | None = None

    def run(self, frames: Iterator[RawFrame], emit: Callable[[int, list[Group]], None],
            every: int = 2048) -> None:
        """Analyse the shard's frames; call ``emit(done_through, groups)`` every ``every``."""
        index, shards = self.index, self.shards
        policy = self.decoder.checksum_policy
        auto = policy is not None and policy.mode == "auto"
        strict = policy is not None and policy.mode == "strict"
        settled = policy.settled if policy is not None else {}
        fast_feed = self.decoder.feed
        slow_feed = self.slow.feed
        unpack = _FAST.unpack_from
        stats = self.stats
        position = self.position
        groups: list[Group] = []
        out: list[object] = []
        idx = -1
        next_expire: float | None = None
        last_ts = self._last_ts
        countdown = every
        for frame in frames:
            idx += 1
            ts = frame.ts
            if ts > last_ts:
                last_ts = ts
            data = frame.data
            items: Any = None
            if (frame.linktype == _LINKTYPE_ETHERNET and len(data) >= 54
                    and data[12] == 8 and data[13] == 0 and data[14] == 0x45):
                (_etype, _vihl, total, frag, proto, src, dst, sport, dport,
                 offset) = unpack(data)
                ip_end = 14 + total
                # Exactly the decoder's fast-path test: such a frame decodes to one
                # segment (or a checksum verdict) without touching any other state.
                if (proto == 6 and not frag & 0x3FFF and total >= 40 and ip_end <= len(data)
                        and 54 <= 34 + ((offset >> 4) << 2) <= ip_end):
                    mixed = src ^ dst ^ ((sport ^ dport) * _MIX)
                    if ((mixed * _MIX) >> 16 & 0xFFFF) % shards == index:
                        items = fast_feed(frame)
                    else:
                        # Foreign: keep the sender's checksum record and the clock exact.
                        items = _NOT_MINE
                        kept = True
                        if auto:
                            source = data[26:30]
                            if source in settled:
                                pass  # the verdict is fixed: the frame cannot change it
                            elif tcp_checksum_ok(data[26:34], data[34:ip_end]):
                                policy.good(source)
                            else:
                                policy.judge_bad(source)
                        elif strict:
                            kept = tcp_checksum_ok(data[26:34], data[34:ip_end])
                        if kept and ts > self.tcp_clock:
                            self.tcp_clock = ts
            if items is None:
                items = self._slow(slow_feed(frame))
            if items is not _NOT_MINE:
                stats.packets += 1
                stats.bytes += len(data)
                if items:
                    position[0] = idx
                    self._own(items, out)
                    if out:
                        groups.append(((idx, PHASE_FRAME), out))
                        out = []
            if next_expire is None:
                next_expire = ts + EXPIRE_EVERY_SECONDS
                self.ts_first = ts
            elif ts >= next_expire:
                next_expire = ts + EXPIRE_EVERY_SECONDS
                self._sweep(idx, ts, groups)
            countdown -= 1
            if not countdown:
                countdown = every
                self._last_ts = last_ts
                emit(idx, groups)
                groups = []
        self._last_ts = last_ts
        self._finish(groups)
        emit(END, groups)

    # ------------------------------------------------------------------ internals

    def _slow(self, items: Any) -> Any:
        """A frame every worker decoded: its items if this worker owns it, else _NOT_MINE."""
        owner = 0
        for item in items:
            if type(item) is Segment:
                if item.ts > self.tcp_clock:
                    self.tcp_clock = item.ts
                owner = segment_shard(item, self.shards)
                break
        return items if owner == self.index else _NOT_MINE

    def _own(self, items: Any, out: list[object]) -> None:
        """Decoded items of an owned frame through TCP and HTTP (as Analyzer.feed does)."""
        tcp = self.tcp
        assert tcp is not None
        for item in items:
            if type(item) is Anomaly:
                self._anomaly(item, out)
                continue
            self.stats.segments += 1
            tcp.advance_clock(self.tcp_clock)
            self._stream_events(tcp.feed(item), out)
            if tcp.clock > self.tcp_clock:
                self.tcp_clock = tcp.clock
        if len(self.closed) > 4096:
            self.closed.clear()  # only the closes of one sweep are looked up

    def _sweep(self, idx: int, now: float, groups: list[Group]) -> None:
        """The expiry sweep the single process runs after frame ``idx``."""
        fragments = self.slow.expire(now)
        if fragments and self.index == 0:
            out: list[object] = []
            for item in fragments:
                self._anomaly(item, out)
            groups.append(((idx, PHASE_FRAGMENTS), out))
        tcp = self.tcp
        assert tcp is not None
        tcp.advance_clock(self.tcp_clock)
        self.closed.clear()
        self._closing(idx, tcp.expire(now), groups)

    def _finish(self, groups: list[Group]) -> None:
        """End of input: the single process's Analyzer.finish, split by connection."""
        now = self._last_ts
        fragments = self.slow.expire(now + 1e9)
        if fragments and self.index == 0:
            out: list[object] = []
            for item in fragments:
                self._anomaly(item, out)
            groups.append(((END, PHASE_FRAGMENTS), out))
        tcp = self.tcp
        assert tcp is not None
        self.closed.clear()
        self._closing(END, tcp.flush(now), groups)
        self.stats.tcp = _counters(tcp.stats)
        if self.http is not None:
            self.stats.http = _counters(self.http.stats)

    def _closing(self, idx: int, events: list[Any], groups: list[Group]) -> None:
        """Events of closed connections, one group per connection, keyed by its rank."""
        start = 0
        for pos, event in enumerate(events):
            if type(event) is not ConnectionClosed:
                continue
            tag, rank = self.closed.get(event.conn_id, (PHASE_IDLE, 0))
            phase = PHASE_MEMORY if event.reason == "evicted" and idx != END else tag
            out: list[object] = []
            self._stream_events(events[start:pos + 1], out)
            if out:
                groups.append(((idx, phase, rank), out))
            start = pos + 1
        if start < len(events):  # not expected: every announced flow ends with a close
            out = []
            self._stream_events(events[start:], out)
            if out:
                groups.append(((idx, PHASE_MEMORY + 1, 0), out))

    def decode_stats(self) -> tuple[dict[str, object], dict[str, object]]:
        """(own fast-path decoder counters, every-frame decoder counters)."""
        return _counters(self.decoder.stats), _counters(self.slow.stats)


