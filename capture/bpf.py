"""Classic BPF programs for live capture: compile tcpdump syntax, pack, attach to a socket.

The kernel runs the program on every frame before it is queued for us, so a filter
that rejects traffic costs us nothing.  The program's ``ret`` value is also the
number of bytes the kernel keeps: that is how the snaplen is applied (as libpcap does).

Compilation uses libpcap through ctypes (``pcap_open_dead`` + ``pcap_compile``: no
device, no privileges) and falls back to ``tcpdump -dd`` when libpcap is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import socket
import struct
import subprocess

BpfInsn = tuple[int, int, int, int]  # (code, jt, jf, k), as struct sock_filter

BPF_MAXINSNS = 4096  # the kernel refuses longer classic programs
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
BPF_RET_K = 0x06  # BPF_RET | BPF_K
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
DEFAULT_SNAPLEN = 262144
# pcap_open_dead takes a DLT_* value, which differs from the LINKTYPE_* value for raw IP.
_DLT_OF_LINKTYPE = {101: 12}

_INSN = struct.Struct("=HBBI")
_DD_LINE = re.compile(
    r"^\s*\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\}\s*,?\s*$"
)


class BpfError(ValueError):
    """A filter expression could not be compiled or the program is invalid."""


class _BpfInsnC(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgramC(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsnC)))


def accept_all(snaplen: int = DEFAULT_SNAPLEN) -> list[BpfInsn]:
    """A one-instruction program that keeps every frame, cut to ``snaplen`` bytes."""
    _check_snaplen(snaplen)
    return [(BPF_RET_K, 0, 0, snaplen)]


def parse_dd(text: str) -> list[BpfInsn]:
    """Parse ``tcpdump -dd`` output (C array initialisers) into instructions."""
    program: list[BpfInsn] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _DD_LINE.match(line)
        if match is None:
            raise BpfError(f"not a tcpdump -dd line: {line.strip()[:80]!r}")
        code, jt, jf, k = (int(group, 0) for group in match.groups())
        program.append((code, jt, jf, k))
    validate(program)
    return program


def validate(program: list[BpfInsn]) -> None:
    """Refuse programs the kernel would refuse, with a message that says why."""
    if not program:
        raise BpfError("empty BPF program")
    if len(program) > BPF_MAXINSNS:
        raise BpfError(f"BPF program has {len(program)} instructions (kernel limit {BPF_MAXINSNS})")
    for index, (code, jt, jf, k) in enumerate(program):
        if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF
                and 0 <= k <= 0xFFFFFFFF):
            raise BpfError(f"BPF instruction {index} has a field out of range")


def compile_filter(
    expression: str, *, linktype: int = 1, snaplen: int = DEFAULT_SNAPLEN
) -> list[BpfInsn]:
    """Compile a tcpdump filter expression for ``linktype`` frames cut to ``snaplen``."""
    _check_snaplen(snaplen)
    if not expression.strip():
        return accept_all(snaplen)
    library = _libpcap()
    if library is not None:
        return _compile_libpcap(library, expression, linktype, snaplen)
    return _compile_tcpdump(expression, linktype, snaplen)


def pack(program: list[BpfInsn]) -> bytes:
    """The program as the kernel's array of ``struct sock_filter``."""
    validate(program)
    return b"".join(_INSN.pack(*insn) for insn in program)


def attach(sock: socket.socket, program: list[BpfInsn]) -> None:
    """Attach (or replace) the socket's filter: SO_ATTACH_FILTER with a sock_fprog."""
    insns = ctypes.create_string_buffer(pack(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: native
    # alignment pads the short to the pointer.  ``insns`` must outlive the call.
    fprog = struct.pack("@HP", len(program), ctypes.addressof(insns))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        raise BpfError(f"the kernel refused the BPF program: {exc.strerror}") from exc


def _check_snaplen(snaplen: int) -> None:
    if not 64 <= snaplen <= DEFAULT_SNAPLEN:
        raise BpfError(f"snaplen must be between 64 and {DEFAULT_SNAPLEN}, not {snaplen}")


_LIBPCAP: list[ctypes.CDLL | None] = []


def _libpcap() -> ctypes.CDLL | None:
    """libpcap, loaded once (None when it is not installed)."""
    if not _LIBPCAP:
        name = ctypes.util.find_library("pcap")
        library = None
        if name:
            try:
                library = ctypes.CDLL(name)
            except OSError:
                library = None
        if library is not None:
            library.pcap_open_dead.restype = ctypes.c_void_p
            library.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
            library.pcap_compile.restype = ctypes.c_int
            library.pcap_compile.argtypes = (
                ctypes.c_void_p, ctypes.POINTER(_BpfProgramC), ctypes.c_char_p, ctypes.c_int,
                ctypes.c_uint32,
            )
            library.pcap_geterr.restype = ctypes.c_char_p
            library.pcap_geterr.argtypes = (ctypes.c_void_p,)
            library.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgramC),)
            library.pcap_close.argtypes = (ctypes.c_void_p,)
        _LIBPCAP.append(library)
    return _LIBPCAP[0]


def _compile_libpcap(
    library: ctypes.CDLL, expression: str, linktype: int, snaplen: int
) -> list[BpfInsn]:
    handle = library.pcap_open_dead(_DLT_OF_LINKTYPE.get(linktype, linktype), snaplen)
    if not handle:
        raise BpfError(f"libpcap cannot compile for link type {linktype}")
    program = _BpfProgramC()
    try:
        status = library.pcap_compile(
            handle, ctypes.byref(program), expression.encode(), 1, PCAP_NETMASK_UNKNOWN
        )
        if status != 0:
            message = (library.pcap_geterr(handle) or b"syntax error").decode(errors="replace")
            raise BpfError(f"bad filter {expression!r}: {message}")
        try:
            insns = [
                (program.bf_insns[i].code, program.bf_insns[i].jt, program.bf_insns[i].jf,
                 program.bf_insns[i].k)
                for i in range(program.bf_len)
            ]
        finally:
            library.pcap_freecode(ctypes.byref(program))
    finally:
        library.pcap_close(handle)
    validate(insns)
    return insns


def _compile_tcpdump(expression: str, linktype: int, snaplen: int) -> list[BpfInsn]:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise BpfError("cannot compile BPF filters: neither libpcap nor tcpdump is installed")
    if linktype != 1:
        # Without -i, tcpdump compiles for Ethernet only.
        raise BpfError(f"tcpdump fallback compiles Ethernet filters only, not link type {linktype}")
    result = subprocess.run(
        [tcpdump, "-dd", "-s", str(snaplen), "--", expression],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["tcpdump failed"]
        raise BpfError(f"bad filter {expression!r}: {message[0]}")
    return parse_dd(result.stdout)
