"""Read pcap, pcapng and gzip-compressed capture files as a stream of RawFrame.

This module is the capture stage's I/O edge: it reads the file in big chunks and parses
records out of an in-memory buffer with precompiled ``struct`` objects, so there is no
per-record ``read()`` call.  Damage is reported after every good frame before it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import BinaryIO

from mirrorscope.model import RawFrame

# libpcap refuses records above 256 KiB for almost every link type (max_snaplen_for_dlt).
MAX_CAPLEN = 256 * 1024
# pcapng blocks above this are damage, not data (libpcap's limit for non-packet blocks).
MAX_BLOCK_LEN = 16 * 1024 * 1024
# A header snaplen below this is not trusted as a bound: writers such as dpkt default
# to 1500 and still store longer frames, and libpcap reads such records too.
MIN_TRUSTED_SNAPLEN = 65535

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAP_MAGIC_KUZNETZOV = 0xA1B2CD34  # "modified" pcap: 8 extra bytes per record header
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_GZIP_MAGIC = b"\x1f\x8b"

_BT_IDB = 1
_BT_PB = 2  # obsolete Packet Block
_BT_SPB = 3
_BT_EPB = 6

_OPT_END = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14

_SUPPORTED = "supported: pcap (µs or ns, either byte order), pcapng, and either one gzip-compressed"

# Magic numbers of formats we recognise but cannot read, for a precise message.
_OTHER_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"XCP\x00", "a Network Associates Sniffer file"),
)


class CaptureError(ValueError):
    """The capture stage's API was called with invalid arguments."""


class CaptureFileError(Exception):
    """A capture file is missing, unreadable, not a capture, or damaged."""

    def __init__(self, path: str, reason: str, offset: int | None = None) -> None:
        self.path = path
        self.reason = " ".join(reason.split())  # always one line, whatever the OS said
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.offset is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}: {self.reason} at byte offset {self.offset}"


class _Damage(Exception):
    """Internal: the parser met damage at a stream offset."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class PcapSource:
    """Iterate the frames of a pcap/pcapng file (optionally gzip-compressed), single pass.

    Byte offsets in errors are offsets in the capture data; for a gzip file that is the
    decompressed stream (``bytes_read`` still reports the compressed position).
    """

    def __init__(self, path: str | os.PathLike[str], *, read_size: int = 1 << 20) -> None:
        if read_size <= 0:
            raise CaptureError(f"read_size must be positive, got {read_size}")
        self.path = os.fspath(path)
        self.frames = 0
        self._final_bytes_read = 0
        self._read_size = read_size
        self._raw: BinaryIO | None = None
        self._stream: BinaryIO | None = None
        self._iterator: Generator[RawFrame, None, None] | None = None
        self.format = ""  # "pcap", "pcap-ns", "pcapng", each optionally "+gzip"
        self.linktype: int | None = None  # classic pcap only: pcapng has one per interface
        self.snaplen = 0  # classic pcap only
        self.size = 0
        raw = self._raw = self._open_raw()
        try:
            self.size = os.fstat(raw.fileno()).st_size
            self._setup(raw)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- opening

    def _error(self, reason: str, offset: int | None = None) -> CaptureFileError:
        return CaptureFileError(self.path, reason, offset)

    def _open_raw(self) -> BinaryIO:
        if not os.path.lexists(self.path):
            raise self._error("no such file")
        if os.path.isdir(self.path):
            raise self._error("is a directory, not a capture file")
        # Checked before open(): opening a FIFO would block until someone writes to it.
        with contextlib.suppress(OSError):  # a dangling symlink is reported by open()
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                raise self._error("not a regular file (pipes and devices are not supported)")
        try:
            return open(self.path, "rb", buffering=0)  # closed by close()
        except PermissionError:
            raise self._error("permission denied") from None
        except FileNotFoundError:
            raise self._error("no such file (dangling symlink?)") from None
        except OSError as exc:
            raise self._error(exc.strerror or str(exc)) from None

    def _setup(self, raw: BinaryIO) -> None:
        if self.size == 0:
            raise self._error("empty file, not a capture")
        head = raw.read(2)
        raw.seek(0)
        compressed = head == _GZIP_MAGIC
        if compressed:
            self._stream = gzip.GzipFile(fileobj=raw, mode="rb")
            # read1 returns what one decompression step produced, so damage later in the
            # file does not discard the good data decompressed in the same call.
            self._read: Callable[[int], bytes] = self._stream.read1
        else:
            self._stream = raw
            self._read = raw.read
        self._base = 0  # stream offset of self._buf[0]
        self._buf = b""
        self._eof = False
        try:
            self._fill(24)
        except _Damage as exc:
            raise self._error(exc.reason, exc.offset) from None
        if not self._buf:
            raise self._error("empty capture (the gzip stream holds no data)")
        if len(self._buf) < 4:
            raise self._error("too short to be a capture file")
        magic_le = struct.unpack_from("<I", self._buf)[0]
        magic_be = struct.unpack_from(">I", self._buf)[0]
        suffix = "+gzip" if compressed else ""
        if magic_le == _PCAPNG_SHB:
            self.format = "pcapng" + suffix
            self._check_shb()
            self._parse = self._iter_pcapng
            return
        for order in ("<", ">"):
            magic = magic_le if order == "<" else magic_be
            if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS, _PCAP_MAGIC_KUZNETZOV):
                self._order = order
                self._magic = magic
                self.format = ("pcap-ns" if magic == _PCAP_MAGIC_NS else "pcap") + suffix
                self._read_pcap_header()
                self._parse = self._iter_pcap
                return
        raise self._error(self._describe_bad_magic())

    def _describe_bad_magic(self) -> str:
        head = self._buf[:8]
        for prefix, what in _OTHER_MAGICS:
            if head.startswith(prefix):
                return f"not a capture file: looks like {what} ({_SUPPORTED})"
        return f"not a capture file: unknown magic 0x{head[:4].hex()} ({_SUPPORTED})"

    def _read_pcap_header(self) -> None:
        if len(self._buf) < 24:
            raise self._error("truncated pcap file header", 0)
        major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
            self._order + "HHiIII", self._buf, 4
        )
        if major != 2:
            raise self._error(f"unsupported pcap version {major}.{_minor}", 4)
        self.snaplen = snaplen
        # Bits 16-31 carry FCS-length flags, not the link type (pcap file format spec).
        self.linktype = self._pcap_linktype = linktype & 0xFFFF

    def _check_shb(self) -> None:
        self._fill(12)
        if len(self._buf) < 12:
            raise self._error("truncated pcapng section header block", 0)
        bom = self._buf[8:12]
        if bom not in (_BOM_LITTLE, _BOM_BIG):
            raise self._error(
                f"not a capture file: pcapng magic with bad byte-order mark 0x{bom.hex()}", 8
            )

    # ---------------------------------------------------------------- reading

    def _fill(self, need: int) -> None:
        """Grow the buffer until it holds ``need`` bytes or the stream ends."""
        chunks = [self._buf]
        have = len(self._buf)
        while have < need and not self._eof:
            if self._stream is None:  # closed while iterating: end quietly
                self._eof = True
                break
            try:
                chunk = self._read(max(self._read_size, need - have))
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                self._buf = b"".join(chunks)
                # Report the first record we could not deliver, not the deflate position.
                raise _Damage(f"corrupt gzip data ({exc})", self._base) from None
            except OSError as exc:
                self._buf = b"".join(chunks)
                raise _Damage(f"read error ({exc.strerror or exc})", self._base) from None
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
            have += len(chunk)
        if len(chunks) > 1:
            self._buf = b"".join(chunks)

    def _advance(self, pos: int, need: int) -> tuple[bytes, int]:
        """Drop the consumed prefix, then read until ``need`` bytes follow ``pos``."""
        if pos:
            self._buf = self._buf[pos:]
            self._base += pos
        self._fill(need)
        return self._buf, 0

    def close(self) -> None:
        """Close the file; further iteration ends."""
        stream, raw = self._stream, self._raw
        if self._iterator is not None:
            # A started iteration ends here; ValueError: close() was called from inside
            # the loop, which then ends at its next read.
            with contextlib.suppress(ValueError):
                self._iterator.close()
        self._stream = None
        self._raw = None
        if raw is not None and not raw.closed:
            self._final_bytes_read = raw.tell()
        if stream is not None and stream is not raw:
            stream.close()
        if raw is not None:
            raw.close()

    def __enter__(self) -> PcapSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PcapSource({self.path!r}, format={self.format!r})"

    @property
    def bytes_read(self) -> int:
        """Bytes of the on-disk file read so far (the compressed position for gzip)."""
        raw = self._raw
        if raw is None or raw.closed:
            return self._final_bytes_read
        return raw.tell()

    def __iter__(self) -> Iterator[RawFrame]:
        """Yield the file's frames; raise CaptureFileError after the last good one."""
        if self._stream is None:
            raise CaptureError(f"{self.path}: capture file is closed")
        if self._iterator is None:
            self._iterator = self._guarded()
        return self._iterator

    def _guarded(self) -> Generator[RawFrame, None, None]:
        try:
            yield from self._parse()
        except _Damage as exc:
            raise self._error(exc.reason, exc.offset) from None

    def _damage(self, reason: str, pos: int) -> _Damage:
        return _Damage(reason, self._base + pos)

    def _iter_pcap(self) -> Iterator[RawFrame]:
        kuznetzov = self._magic == _PCAP_MAGIC_KUZNETZOV
        header = struct.Struct(self._order + ("IIII8x" if kuznetzov else "IIII"))
        unpack = header.unpack_from
        hlen = header.size
        scale = 1e-9 if self._magic == _PCAP_MAGIC_NS else 1e-6
        linktype = self._pcap_linktype
        limit = min(MAX_CAPLEN, max(self.snaplen, MIN_TRUSTED_SNAPLEN))
        buf, pos = self._advance(24, hlen)
        while True:
            n = len(buf)
            # Hot loop: whole records already in the buffer.
            while pos + hlen <= n:
                sec, frac, caplen, wire_len = unpack(buf, pos)
                start = pos + hlen
                end = start + caplen
                if end > n or caplen > limit:
                    break
                self.frames += 1
                yield RawFrame(sec + frac * scale, linktype, buf[start:end], wire_len)
                pos = end
            if pos + hlen <= n:
                caplen = unpack(buf, pos)[2]
                if caplen > limit:
                    raise self._damage(
                        f"record claims {caplen} captured bytes (limit {limit})", pos
                    )
            need = hlen if pos + hlen > n else hlen + unpack(buf, pos)[2]
            buf, pos = self._advance(pos, need)
            n = len(buf)
            if n >= need:
                continue
            if n == 0:
                return
            what = "record header" if n < hlen else "record data"
            raise self._damage(f"truncated {what} ({n} of {need} bytes present)", 0)

    def _iter_pcapng(self) -> Iterator[RawFrame]:
        buf, pos = self._advance(0, 12)
        layout = _NG_LITTLE
        ifaces: list[_Interface] = []
        last_ts = 0.0
        while True:
            n = len(buf)
            if pos + 12 > n:
                buf, pos = self._advance(pos, 12)
                n = len(buf)
                if n == 0:
                    return
                if n < 12:
                    raise self._damage(f"truncated block header ({n} of 12 bytes present)", 0)
            btype, blen = layout.block.unpack_from(buf, pos)
            if btype == _PCAPNG_SHB:  # a palindrome: readable in either byte order
                bom = buf[pos + 8 : pos + 12]
                if bom == _BOM_LITTLE:
                    layout = _NG_LITTLE
                elif bom == _BOM_BIG:
                    layout = _NG_BIG
                else:
                    raise self._damage(f"bad section byte-order mark 0x{bom.hex()}", pos)
                btype, blen = layout.block.unpack_from(buf, pos)
                ifaces = []  # interface ids are per section
            if blen < 12 or blen % 4 or blen > MAX_BLOCK_LEN:
                raise self._damage(f"bad block length {blen}", pos)
            if pos + blen > n:
                buf, pos = self._advance(pos, blen)
                n = len(buf)
                if blen > n:
                    raise self._damage(f"truncated block ({n} of {blen} bytes present)", 0)
            if layout.u32.unpack_from(buf, pos + blen - 4)[0] != blen:
                raise self._damage("block trailer length does not match its header", pos)
            if btype in (_BT_EPB, _BT_PB):
                if blen < 32:
                    raise self._damage(f"packet block too short ({blen} bytes)", pos)
                if btype == _BT_EPB:
                    iface, hi, lo, caplen, wire_len = layout.epb.unpack_from(buf, pos + 8)
                else:
                    iface, hi, lo, caplen, wire_len = layout.pb.unpack_from(buf, pos + 8)
                if iface >= len(ifaces):
                    raise self._damage(f"packet for undeclared interface {iface}", pos)
                linktype, ticks, offset, _snaplen = ifaces[iface]
                if caplen > blen - 32 or caplen > MAX_CAPLEN:
                    raise self._damage(f"packet claims {caplen} captured bytes", pos)
                last_ts = ((hi << 32) | lo) / ticks + offset
                start = pos + 28
                self.frames += 1
                yield RawFrame(last_ts, linktype, buf[start : start + caplen], wire_len)
            elif btype == _BT_SPB:
                if blen < 16:
                    raise self._damage(f"simple packet block too short ({blen} bytes)", pos)
                if not ifaces:
                    raise self._damage("simple packet block before any interface", pos)
                linktype, _ticks, _offset, snaplen = ifaces[0]
                wire_len = layout.u32.unpack_from(buf, pos + 8)[0]
                caplen = min(wire_len, blen - 16, MAX_CAPLEN)
                if snaplen:
                    caplen = min(caplen, snaplen)
                start = pos + 12
                self.frames += 1
                # An SPB has no timestamp: reuse the last one so time never runs backwards
                # downstream (timeouts and clock-skew checks run on packet time).
                yield RawFrame(last_ts, linktype, buf[start : start + caplen], wire_len)
            elif btype == _BT_IDB:
                if blen < 20:
                    raise self._damage(f"interface description block too short ({blen})", pos)
                ifaces.append(_parse_idb(buf, pos, blen, layout))
            # Every other block type (name resolution, statistics, custom ...) is skipped.
            pos += blen


_Interface = tuple[int, int, int, int]  # linktype, timestamp ticks per second, offset s, snaplen


class _NgLayout:
    """Precompiled structs of one pcapng byte order."""

    __slots__ = ("block", "epb", "idb", "opt", "pb", "tsoffset", "u32")

    def __init__(self, order: str) -> None:
        self.block = struct.Struct(order + "II")
        self.u32 = struct.Struct(order + "I")
        self.epb = struct.Struct(order + "5I")  # iface, ts high, ts low, caplen, len
        self.pb = struct.Struct(order + "H2x4I")  # iface, drops (skipped), ts hi/lo, lens
        self.idb = struct.Struct(order + "H2xI")  # linktype, reserved, snaplen
        self.opt = struct.Struct(order + "HH")
        self.tsoffset = struct.Struct(order + "q")


_NG_LITTLE = _NgLayout("<")
_NG_BIG = _NgLayout(">")
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_BOM_BIG = b"\x1a\x2b\x3c\x4d"


def _parse_idb(buf: bytes, pos: int, blen: int, layout: _NgLayout) -> _Interface:
    """Link type, timestamp ticks per second, offset and snaplen from an IDB."""
    linktype, snaplen = layout.idb.unpack_from(buf, pos + 8)
    ticks = 1_000_000
    offset = 0
    opt = pos + 16
    end = pos + blen - 4
    while opt + 4 <= end:
        code, length = layout.opt.unpack_from(buf, opt)
        if code == _OPT_END or opt + 4 + length > end:
            break  # malformed options only lose the defaults, never the packets
        value = opt + 4
        if code == _OPT_IF_TSRESOL and length >= 1:
            resol = buf[value]
            exponent = resol & 0x7F
            # MSB set: a negative power of 2, else of 10 (pcapng spec, if_tsresol).
            ticks = (1 << exponent) if resol & 0x80 else 10**exponent
        elif code == _OPT_IF_TSOFFSET and length >= 8:
            offset = layout.tsoffset.unpack_from(buf, value)[0]
        opt = value + ((length + 3) & ~3)
    return linktype, ticks, offset, snaplen
