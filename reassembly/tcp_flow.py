"""Per-connection and per-direction state records of the TCP reassembler."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mirrorscope.model import Direction, Endpoint, FlowKey, Segment

from .tcp_buffer import SegmentBuffer

# 32-bit sequence arithmetic.
MASK = 0xFFFFFFFF
SIGN = 0x80000000
WRAP = 0x100000000
# How far beyond anything seen an RST or ACK may point and still be believed.  Loose on
# purpose: a mirror misses window scaling and packets, so the true window is unknown.
SLACK = 16 << 20

# Flow.reported bits for once-per-flow anomalies; per-direction ones are shifted by the
# direction (0 or 1).
ONCE_SKEW = 1 << 0
ONCE_DATA_AFTER_RST = 1 << 1
ONCE_URGENT = 1 << 2
ONCE_ISN_CHANGED = 1 << 3
ONCE_TTL = 1 << 4
ONCE_DATA_AFTER_FIN = 1 << 6
ONCE_SYN_DATA = 1 << 8
ONCE_FIN_CHANGED = 1 << 10
ONCE_OOO_BOUND = 1 << 12

# Flow.state values.
HALF_OPEN = 0  # SYN seen, no payload and no completed handshake: small, no buffers
ESTABLISHED = 1
LINGER = 2  # closed by FIN/RST: kept briefly to absorb late packets


def make_conn_id(client: Endpoint, server: Endpoint, first_ts: float) -> str:
    """Deterministic connection id: the same capture always yields the same ids."""
    text = f"{client[0]}|{client[1]}|{server[0]}|{server[1]}|{first_ts:.6f}"
    return "C" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(slots=True, eq=False)
class HalfStream:
    """One direction of a connection, in 64-bit offsets relative to its first byte."""

    base: int | None = None  # 32-bit sequence number of stream offset 0 (ISN + 1)
    syn_seq: int = -1  # sequence number of this side's SYN, -1 when none was seen
    next_off: int = 0  # every byte below was delivered or declared a gap
    high: int = 0  # highest offset seen on the wire (end of data, FIN excluded)
    acked: int = 0  # highest offset the peer acknowledged
    fin_off: int | None = None
    closed: bool = False
    close_reason: str = ""
    buf: SegmentBuffer | None = None  # allocated on the first out-of-order segment
    # Delivered bytes the peer has not ACKed yet: the slice [next_off - len(kept),
    # next_off).  Retransmissions of them are compared to catch inconsistent rewrites.
    kept: bytearray | None = None
    delivered: int = 0
    missed: int = 0
    ttl_min: int = 256
    ttl_max: int = 0


@dataclass(slots=True, eq=False)
class Flow:
    """A bidirectional TCP connection; halves[Direction] are its two byte streams."""

    serial: int  # creation order; the LRU tables' key (cheaper to hash than a FlowKey)
    ckey: FlowKey  # client -> server
    skey: FlowKey  # server -> client
    first_ts: float
    partial: bool
    state: int
    halves: tuple[HalfStream, HalfStream]
    last_ts: float  # reassembler clock at the last segment (monotonic)
    max_ts: float  # newest segment timestamp of this flow (for clock-skew checks)
    conn_id: str = ""  # computed when the connection is first announced
    announced: bool = False  # ConnectionOpened emitted
    rst: bool = False
    closed_ts: float = 0.0
    packets: int = 0
    anomalies: int = 0
    reported: int = 0  # bit set of once-per-flow anomalies already raised
    # After an RST: (direction, segment) that followed it, replayed if the peer ACKs
    # them (the RST was ignored, RELIABILITY A10), dropped when the linger ends.
    held: list[tuple[Direction, Segment]] | None = None
    held_bytes: int = 0


def offset_of(half: HalfStream, seq: int) -> int:
    """64-bit stream offset of a 32-bit sequence number: the one nearest next_off.

    ``half.base`` must be known.
    """
    delta = ((seq & MASK) - half.base - half.next_off) & MASK  # type: ignore[operator]
    if delta & SIGN:
        delta -= WRAP
    return half.next_off + delta
