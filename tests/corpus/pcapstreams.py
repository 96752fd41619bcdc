"""Read a capture's TCP payload straight from the pcap, independently of mirrorscope.

The Zeek-artefact checks in zeeklog.py look at the bytes on the wire to confirm the
condition they claim; reading them here with dpkt (not through our own reassembly) keeps
those checks from inheriting a bug of the code under test.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dpkt

_LINK_ETHERNET = 1
_LINK_NULL = (0, 108)
_LINK_RAW = (12, 14, 101)
_LINK_SLL = 113


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment with payload."""

    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    payload: bytes


def _ip_of(link: int, frame: bytes) -> object | None:
    if link == _LINK_ETHERNET:
        return dpkt.ethernet.Ethernet(frame).data
    if link in _LINK_NULL:
        return dpkt.loopback.Loopback(frame).data
    if link in _LINK_RAW:
        return dpkt.ip.IP(frame) if frame[:1] and frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
    if link == _LINK_SLL:
        return dpkt.sll.SLL(frame).data
    return None


def _addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


@lru_cache(maxsize=16)
def segments(pcap: Path) -> tuple[Segment, ...]:
    """Every TCP segment that carries payload, in capture order."""
    out = []
    with open(pcap, "rb") as handle:
        try:
            reader = dpkt.pcap.Reader(handle)
        except ValueError:
            handle.seek(0)
            reader = dpkt.pcapng.Reader(handle)
        link = reader.datalink()
        for ts, frame in reader:
            try:
                ip = _ip_of(link, frame)
            except (dpkt.UnpackError, IndexError, ValueError):
                continue
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            out.append(Segment(float(ts), (_addr(ip.src), tcp.sport), (_addr(ip.dst), tcp.dport),
                               tcp.seq, bytes(tcp.data)))
    return tuple(out)


def stream(pcap: Path, src: tuple[str, int], dst: tuple[str, int]) -> list[tuple[float, bytes]]:
    """One direction's payload in sequence order, retransmissions dropped: (ts, bytes) pieces."""
    pieces: dict[int, Segment] = {}
    for seg in segments(pcap):
        if seg.src == src and seg.dst == dst:
            pieces.setdefault(seg.seq, seg)
    if not pieces:
        return []
    base = min(pieces)
    out = []
    expected = 0
    for seq in sorted(pieces, key=lambda s: (s - base) % (1 << 32)):
        seg = pieces[seq]
        offset = (seq - base) % (1 << 32)
        if offset + len(seg.payload) <= expected:
            continue
        data = seg.payload[max(0, expected - offset):]
        out.append((seg.ts, data))
        expected = max(expected, offset) + len(data)
    return out


def stream_bytes(pcap: Path, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """One direction's payload as one byte string."""
    return b"".join(data for _, data in stream(pcap, src, dst))
