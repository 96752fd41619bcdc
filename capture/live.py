"""Open the capture sockets of a live interface: one per worker, joined in a fanout group.

With N workers, each socket joins the same PACKET_FANOUT group in hash mode: the kernel
hashes each frame's addresses and ports symmetrically (both directions of a flow give
the same hash) and IP fragments are reassembled before hashing, so a TCP connection is
always read by the same worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .afpacket import (
    KernelStats,
    LiveCaptureError,
    RingSource,
    SocketOptions,
    SocketSource,
    interface_linktype,
    open_source,
)
from .bpf import DEFAULT_SNAPLEN, BpfInsn, compile_filter

LiveSource = RingSource | SocketSource
MIN_BLOCK_SIZE = 256 << 10
BLOCK_OVERHEAD = 1024  # block descriptor + tpacket3_hdr + alignment, rounded up

__all__ = [
    "CaptureConfig",
    "KernelStats",
    "LiveCaptureError",
    "LiveSource",
    "compile_program",
    "open_sources",
]


@dataclass(slots=True)
class CaptureConfig:
    """What to capture and how: the socket-level part of the daemon's configuration."""

    iface: str
    bpf: str = ""  # tcpdump syntax; empty: everything
    snaplen: int = DEFAULT_SNAPLEN
    promisc: bool = True
    ring: bool = True
    ring_mb: int = 64  # per worker
    # A block is handed over when full or after this long.  A partly filled block still
    # takes a whole block of the ring, so at low rates the ring holds block_count x
    # timeout of traffic: small blocks and a long-ish timeout keep that large.
    block_timeout_ms: int = 100
    rcvbuf_mb: int = 64  # socket mode only
    fanout_mode: str = "hash"


def compile_program(config: CaptureConfig) -> list[BpfInsn]:
    """The BPF program for ``config``: its filter, for the interface's link type and snaplen."""
    linktype = interface_linktype(config.iface)
    return compile_filter(config.bpf, linktype=linktype, snaplen=config.snaplen)


def ring_block_size(snaplen: int) -> int:
    """The smallest power-of-two block (>= 256 KiB) that holds a frame of ``snaplen`` bytes."""
    size = MIN_BLOCK_SIZE
    while size < snaplen + BLOCK_OVERHEAD:
        size <<= 1
    return size


def open_sources(config: CaptureConfig, count: int) -> list[LiveSource]:
    """Open ``count`` capture sockets on the interface (a fanout group when count > 1)."""
    if count < 1:
        raise ValueError("at least one capture socket is needed")
    program = compile_program(config)
    block_size = ring_block_size(config.snaplen)
    options = SocketOptions(
        snaplen=config.snaplen,
        promisc=config.promisc,
        ring=config.ring,
        block_size=block_size,
        block_count=max(2, (config.ring_mb << 20) // block_size),
        block_timeout_ms=config.block_timeout_ms,
        rcvbuf=config.rcvbuf_mb << 20,
        # A group id unique to this process: two daemons on one interface must not share.
        fanout_group=(os.getpid() & 0xFFFF) if count > 1 else None,
        fanout_mode=config.fanout_mode,
        program=program,
    )
    sources: list[LiveSource] = []
    try:
        for _ in range(count):
            sources.append(open_source(config.iface, options))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources
