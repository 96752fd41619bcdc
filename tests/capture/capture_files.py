"""Hand-written builders of pcap and pcapng bytes for the capture tests.

They follow the file format specifications directly (not our reader), and
test_capture_pcapfile.py checks them against scapy's readers, so the tests do not
derive their expectations from the code under test.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

PCAP_US = 0xA1B2C3D4
PCAP_NS = 0xA1B23C4D


def pcap_bytes(
    records: Iterable[tuple[int, int, bytes, int]],
    *,
    linktype: int = 1,
    order: str = "<",
    magic: int = PCAP_US,
    snaplen: int = 65535,
) -> bytes:
    """A classic pcap file; records are (seconds, fraction, data, wire_len)."""
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wire_len in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wire_len))
        out.append(data)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    """One pcapng block: type, total length, body (padded), total length."""
    body = _pad4(body)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    """One pcapng option, padded to 32 bits."""
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def end_of_options(order: str = "<") -> bytes:
    return struct.pack(order + "HH", 0, 0)


def shb(order: str = "<") -> bytes:
    """Section Header Block, version 1.0, unknown section length."""
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return block(0x0A0D0D0A, body, order)


def idb(linktype: int, *, snaplen: int = 0, options: bytes = b"", order: str = "<") -> bytes:
    """Interface Description Block."""
    body = struct.pack(order + "HHI", linktype, 0, snaplen)
    if options:
        body += options + end_of_options(order)
    return block(1, body, order)


def epb(
    iface: int, ticks: int, data: bytes, *, wire_len: int | None = None, order: str = "<"
) -> bytes:
    """Enhanced Packet Block with a 64-bit timestamp in the interface's units."""
    wire = len(data) if wire_len is None else wire_len
    body = struct.pack(
        order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire
    ) + _pad4(data)
    return block(6, body, order)


def spb(data: bytes, *, wire_len: int | None = None, order: str = "<") -> bytes:
    """Simple Packet Block (interface 0, no timestamp)."""
    wire = len(data) if wire_len is None else wire_len
    return block(3, struct.pack(order + "I", wire) + _pad4(data), order)


def obsolete_pb(iface: int, ticks: int, data: bytes, order: str = "<") -> bytes:
    """The obsolete Packet Block (type 2)."""
    body = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    ) + _pad4(data)
    return block(2, body, order)
