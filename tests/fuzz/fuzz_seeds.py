"""Seed inputs for the fuzz targets: hand-written HTTP exchanges and real captures' streams."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from fuzz_targets import CTL_CLOSE, CTL_GAP, CTL_RESP, LINKTYPES, MAGIC, MAX_CHUNKS, join_chunks

from mirrorscope.capture.decode import Decoder
from mirrorscope.capture.pcapfile import CaptureFileError, PcapSource
from mirrorscope.model import Direction, Segment, StreamData, StreamGap
from mirrorscope.reassembly.tcp import TcpReassembler

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus"

# Two-sided exchanges covering the framing paths the parser has: (direction, bytes).
_EXCHANGES: list[list[tuple[int, bytes]]] = [
    [(0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
     (1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")],
    [(0, b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
     (1, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")],
    [(0, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
         b"HEAD /c HTTP/1.1\r\nHost: a\r\n\r\n"),
     (1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
         b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
         b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")],
    [(0, b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
     (1, b"HTTP/1.1 100 Continue\r\n\r\n"), (0, b"data"),
     (1, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 23\r\n\r\n"
         b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106\x05"
         b"\x00\x00\x00")],
    [(0, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     (1, b"HTTP/1.1 200 Connection established\r\n\r\n"), (0, b"\x16\x03\x01\x02\x00\x01")],
    [(0, b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
     (1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")],
    [(0, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
         b"\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
     (1, b"HTTP/1.0 200 OK\r\n\r\nbody until close")],
    [(0, b"GET /\r\n"), (1, b"<html>0.9</html>")],
]


def builtin_stream_seeds() -> list[bytes]:
    """Hand-written exchanges, each also with a gap marker in the response."""
    seeds = []
    for exchange in _EXCHANGES:
        chunks = [(CTL_RESP if d else 0, data) for d, data in exchange]
        seeds.append(join_chunks(chunks))
        gapped = list(chunks)
        gapped.insert(len(gapped) // 2, (CTL_RESP | CTL_GAP, b"\x00\x07"))
        seeds.append(join_chunks(gapped))
    return seeds


def pcap_paths(include_corpus: bool, limit: int, rng: random.Random) -> list[Path]:
    """The repo's crafted pcaps, plus up to ``limit`` small corpus pcaps when asked."""
    paths = sorted((REPO / "pcaps").rglob("*.pcap"))
    if include_corpus and CORPUS.is_dir():
        found = [p for p in sorted(CORPUS.rglob("*.pcap*"))
                 if p.suffix in (".pcap", ".pcapng") and p.stat().st_size < 200_000]
        rng.shuffle(found)
        paths += found[:limit]
    return paths


def seeds_from_pcap(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(stream seeds, packet seeds) from one capture; empty when it cannot be read."""
    frames = []
    try:
        with PcapSource(path) as source:
            for frame in source:
                frames.append(frame)
                if len(frames) >= 4000:
                    break
    except (CaptureFileError, OSError):
        return [], []
    packet_seeds = []
    chunks: list[tuple[int, bytes]] = []
    for frame in frames:
        if frame.linktype not in LINKTYPES or MAGIC in frame.data or len(frame.data) > 2000:
            continue
        # High nibble 4 keeps the clock still; low bits select the link type.
        chunks.append((0x40 | LINKTYPES.index(frame.linktype), frame.data))
        if len(chunks) == MAX_CHUNKS:
            packet_seeds.append(join_chunks(chunks))
            chunks = []
            if len(packet_seeds) >= 4:
                break
    if chunks:
        packet_seeds.append(join_chunks(chunks))

    decoder = Decoder()
    tcp = TcpReassembler()
    streams: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    events = []
    for frame in frames:
        for item in decoder.feed(frame):
            if type(item) is Segment:
                events += tcp.feed(item)
    events += tcp.flush(frames[-1].ts if frames else 0.0)
    for event in events:
        if type(event) is StreamData:
            ctl = CTL_RESP if event.direction == Direction.RESP else 0
            streams[event.conn_id].append((ctl, event.data))
        elif type(event) is StreamGap:
            ctl = (CTL_RESP if event.direction == Direction.RESP else 0) | CTL_GAP
            length = min(event.length - 1, 0xFFFF) if event.length > 0 else 0
            streams[event.conn_id].append((ctl, length.to_bytes(2, "big")))
    stream_seeds = []
    for chunks_of_conn in list(streams.values())[:8]:
        chunks_of_conn = [(c, p) for c, p in chunks_of_conn if MAGIC not in p][:MAX_CHUNKS]
        if chunks_of_conn:
            last_ctl, last = chunks_of_conn[-1]
            chunks_of_conn[-1] = (last_ctl | CTL_CLOSE, last)
            stream_seeds.append(join_chunks(chunks_of_conn))
    return stream_seeds, packet_seeds


def load_seeds(include_corpus: bool, limit: int, rng: random.Random) -> dict[str, list[bytes]]:
    """Seeds per target name."""
    out: dict[str, list[bytes]] = {"stream": builtin_stream_seeds(), "packet": []}
    for path in pcap_paths(include_corpus, limit, rng):
        stream_seeds, packet_seeds = seeds_from_pcap(path)
        out["stream"] += stream_seeds
        out["packet"] += packet_seeds
    return out
