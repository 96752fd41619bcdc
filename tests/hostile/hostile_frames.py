"""Hand-packed Ethernet/IPv4/TCP frames for the full-pipeline hostile tests.

struct instead of scapy: some cases need thousands of frames, and scapy builds about
2,000 packets a second.  Checksums are computed the way a real stack does, so a test can
corrupt them deliberately.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from mirrorscope.model import ACK, FIN, PSH, SYN, Anomaly, HttpTransaction, RawFrame
from mirrorscope.pipeline import Analyzer

LINKTYPE_ETHERNET = 1
_ETH = bytes.fromhex("020000000002" "020000000001" "0800")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"", *, ttl: int = 64, window: int = 65535,
              options: bytes = b"", bad_checksum: bool = False) -> bytes:
    """One Ethernet frame carrying an IPv4/TCP segment."""
    options += b"\x00" * (-len(options) % 4)
    tcp_len = 20 + len(options)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (tcp_len // 4) << 4, flags, window, 0, 0) + options + payload
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    csum = _checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    if bad_checksum:
        csum ^= 0x5A5A
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, ttl, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return _ETH + ip + tcp


@dataclass
class Conversation:
    """Both directions of one TCP connection; appends frames with increasing timestamps."""

    client: tuple[str, int] = ("10.0.0.1", 40000)
    server: tuple[str, int] = ("10.0.0.2", 80)
    isn_client: int = 1000
    isn_server: int = 5000
    ts: float = 1_700_000_000.0
    step: float = 0.0001
    frames: list[RawFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seq = [self.isn_client, self.isn_server]

    def _emit(self, side: int, flags: int, payload: bytes = b"", **kw: object) -> None:
        src, dst = (self.client, self.server) if side == 0 else (self.server, self.client)
        data = tcp_frame(src[0], src[1], dst[0], dst[1], self.seq[side], self.seq[1 - side],
                         flags, payload, **kw)  # type: ignore[arg-type]
        self.frames.append(RawFrame(self.ts, LINKTYPE_ETHERNET, data, len(data)))
        self.ts += self.step

    def handshake(self) -> Conversation:
        """SYN, SYN/ACK, ACK."""
        self._emit(0, SYN)
        self.seq[0] += 1
        self._emit(1, SYN | ACK)
        self.seq[1] += 1
        self._emit(0, ACK)
        return self

    def send(self, side: int, data: bytes, mss: int = 1400, **kw: object) -> Conversation:
        """``data`` from the client (0) or server (1) in segments of at most ``mss`` bytes."""
        for i in range(0, len(data), mss):
            piece = data[i : i + mss]
            self._emit(side, ACK | PSH, piece, **kw)
            self.seq[side] += len(piece)
        return self

    def close(self) -> Conversation:
        """FIN from both sides, each ACKed."""
        for side in (0, 1):
            self._emit(side, FIN | ACK)
            self.seq[side] += 1
        self._emit(0, ACK)
        return self


def run(frames: list[RawFrame], **kw: object) -> tuple[list[HttpTransaction], list[object]]:
    """Push frames through decode -> TCP -> HTTP; (transactions, everything else)."""
    analyzer = Analyzer("http", **kw)  # type: ignore[arg-type]
    out: list[object] = []
    for frame in frames:
        analyzer.feed(frame, out)
    analyzer.finish(out)
    txs = [item for item in out if isinstance(item, HttpTransaction)]
    return txs, [item for item in out if not isinstance(item, HttpTransaction)]


def anomaly_kinds(items: list[object]) -> set[str]:
    """Kinds of the Anomaly records among ``items``."""
    return {item.kind for item in items if isinstance(item, Anomaly)}
