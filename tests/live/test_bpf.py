"""Classic BPF: tcpdump -dd parsing, validation, packing, compilation, attaching."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys

import pytest

from mirrorscope.capture import bpf

DD_TEXT = """{ 0x28, 0, 0, 0x0000000c },
{ 0x15, 0, 3, 0x00000800 },
{ 0x30, 0, 0, 0x00000017 },
{ 0x15, 0, 1, 0x00000006 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""


def test_parse_dd_reads_every_instruction() -> None:
    """The six lines of `tcpdump -dd ip and tcp` become six (code, jt, jf, k) tuples."""
    assert bpf.parse_dd(DD_TEXT) == [
        (0x28, 0, 0, 12), (0x15, 0, 3, 0x800), (0x30, 0, 0, 23), (0x15, 0, 1, 6),
        (0x6, 0, 0, 262144), (0x6, 0, 0, 0),
    ]


@pytest.mark.parametrize("text", ["", "(000) ldh [12]", "{ 0x28, 0, 0 },", "{ x, 0, 0, 1 },"])
def test_parse_dd_rejects_what_is_not_dd_output(text: str) -> None:
    """Anything but C initialisers (including -d's assembly) is refused."""
    with pytest.raises(bpf.BpfError):
        bpf.parse_dd(text)


def test_validate_enforces_the_kernel_limits() -> None:
    """4096 instructions at most; fields within their C types."""
    bpf.validate([(6, 0, 0, 1)] * bpf.BPF_MAXINSNS)
    with pytest.raises(bpf.BpfError, match="4097"):
        bpf.validate([(6, 0, 0, 1)] * (bpf.BPF_MAXINSNS + 1))
    with pytest.raises(bpf.BpfError):
        bpf.validate([(6, 256, 0, 1)])
    with pytest.raises(bpf.BpfError):
        bpf.validate([(6, 0, 0, 1 << 32)])


@pytest.mark.skipif(sys.byteorder != "little", reason="expected bytes are little-endian")
def test_pack_is_struct_sock_filter() -> None:
    """u16 code, u8 jt, u8 jf, u32 k, host byte order, 8 bytes per instruction."""
    assert bpf.pack([(0x28, 1, 2, 0x0C), (0x06, 0, 0, 0x40000)]) == (
        b"\x28\x00\x01\x02\x0c\x00\x00\x00" + b"\x06\x00\x00\x00\x00\x00\x04\x00"
    )


def test_accept_all_returns_the_snaplen() -> None:
    """The snaplen is the value the program returns: the bytes the kernel keeps."""
    assert bpf.accept_all(1500) == [(0x06, 0, 0, 1500)]
    assert bpf.compile_filter("  ", snaplen=200) == [(0x06, 0, 0, 200)]
    with pytest.raises(bpf.BpfError):
        bpf.accept_all(10)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("expression", ["tcp port 80", "udp port 4789 or udp port 6081 or ip "
                                        "proto 47", "host 10.0.0.1 and not icmp", "vlan and tcp"])
def test_compile_matches_tcpdump(expression: str) -> None:
    """Our compilation gives exactly the program tcpdump -dd prints (the reference)."""
    if bpf._libpcap() is None:
        pytest.skip("libpcap is not loadable")
    result = subprocess.run(["tcpdump", "-dd", "-s", "1600", expression], capture_output=True,
                            text=True, check=True)
    assert bpf.compile_filter(expression, snaplen=1600) == bpf.parse_dd(result.stdout)


def test_compile_reports_syntax_errors() -> None:
    """A typo is a BpfError naming the expression, not a crash."""
    if bpf._libpcap() is None and shutil.which("tcpdump") is None:
        pytest.skip("no BPF compiler here")
    with pytest.raises(bpf.BpfError, match="tcp prot 80"):
        bpf.compile_filter("tcp prot 80")


def test_attached_program_filters_a_socket() -> None:
    """The packed sock_fprog is accepted by the kernel and takes effect (no root needed)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.5)
        bpf.attach(receiver, [(bpf.BPF_RET_K, 0, 0, 0)])  # keep 0 bytes: drop everything
        sender.sendto(b"dropped", receiver.getsockname())
        with pytest.raises(TimeoutError):
            receiver.recv(100)
        bpf.attach(receiver, [(bpf.BPF_RET_K, 0, 0, 0xFFFF)])  # replace: keep everything
        sender.sendto(b"kept", receiver.getsockname())
        assert receiver.recv(100) == b"kept"


def test_kernel_refusal_is_a_bpf_error() -> None:
    """A program the verifier rejects (jump past the end) raises BpfError."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            pytest.raises(bpf.BpfError, match="refused"):
        bpf.attach(sock, [(0x05, 0, 0, 7)])  # ja +7 out of a one-instruction program
    assert struct.calcsize("=HBBI") == 8
