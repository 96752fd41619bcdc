"""Checklist A cases through the whole pipeline (frames -> decode -> TCP -> HTTP).

The TCP stage's own tests (tests/reassembly/test_tcp.py) cover these at the segment level;
here the same hostile shapes arrive as captured frames, so the decoder, the reassembler,
the observer and the pipeline's packet-time expiry all take part.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_frames import Conversation, anomaly_kinds, run

from mirrorscope.model import RawFrame, StreamClosed

REQ = b"GET /a HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _exchange(**kw: object) -> Conversation:
    conv = Conversation(**kw).handshake()  # type: ignore[arg-type]
    return conv.send(0, REQ).send(1, RESP).close()


def test_a15_two_hundred_headers_in_one_byte_segments() -> None:
    names = [f"X-Header-{i:03d}" for i in range(200)]
    head = b"GET /many HTTP/1.1\r\nHost: h\r\n" + b"".join(
        f"{n}: value-{i}\r\n".encode() for i, n in enumerate(names)) + b"\r\n"
    conv = Conversation().handshake().send(0, head, mss=1).send(1, RESP, mss=1).close()
    txs, _ = run(conv.frames)
    assert len(txs) == 1
    req = txs[0].request
    assert req is not None and req.target == "/many"
    got = [k for k, _ in req.headers]
    assert got == ["Host", *names]
    assert dict(req.headers)["X-Header-199"] == "value-199"
    assert txs[0].response is not None and txs[0].response.body.head == b"hello"


def test_a17_snaplen_cut_body_is_a_gap_never_zero_filled() -> None:
    snaplen = 96  # 54 header bytes + 42 payload bytes survive per frame
    body = b"A" * 3000
    conv = Conversation().handshake().send(0, REQ)
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n")
    conv.send(1, body, mss=1400).close()
    cut = [RawFrame(f.ts, f.linktype, f.data[:snaplen], len(f.data)) for f in conv.frames]
    txs, _ = run(cut)
    assert len(txs) == 1
    resp = txs[0].response
    assert resp is not None and resp.status == 200
    seen = 42 * 3  # three body segments (1400, 1400, 200 bytes), 42 captured of each
    assert resp.body.length == seen
    assert resp.body.missed == 3000 - seen
    assert not resp.body.complete and resp.body.sha256 is None
    assert set(resp.body.head) == {ord("A")}  # no zero bytes standing in for the lost ones


def test_a18_timestamps_back_by_an_hour_cause_no_mass_timeout() -> None:
    first = _exchange()
    second = _exchange(client=("10.0.0.3", 40001), ts=first.ts + 1.0)
    # The second connection's packets claim to be an hour older than the first's.
    skewed = [RawFrame(f.ts - 3600.0, f.linktype, f.data, f.wire_len) for f in second.frames]
    # Interleave so the clock jumps back and forth while both flows are open.
    frames = first.frames[:4] + skewed[:4] + first.frames[4:] + skewed[4:]
    txs, other = run(frames)
    assert sorted(t.client[0] for t in txs) == ["10.0.0.1", "10.0.0.3"]
    assert all(t.response is not None and t.response.body.head == b"hello" for t in txs)
    assert not any(isinstance(e, StreamClosed) and e.reason == "timeout" for e in other)


def test_a18_one_flow_jumping_back_an_hour_is_flagged_and_intact() -> None:
    conv = _exchange()
    half = len(conv.frames) // 2
    frames = conv.frames[:half] + [RawFrame(f.ts - 3600.0, f.linktype, f.data, f.wire_len)
                                   for f in conv.frames[half:]]
    txs, other = run(frames)
    assert len(txs) == 1 and txs[0].response is not None
    assert txs[0].response.body.head == b"hello"
    assert "tcp.clock_skew" in anomaly_kinds(other)
    assert not any(isinstance(e, StreamClosed) and e.reason == "timeout" for e in other)


def test_a6_bad_checksums_on_a_tenth_of_segments_lose_nothing() -> None:
    # Policy: checksums are not validated (Suricata -k none; offload is common on SPAN).
    rng = random.Random(6)
    conv = Conversation().handshake()
    for i in range(10):
        conv.send(0, f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode(),
                  bad_checksum=rng.random() < 0.1)
        conv.send(1, RESP, bad_checksum=rng.random() < 0.1)
    conv.close()
    txs, _ = run(conv.frames)
    assert [t.request.target for t in txs if t.request] == [f"/{i}" for i in range(10)]
    assert all(t.response is not None and t.response.status == 200 for t in txs)


def _one_sided() -> Conversation:
    conv = Conversation().handshake()
    conv.send(0, b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n")
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # HEAD: no body follows
    conv.send(0, REQ).send(1, RESP)
    conv.send(0, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n").send(1, RESP)
    return conv.close()


def test_a9_requests_only_capture_keeps_every_request() -> None:
    conv = _one_sided()
    client_frames = [f for f in conv.frames if f.data[26:30] == bytes([10, 0, 0, 1])]
    txs, _ = run(client_frames)
    assert [(t.request.method, t.request.target) for t in txs if t.request] == [
        ("HEAD", "/h"), ("GET", "/a"), ("GET", "/b")]
    assert all(t.response is None for t in txs)


def test_a9_responses_only_capture_invents_no_request() -> None:
    conv = _one_sided()
    server_frames = [f for f in conv.frames if f.data[26:30] == bytes([10, 0, 0, 2])]
    txs, _ = run(server_frames)
    assert all(t.request is None for t in txs)
    assert len(txs) <= 3


def test_a12_huge_scaled_windows_do_not_affect_acceptance() -> None:
    conv = Conversation()
    wscale = b"\x03\x03\x0e"  # window scale 14: 65535 << 14 = 1 GiB windows
    conv._emit(0, 0x02, options=wscale)
    conv.seq[0] += 1
    conv._emit(1, 0x12, options=wscale)
    conv.seq[1] += 1
    conv.send(0, REQ, window=65535).send(1, RESP, window=65535).close()
    txs, _ = run(conv.frames)
    assert len(txs) == 1 and txs[0].response is not None
    assert txs[0].response.body.head == b"hello"


def test_a12_missing_syn_with_huge_window_is_a_partial_pickup() -> None:
    conv = Conversation().handshake()
    conv.send(0, REQ, window=65535).send(1, RESP, window=65535).close()
    txs, _ = run(conv.frames[3:])  # capture starts after the handshake
    assert len(txs) == 1 and txs[0].partial
    assert txs[0].request is not None and txs[0].request.target == "/a"
