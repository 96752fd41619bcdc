"""PcapSource: formats, timestamps, gzip, and every way a capture file can be bad."""

from __future__ import annotations

import bz2
import gzip
import os
import random
import struct
from pathlib import Path

import pytest
from capture_files import (
    PCAP_NS,
    PCAP_US,
    block,
    epb,
    idb,
    obsolete_pb,
    option,
    pcap_bytes,
    shb,
    spb,
)
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter, rdpcap

from mirrorscope.capture import pcapfile
from mirrorscope.capture.pcapfile import CaptureError, CaptureFileError, PcapSource
from mirrorscope.model import RawFrame

T0 = 1_700_000_000


def frames_of(path: Path, **kwargs: int) -> list[RawFrame]:
    with PcapSource(path, **kwargs) as source:
        return list(source)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def sample_records(count: int = 3) -> list[tuple[int, int, bytes, int]]:
    """Records of different sizes with recognisable contents."""
    return [
        (T0 + i, 250_000 * i, bytes([65 + i]) * (60 + 10 * i), 60 + 10 * i) for i in range(count)
    ]


# ----------------------------------------------------------------------- formats


def test_classic_pcap_written_by_scapy(tmp_path: Path) -> None:
    packets = []
    for i in range(3):
        pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000 + i) / (b"x" * i)
        pkt.time = T0 + i + 0.5
        packets.append(pkt)
    path = tmp_path / "scapy.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write(packets)
    with PcapSource(path) as source:
        assert source.format == "pcap"
        got = list(source)
        assert source.frames == 3
        assert source.size == path.stat().st_size
        assert source.bytes_read == source.size
    assert [f.data for f in got] == [bytes(p) for p in packets]
    assert [f.wire_len for f in got] == [len(bytes(p)) for p in packets]
    assert {f.linktype for f in got} == {1}
    assert [f.ts for f in got] == pytest.approx([T0 + 0.5, T0 + 1.5, T0 + 2.5], abs=1e-6)


def test_big_endian_nanosecond_pcap_by_scapy(tmp_path: Path) -> None:
    pkt = Ether() / IP() / TCP()
    pkt.time = T0 + 900e-9  # 900 ns: read as microseconds it would be 0.9 ms
    path = tmp_path / "be-ns.pcap"
    with PcapWriter(str(path), endianness=">", nano=True) as writer:
        writer.write(pkt)
    assert path.read_bytes()[:4] == struct.pack(">I", PCAP_NS)
    with PcapSource(path) as source:
        assert source.format == "pcap-ns"
        (frame,) = list(source)
    assert frame.ts - T0 == pytest.approx(900e-9, abs=3e-7)
    assert frame.data == bytes(pkt)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic", [PCAP_US, PCAP_NS])
def test_hand_built_pcap_matches_scapy(tmp_path: Path, order: str, magic: int) -> None:
    records = sample_records()
    path = write(tmp_path, "x.pcap", pcap_bytes(records, order=order, magic=magic, linktype=101))
    got = frames_of(path)
    reference = rdpcap(str(path))  # a third party agrees with our builder
    assert [f.data for f in got] == [bytes(p) for p in reference]
    assert [f.ts for f in got] == pytest.approx([float(p.time) for p in reference], abs=1e-6)
    assert [f.wire_len for f in got] == [r[3] for r in records]
    assert {f.linktype for f in got} == {101}


def test_kuznetzov_modified_pcap(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", T0, 7, 5, 9) + b"\0" * 8 + b"hello"
    path = write(tmp_path, "kuz.pcap", header + record + record)
    got = frames_of(path)
    assert [(f.data, f.wire_len) for f in got] == [(b"hello", 9)] * 2
    assert got[0].ts == pytest.approx(T0 + 7e-6)


def test_linktype_fcs_bits_are_masked(tmp_path: Path) -> None:
    # Bits 28-31 announce an FCS length, bit 26 says it is present: not part of the type.
    path = write(
        tmp_path, "fcs.pcap", pcap_bytes(sample_records(1), linktype=(4 << 28) | (1 << 26) | 1)
    )
    assert frames_of(path)[0].linktype == 1


def pcapng_two_sections() -> tuple[bytes, list[tuple[float, int, bytes, int]]]:
    """A pcapng file exercising interfaces, resolutions, block kinds and two sections."""
    ns = option(9, bytes([9]))
    pow2 = option(9, bytes([0x80 | 10]))  # 2^-10 s ticks
    tsoffset_be = option(14, struct.pack(">q", 100), ">")
    eth, raw, sll = b"E" * 60, b"\x45" + b"R" * 39, b"S" * 44
    data = b"".join(
        [
            shb(),
            idb(1),
            idb(101, options=ns + option(2, b"eth0\0")),
            block(0x00000BAD, b"unknown block"),
            epb(0, (T0 * 1_000_000) + 250_000, eth),
            epb(1, T0 * 1_000_000_000 + 123_456_789, raw, wire_len=1500),
            block(4, b"\0" * 4),  # name resolution block: skipped
            idb(276, options=pow2),
            epb(2, (T0 + 1) * 1024 + 512, sll),
            spb(b"P" * 30),  # 30 bytes: the block carries 2 bytes of padding
            obsolete_pb(0, (T0 + 2) * 1_000_000, b"O" * 14),
            block(5, b"\0" * 20),  # interface statistics block: skipped
            shb(">"),
            idb(113, options=tsoffset_be, order=">"),
            epb(0, 5_000_000, b"B" * 33, order=">"),
        ]
    )
    expected = [
        (T0 + 0.25, 1, eth, 60),
        (T0 + 0.123456789, 101, raw, 1500),
        (T0 + 1.5, 276, sll, 44),
        (T0 + 1.5, 1, b"P" * 30, 30),  # SPB: interface 0, timestamp of the previous packet
        (T0 + 2.0, 1, b"O" * 14, 14),
        (105.0, 113, b"B" * 33, 33),  # 5 s after the interface's 100 s offset
    ]
    return data, expected


def test_pcapng_interfaces_resolutions_blocks_and_sections(tmp_path: Path) -> None:
    data, expected = pcapng_two_sections()
    path = write(tmp_path, "multi.pcapng", data)
    with PcapSource(path) as source:
        assert source.format == "pcapng"
        got = list(source)
    assert [(f.linktype, f.data, f.wire_len) for f in got] == [e[1:] for e in expected]
    assert [f.ts for f in got] == pytest.approx([e[0] for e in expected], abs=1e-6)


def test_pcapng_simple_packet_block_cut_by_snaplen(tmp_path: Path) -> None:
    data = shb() + idb(1, snaplen=17) + spb(b"s" * 17, wire_len=1000)
    (frame,) = frames_of(write(tmp_path, "spb.pcapng", data))
    assert (frame.data, frame.wire_len) == (b"s" * 17, 1000)


def test_pcapng_builder_agrees_with_scapy(tmp_path: Path) -> None:
    data = (
        shb()
        + idb(1)
        + idb(101, options=option(9, bytes([9])))
        + epb(0, T0 * 1_000_000 + 250_000, b"A" * 20)
        + epb(1, T0 * 1_000_000_000 + 5, b"\x45" + b"B" * 30, wire_len=99)
    )
    path = write(tmp_path, "s.pcapng", data)
    reference = rdpcap(str(path))
    got = frames_of(path)
    assert [f.data for f in got] == [bytes(p) for p in reference]
    assert [f.wire_len for f in got] == [p.wirelen for p in reference]
    assert [f.ts for f in got] == pytest.approx([float(p.time) for p in reference], abs=1e-6)


def test_pcapng_big_endian_first_section(tmp_path: Path) -> None:
    data = shb(">") + idb(1, order=">") + epb(0, 3_000_000, b"x" * 16, order=">")
    got = frames_of(write(tmp_path, "be.pcapng", data))
    assert [(f.ts, f.data) for f in got] == [(3.0, b"x" * 16)]


@pytest.mark.parametrize("read_size", [1, 7, 64, 1 << 20])
def test_small_read_sizes_give_the_same_frames(tmp_path: Path, read_size: int) -> None:
    data, expected = pcapng_two_sections()
    ng = write(tmp_path, "a.pcapng", data)
    assert [f.data for f in frames_of(ng, read_size=read_size)] == [e[2] for e in expected]
    records = sample_records(5)
    classic = write(tmp_path, "a.pcap", pcap_bytes(records))
    assert [f.data for f in frames_of(classic, read_size=read_size)] == [r[2] for r in records]


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed(tmp_path: Path, kind: str) -> None:
    if kind == "pcap":
        raw = pcap_bytes(sample_records())
        expected = [r[2] for r in sample_records()]
    else:
        raw, exp = pcapng_two_sections()
        expected = [e[2] for e in exp]
    path = write(tmp_path, f"x.{kind}.gz", gzip.compress(raw))
    with PcapSource(path) as source:
        assert source.format == f"{kind}+gzip"
        assert [f.data for f in source] == expected
        assert source.size == path.stat().st_size
        assert source.bytes_read == source.size


def test_gzip_is_streamed_not_decompressed_whole(tmp_path: Path) -> None:
    rng = random.Random(1)
    records = [(T0, i, rng.randbytes(1400), 1400) for i in range(2000)]  # incompressible
    path = write(tmp_path, "big.pcap.gz", gzip.compress(pcap_bytes(records)))
    with PcapSource(path, read_size=4096) as source:
        first = next(iter(source))
        assert first.data == records[0][2]
        assert source.bytes_read < source.size // 4
        assert sum(1 for _ in source) == len(records) - 1


# -------------------------------------------------------------------- bad input


def check_one_line(exc: CaptureFileError, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert exc.path == str(path)


def test_error_message_format() -> None:
    exc = CaptureFileError("a.pcap", "bad\nthing", 5)
    assert str(exc) == "a.pcap: bad thing at byte offset 5"
    assert (exc.path, exc.reason, exc.offset) == ("a.pcap", "bad thing", 5)
    assert str(CaptureFileError("b.pcap", "gone")) == "b.pcap: gone"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pcap"
    with pytest.raises(CaptureFileError) as info:
        PcapSource(path)
    check_one_line(info.value, path)
    assert info.value.offset is None
    assert "no such file" in info.value.reason


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureFileError, match="directory") as info:
        PcapSource(tmp_path)
    check_one_line(info.value, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.pcap", pcap_bytes(sample_records()))
    path.chmod(0)
    try:
        with pytest.raises(CaptureFileError, match="permission") as info:
            PcapSource(path)
        check_one_line(info.value, path)
    finally:
        path.chmod(0o600)


def test_permission_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs as root too, where chmod cannot make a file unreadable.
    path = write(tmp_path, "secret.pcap", pcap_bytes(sample_records()))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pcapfile, "open", refuse, raising=False)
    with pytest.raises(CaptureFileError, match="permission denied") as info:
        PcapSource(path)
    check_one_line(info.value, path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)
    with pytest.raises(CaptureFileError, match="regular file") as info:
        PcapSource(fifo)
    check_one_line(info.value, fifo)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.pcap", b"")
    with pytest.raises(CaptureFileError, match="empty") as info:
        PcapSource(path)
    check_one_line(info.value, path)


def test_empty_gzip(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.pcap.gz", gzip.compress(b""))
    with pytest.raises(CaptureFileError, match="empty"):
        PcapSource(path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "unknown magic"),
        (bz2.compress(b"x" * 100), "bzip2"),
        (b"\x01\x02", "too short"),
    ],
)
def test_wrong_magic_says_what_is_supported(tmp_path: Path, content: bytes, needle: str) -> None:
    path = write(tmp_path, "not.pcap", content)
    with pytest.raises(CaptureFileError, match=needle) as info:
        PcapSource(path)
    check_one_line(info.value, path)
    if needle != "too short":
        assert "pcapng" in info.value.reason and "gzip" in info.value.reason


def test_truncated_global_header(tmp_path: Path) -> None:
    path = write(tmp_path, "hdr.pcap", pcap_bytes([])[:10])
    with pytest.raises(CaptureFileError, match="header"):
        PcapSource(path)


def collect_until_error(
    path: Path, **kwargs: int
) -> tuple[list[RawFrame], CaptureFileError | None]:
    got: list[RawFrame] = []
    with PcapSource(path, **kwargs) as source:
        try:
            for frame in source:
                got.append(frame)
        except CaptureFileError as exc:
            return got, exc
    return got, None


@pytest.mark.parametrize("cut_into_record", [5, 16 + 10])  # inside the header, inside the data
def test_truncated_mid_record(tmp_path: Path, cut_into_record: int) -> None:
    records = sample_records(3)  # data lengths 60, 70, 80
    data = pcap_bytes(records)
    third = 24 + (16 + 60) + (16 + 70)
    path = write(tmp_path, "cut.pcap", data[: third + cut_into_record])
    got, exc = collect_until_error(path)
    assert [f.data for f in got] == [records[0][2], records[1][2]]
    assert exc is not None
    check_one_line(exc, path)
    assert exc.offset == third
    assert str(exc).endswith(f"at byte offset {third}")


def test_every_cut_point_of_a_pcap(tmp_path: Path) -> None:
    records = sample_records(4)
    data = pcap_bytes(records)
    ends = [24]
    for _sec, _frac, payload, _wire in records:
        ends.append(ends[-1] + 16 + len(payload))
    for cut in range(24, len(data) + 1):
        path = write(tmp_path, "c.pcap", data[:cut])
        got, exc = collect_until_error(path, read_size=13)
        whole = sum(1 for end in ends[1:] if end <= cut)
        assert len(got) == whole, cut
        if cut in ends:
            assert exc is None
        else:
            assert exc is not None and exc.offset == ends[whole], cut


def test_every_cut_point_of_a_pcapng(tmp_path: Path) -> None:
    blocks = [shb(), idb(1), epb(0, 1, b"a" * 21), spb(b"b" * 9), epb(0, 2, b"c" * 4)]
    data = b"".join(blocks)
    ends = [0]
    for blk in blocks:
        ends.append(ends[-1] + len(blk))
    packet_ends = ends[3:]
    for cut in range(len(blocks[0]), len(data) + 1):
        path = write(tmp_path, "c.pcapng", data[:cut])
        got, exc = collect_until_error(path, read_size=11)
        assert len(got) == sum(1 for end in packet_ends if end <= cut), cut
        if cut in ends:
            assert exc is None
        else:
            assert exc is not None and exc.offset == max(e for e in ends if e <= cut), cut


def test_absurd_caplen(tmp_path: Path) -> None:
    records = sample_records(2)
    data = bytearray(pcap_bytes(records))
    second = 24 + 16 + 60
    struct.pack_into("<I", data, second + 8, 300_000)
    path = write(tmp_path, "big.pcap", bytes(data))
    got, exc = collect_until_error(path)
    assert len(got) == 1
    assert exc is not None and exc.offset == second and "300000" in exc.reason


def test_caplen_above_a_small_header_snaplen_is_tolerated(tmp_path: Path) -> None:
    # dpkt writes snaplen 1500 by default and still stores longer frames; libpcap reads them.
    record = (T0, 0, b"j" * 9000, 9000)
    path = write(tmp_path, "jumbo.pcap", pcap_bytes([record], snaplen=1500))
    assert [f.data for f in frames_of(path)] == [record[2]]
    huge = (T0, 0, b"j" * 70_000, 70_000)
    path = write(tmp_path, "huge.pcap", pcap_bytes([huge], snaplen=1500))
    assert collect_until_error(path)[1] is not None
    path = write(tmp_path, "tso.pcap", pcap_bytes([huge], snaplen=262144))
    assert len(frames_of(path)) == 1


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("length_not_multiple_of_4", "block length"),
        ("trailer_mismatch", "trailer"),
        ("undeclared_interface", "interface"),
        ("caplen_beyond_block", "captured bytes"),
    ],
)
def test_pcapng_damage(tmp_path: Path, damage: str, reason: str) -> None:
    good = shb() + idb(1) + epb(0, 1, b"g" * 8)
    bad = bytearray(epb(0, 2, b"b" * 8))
    if damage == "length_not_multiple_of_4":
        struct.pack_into("<I", bad, 4, 37)
    elif damage == "trailer_mismatch":
        struct.pack_into("<I", bad, len(bad) - 4, 36)
    elif damage == "undeclared_interface":
        struct.pack_into("<I", bad, 8, 3)
    else:
        struct.pack_into("<I", bad, 20, 64)
    path = write(tmp_path, "bad.pcapng", good + bytes(bad) + epb(0, 3, b"after"))
    got, exc = collect_until_error(path)
    assert [f.data for f in got] == [b"g" * 8]
    assert exc is not None and exc.offset == len(good)
    assert reason in exc.reason


def test_pcapng_bad_byte_order_mark(tmp_path: Path) -> None:
    data = bytearray(shb())
    data[8:12] = b"\0\0\0\0"
    with pytest.raises(CaptureFileError, match="byte-order"):
        PcapSource(write(tmp_path, "bom.pcapng", bytes(data)))


def test_truncated_gzip_yields_a_prefix_then_fails(tmp_path: Path) -> None:
    rng = random.Random(2)
    records = [(T0, i, rng.randbytes(500), 500) for i in range(400)]
    raw = pcap_bytes(records)
    compressed = gzip.compress(raw)
    path = write(tmp_path, "cut.pcap.gz", compressed[: len(compressed) // 2])
    got, exc = collect_until_error(path, read_size=4096)
    assert exc is not None and "gzip" in exc.reason
    assert 0 < len(got) < len(records)
    assert [f.data for f in got] == [r[2] for r in records[: len(got)]]
    assert exc.offset == 24 + len(got) * (16 + 500)  # the first record not delivered


def test_corrupt_gzip_data(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(pcap_bytes(sample_records(50))))
    for i in range(40, len(compressed) - 20):
        compressed[i] ^= 0x5A
    path = write(tmp_path, "bad.pcap.gz", bytes(compressed))
    try:
        frames_of(path)
    except CaptureFileError as exc:
        check_one_line(exc, path)
    else:  # pragma: no cover - zlib always notices this much damage
        pytest.fail("corrupt gzip data went unnoticed")


def test_random_corruption_never_raises_anything_else(tmp_path: Path) -> None:
    rng = random.Random(3)
    data, _expected = pcapng_two_sections()
    originals = [pcap_bytes(sample_records(20)), data]
    path = tmp_path / "fuzz"
    for i in range(300):
        mutated = bytearray(originals[i % 2])
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        path.write_bytes(bytes(mutated))
        try:
            frames_of(path, read_size=rng.choice([16, 4096]))
        except CaptureFileError as exc:
            assert "\n" not in str(exc)


# ------------------------------------------------------------------------ API


def test_context_manager_closes_and_iteration_is_single_pass(tmp_path: Path) -> None:
    path = write(tmp_path, "x.pcap", pcap_bytes(sample_records(3)))
    source = PcapSource(path)
    first = list(source)
    assert len(first) == 3
    assert list(source) == []  # a single pass: the file is not re-read
    source.close()
    source.close()  # idempotent
    with PcapSource(path) as again:
        started = iter(again)
        next(started)
    assert list(started) == []  # closing ends an iteration in progress
    with pytest.raises(CaptureError):
        iter(again)  # iterating a closed source is caller misuse


def test_invalid_read_size(tmp_path: Path) -> None:
    path = write(tmp_path, "x.pcap", pcap_bytes(sample_records(1)))
    with pytest.raises(CaptureError):
        PcapSource(path, read_size=0)
