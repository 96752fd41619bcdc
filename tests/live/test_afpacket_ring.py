"""Walking a TPACKET_V3 block, with blocks crafted by hand in anonymous shared memory."""

from __future__ import annotations

import mmap
import select
import struct

import pytest

from mirrorscope.capture.afpacket import (
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    RingSource,
)

BLOCK = 4096
ETHERNET_FRAME = bytes(range(60))  # dst, src, ethertype bytes 12-13 = 0x0c0d, payload


def _ring(blocks: int) -> RingSource:
    ring = object.__new__(RingSource)
    ring.linktype = 1
    ring._block_size = BLOCK
    ring._block_count = blocks
    ring._mm = mmap.mmap(-1, BLOCK * blocks)
    ring._index = 0
    ring._poll = select.poll()
    ring.blocks_read = 0
    return ring


def _block(mm: mmap.mmap, index: int, seq: int, packets: list[tuple[int, int, bytes, int]],
           status: int = TP_STATUS_USER) -> None:
    """Lay out a block: tpacket_block_desc, then tpacket3_hdr + frame per packet."""
    base = index * BLOCK
    first = 48
    struct.pack_into("=IIIIIIQ", mm, base, 3, 0, status, len(packets), first, 0, seq)
    position = base + first
    for number, (pkt_status, wire_len, data, vlan) in enumerate(packets):
        mac = 68  # frame bytes start 68 bytes after the packet header
        step = 0 if number == len(packets) - 1 else 160
        struct.pack_into("=IIIIIIHH", mm, position, step, 1700000000 + number, 500_000_000,
                         len(data), wire_len, pkt_status, mac, mac + 14)
        struct.pack_into("=IIH", mm, position + 28, 0, vlan, 0x88A8)
        mm[position + mac : position + mac + len(data)] = data
        position += step


def test_block_frames_timestamps_and_lengths() -> None:
    """Every packet of the block, with its time (sec + nsec) and its wire length."""
    ring = _ring(2)
    _block(ring._mm, 0, seq=1, packets=[(0, 60, ETHERNET_FRAME, 0), (0, 1514, ETHERNET_FRAME, 0)])
    frames = ring.read(0)
    assert [f.data for f in frames] == [ETHERNET_FRAME, ETHERNET_FRAME]
    assert [f.wire_len for f in frames] == [60, 1514]  # snaplen cut: wire is longer
    assert frames[0].ts == pytest.approx(1700000000.5)
    assert frames[1].ts == pytest.approx(1700000001.5)
    assert all(f.linktype == 1 for f in frames)
    status = struct.unpack_from("=I", ring._mm, 8)[0]
    assert status == TP_STATUS_KERNEL  # the block went back to the kernel
    assert ring._index == 1 and ring.blocks_read == 1


def test_stripped_vlan_tag_is_put_back() -> None:
    """A tag the NIC moved to metadata reappears after the MAC addresses (TPID as given)."""
    ring = _ring(2)
    status = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID
    _block(ring._mm, 0, seq=1, packets=[(status, 60, ETHERNET_FRAME, 0x2064)])
    (frame,) = ring.read(0)
    assert frame.data == ETHERNET_FRAME[:12] + b"\x88\xa8\x20\x64" + ETHERNET_FRAME[12:]
    assert frame.wire_len == 64


def test_vlan_without_tpid_defaults_to_8021q() -> None:
    """Old kernels give no TPID: 0x8100 is assumed."""
    ring = _ring(2)
    _block(ring._mm, 0, seq=1, packets=[(TP_STATUS_VLAN_VALID, 60, ETHERNET_FRAME, 7)])
    (frame,) = ring.read(0)
    assert frame.data[12:16] == b"\x81\x00\x00\x07"


def test_nothing_ready_returns_an_empty_batch() -> None:
    """A kernel-owned block is not read."""
    ring = _ring(2)
    _block(ring._mm, 0, seq=1, packets=[(0, 60, ETHERNET_FRAME, 0)], status=TP_STATUS_KERNEL)
    assert ring.read(0) == []
    assert ring._index == 0


def test_a_restarted_reader_follows_the_oldest_handed_over_block() -> None:
    """Blocks 2 and 3 are ours (seq 8, 9), block 0 is the kernel's: resume at block 2."""
    ring = _ring(4)
    _block(ring._mm, 2, seq=8, packets=[(0, 60, b"A" * 60, 0)])
    _block(ring._mm, 3, seq=9, packets=[(0, 60, b"B" * 60, 0)])
    assert [f.data[:1] for f in ring.read(0)] == [b"A"]
    assert [f.data[:1] for f in ring.read(0)] == [b"B"]
    assert ring.read(0) == []
