"""Linux AF_PACKET capture: a TPACKET_V3 memory-mapped ring, or a plain socket fallback.

Both sources hand out RawFrames in batches: ``read(timeout)`` returns the frames of one
ring block (the kernel fills a block, then hands it over whole, so the per-packet cost
is one header unpack and one copy of the frame's bytes out of the shared memory), or up
to ``SOCKET_BATCH`` datagrams drained from a socket with ``recvmsg_into``.

Kernel structures (linux/if_packet.h) are read with precompiled ``struct`` formats.
On x86 and arm64 a word store to the ring is seen by the kernel in order with the
stores before it, which is what releasing a block by writing its status needs.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from mirrorscope.model import RawFrame

from . import bpf

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35

FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2}
PACKET_FANOUT_FLAG_DEFRAG = 0x8000  # reassemble IP fragments before hashing: one worker each

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772  # carries a (zeroed) Ethernet header on Linux
ARPHRD_NONE = 65534  # tun devices: bare IP packets
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

SOCKET_BATCH = 256  # datagrams drained per read() in socket mode
TPACKET3_FRAME_SIZE = 2048  # only a sanity value for V3 (frames are variable-sized)

_U32 = struct.Struct("=I")
_BLOCK_PKTS = struct.Struct("=II")  # tpacket_hdr_v1: num_pkts, offset_to_first_pkt (at +12)
_BLOCK_SEQ = struct.Struct("=Q")  # tpacket_hdr_v1.seq_num (at +24)
_HDR3 = struct.Struct("=IIIIIIH")  # tpacket3_hdr: next, sec, nsec, snaplen, len, status, mac
_HDR3_VLAN = struct.Struct("=IH")  # hv1.tp_vlan_tci, hv1.tp_vlan_tpid (at +32)
_REQ3 = struct.Struct("=7I")  # tpacket_req3
_MREQ = struct.Struct("=iHH8s")  # packet_mreq
_STATS_V3 = struct.Struct("=III")  # tpacket_stats_v3: packets, drops, freeze_q_cnt
_STATS = struct.Struct("=II")  # tpacket_stats
_AUXDATA = struct.Struct("=IIIHHHH")  # tpacket_auxdata
_TIMESPEC = struct.Struct("=qq")
_VLAN_TAG = struct.Struct("!HH")
_ANC_SIZE = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size)


class LiveCaptureError(OSError):
    """The interface cannot be captured from (missing, unsupported, no permission)."""


@dataclass(slots=True)
class KernelStats:
    """PACKET_STATISTICS since the previous read (the kernel resets them on every read)."""

    packets: int = 0  # frames that passed the filter, drops included
    drops: int = 0  # frames the kernel dropped because our buffer was full
    freeze_q: int = 0  # times the V3 ring was full and the queue froze


@dataclass(slots=True)
class SocketOptions:
    """How to open one capture socket."""

    snaplen: int = bpf.DEFAULT_SNAPLEN
    promisc: bool = True
    ring: bool = True  # TPACKET_V3 mmap ring; False: plain socket with a big SO_RCVBUF
    block_size: int = 1 << 20
    block_count: int = 64
    block_timeout_ms: int = 100  # hand over a partly filled block after this long
    rcvbuf: int = 64 << 20
    fanout_group: int | None = None  # 16-bit group id shared by all the worker sockets
    fanout_mode: str = "hash"
    program: list[bpf.BpfInsn] | None = field(default=None)  # None: accept all, cut to snaplen


def interface_linktype(name: str) -> int:
    """The pcap link type of frames read from ``name`` with a SOCK_RAW packet socket."""
    try:
        arphrd = int(Path("/sys/class/net", name, "type").read_text())
    except (OSError, ValueError) as exc:
        raise LiveCaptureError(f"no such network interface: {name}") from exc
    if arphrd in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return LINKTYPE_ETHERNET
    if arphrd == ARPHRD_NONE:
        return LINKTYPE_RAW
    raise LiveCaptureError(f"{name}: unsupported hardware type {arphrd} (Ethernet or tun only)")


def open_source(iface: str, options: SocketOptions) -> RingSource | SocketSource:
    """Open, filter, bind and (optionally) join the fanout group: needs CAP_NET_RAW."""
    linktype = interface_linktype(iface)
    try:
        ifindex = socket.if_nametoindex(iface)
    except OSError as exc:
        raise LiveCaptureError(f"no such network interface: {iface}") from exc
    # Protocol 0: the socket queues nothing until bind(), so no frame slips in before
    # the filter is attached.
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError as exc:
        raise LiveCaptureError(
            "opening a packet socket needs CAP_NET_RAW (run as root with --user, or with "
            "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN)"
        ) from exc
    try:
        bpf.attach(sock, options.program or bpf.accept_all(options.snaplen))
        source: RingSource | SocketSource
        if options.ring:
            source = RingSource(sock, iface, linktype, options)
        else:
            source = SocketSource(sock, iface, linktype, options)
        sock.bind((iface, ETH_P_ALL))
        if options.promisc:
            mreq = _MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if options.fanout_group is not None:
            mode = FANOUT_MODES[options.fanout_mode]
            if mode == FANOUT_MODES["hash"]:
                mode |= PACKET_FANOUT_FLAG_DEFRAG
            arg = (options.fanout_group & 0xFFFF) | (mode << 16)
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, _U32.pack(arg))  # > INT_MAX: bytes
    except (OSError, bpf.BpfError) as exc:
        sock.close()
        if isinstance(exc, LiveCaptureError | bpf.BpfError):
            raise
        raise LiveCaptureError(f"{iface}: cannot set up capture: {exc.strerror or exc}") from exc
    return source


class _Source:
    """What both capture sources share: the socket, filter replacement and statistics."""

    __slots__ = ("_poll", "errors", "iface", "linktype", "sock")

    def __init__(self, sock: socket.socket, iface: str, linktype: int) -> None:
        self.sock = sock
        self.iface = iface
        self.linktype = linktype
        self.errors = 0  # socket errors seen (the interface went down, ...)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)

    def _wait(self, timeout: float) -> bool:
        """Wait for readability; False after the timeout or a socket error.

        An error (ENETDOWN when the link goes down) stays pending until read, and a
        pending error makes poll() return at once: read it, count it, and wait out the
        timeout so the caller does not spin.  The kernel re-attaches the socket by
        itself when the link comes back up.
        """
        events = self._poll.poll(int(timeout * 1000))
        if events and events[0][1] & select.POLLERR:
            self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.errors += 1
            time.sleep(timeout)
            return False
        return bool(events)

    def fileno(self) -> int:
        """The socket's descriptor (for select/poll)."""
        return self.sock.fileno()

    def set_program(self, program: list[bpf.BpfInsn]) -> None:
        """Replace the socket's BPF filter (no privileges needed on an open socket)."""
        bpf.attach(self.sock, program)

    def kernel_stats(self) -> KernelStats:
        """Counters since the previous call (reading resets them in the kernel)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
        if len(raw) >= _STATS_V3.size:
            return KernelStats(*_STATS_V3.unpack_from(raw))
        return KernelStats(*_STATS.unpack_from(raw))

    def close(self) -> None:
        """Release the socket (and the ring)."""
        self.sock.close()


class RingSource(_Source):
    """A TPACKET_V3 receive ring mapped into our memory."""

    __slots__ = ("_block_count", "_block_size", "_index", "_mm", "blocks_read")

    def __init__(
        self, sock: socket.socket, iface: str, linktype: int, options: SocketOptions
    ) -> None:
        super().__init__(sock, iface, linktype)
        block_size = options.block_size
        if block_size % mmap.PAGESIZE or block_size < TPACKET3_FRAME_SIZE:
            raise LiveCaptureError(f"ring block size {block_size} is not a multiple of a page")
        if options.block_count < 2:
            raise LiveCaptureError("the ring needs at least 2 blocks")
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frames_per_block = block_size // TPACKET3_FRAME_SIZE
        request = _REQ3.pack(
            block_size, options.block_count, TPACKET3_FRAME_SIZE,
            frames_per_block * options.block_count, options.block_timeout_ms, 0, 0,
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self._block_size = block_size
        self._block_count = options.block_count
        # Mapped on first read, in the process that reads: the supervisor that opened
        # the socket never maps it, so the ring's pages are resident in one process.
        self._mm: mmap.mmap | None = None
        self._index = 0
        self.blocks_read = 0

    def _map(self) -> mmap.mmap:
        self._mm = mmap.mmap(
            self.sock.fileno(), self._block_size * self._block_count, mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self._resync()
        return self._mm

    def read(self, timeout: float) -> list[RawFrame]:
        """The frames of the next block the kernel handed over; [] after ``timeout`` s."""
        mm = self._mm
        if mm is None:
            mm = self._map()
        offset = self._index * self._block_size
        if not _U32.unpack_from(mm, offset + 8)[0] & TP_STATUS_USER:
            self._wait(timeout)
            if not _U32.unpack_from(mm, offset + 8)[0] & TP_STATUS_USER:
                # A restarted reader does not know where the kernel is: follow the
                # oldest block it has handed over, if any.
                if not self._resync():
                    return []
                offset = self._index * self._block_size
        frames = self._walk(mm, offset)
        _U32.pack_into(mm, offset + 8, TP_STATUS_KERNEL)  # give the block back
        self._index = (self._index + 1) % self._block_count
        self.blocks_read += 1
        return frames

    def _resync(self) -> bool:
        oldest = None
        oldest_seq = 0
        mm = self._mm
        assert mm is not None
        for index in range(self._block_count):
            offset = index * self._block_size
            if _U32.unpack_from(mm, offset + 8)[0] & TP_STATUS_USER:
                seq = _BLOCK_SEQ.unpack_from(mm, offset + 24)[0]
                if oldest is None or seq < oldest_seq:
                    oldest, oldest_seq = index, seq
        if oldest is None:
            return False
        self._index = oldest
        return True

    def _walk(self, mm: mmap.mmap, offset: int) -> list[RawFrame]:
        count, first = _BLOCK_PKTS.unpack_from(mm, offset + 12)
        position = offset + first
        linktype = self.linktype
        unpack = _HDR3.unpack_from
        frames: list[RawFrame] = []
        append = frames.append
        for _ in range(count):
            step, sec, nsec, snaplen, wire_len, status, mac = unpack(mm, position)
            start = position + mac
            data = mm[start : start + snaplen]
            if status & TP_STATUS_VLAN_VALID and linktype == LINKTYPE_ETHERNET:
                # The NIC or driver stripped the 802.1Q tag into metadata: put it back so
                # the decoder sees the frame as it was on the wire.
                tci, tpid = _HDR3_VLAN.unpack_from(mm, position + 32)
                if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
                    tpid = 0x8100
                data = data[:12] + _VLAN_TAG.pack(tpid, tci) + data[12:]
                wire_len += 4
            append(RawFrame(sec + nsec * 1e-9, linktype, data, wire_len))
            position += step
        return frames

    def close(self) -> None:
        """Unmap the ring and close the socket."""
        try:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
        finally:
            super().close()


class SocketSource(_Source):
    """A plain packet socket read with recvmsg_into: the fallback when rings are unwanted."""

    __slots__ = ("_buffer", "_view")

    def __init__(
        self, sock: socket.socket, iface: str, linktype: int, options: SocketOptions
    ) -> None:
        super().__init__(sock, iface, linktype)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, options.rcvbuf)
        except PermissionError:  # no CAP_NET_ADMIN: capped by net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, options.rcvbuf)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._buffer = bytearray(options.snaplen + 4)
        self._view = memoryview(self._buffer)

    def read(self, timeout: float) -> list[RawFrame]:
        """Up to SOCKET_BATCH queued frames; [] after ``timeout`` s without any."""
        if not self._wait(timeout):
            return []
        frames: list[RawFrame] = []
        recv = self.sock.recvmsg_into
        buffers = [self._view]
        linktype = self.linktype
        for _ in range(SOCKET_BATCH):
            try:
                nbytes, ancillary, _flags, _addr = recv(buffers, _ANC_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # a pending socket error (ENETDOWN): counted by the next wait
                break
            ts = 0.0  # replaced by the kernel's receive time (SO_TIMESTAMPNS)
            wire_len = nbytes
            data = bytes(self._view[:nbytes])
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    ts = sec + nsec * 1e-9
                elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, wire_len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(payload)
                    if status & TP_STATUS_VLAN_VALID and linktype == LINKTYPE_ETHERNET:
                        if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
                            tpid = 0x8100
                        data = data[:12] + _VLAN_TAG.pack(tpid, tci) + data[12:]
                        wire_len += 4
            frames.append(RawFrame(ts or time.time(), linktype, data, wire_len))
        return frames
