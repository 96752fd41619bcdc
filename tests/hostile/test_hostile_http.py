"""Checklist B cases through the whole pipeline: bombs and oversized heads arrive as frames."""

from __future__ import annotations

import sys
import tracemalloc
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_frames import Conversation, anomaly_kinds, run

DECODE_CAP = 8 << 20  # HttpObserver's default decode_max_output


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def _bomb_response(body: bytes, coding: str) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def _fetch(response: bytes) -> Conversation:
    conv = Conversation().handshake()
    conv.send(0, b"GET /bomb HTTP/1.1\r\nHost: h\r\n\r\n").send(1, response)
    conv.send(0, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    return conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()


def test_b14_gzip_bomb_stops_at_the_output_cap_in_bounded_memory() -> None:
    bomb = _gzip(bytes(64 << 20))  # 64 MiB of zeros in about 64 KiB
    conv = _fetch(_bomb_response(bomb, "gzip"))
    tracemalloc.start()
    try:
        txs, _ = run(conv.frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [t.request.target for t in txs if t.request] == ["/bomb", "/after"]
    body = txs[0].response.body  # type: ignore[union-attr]
    assert body.wire_length == len(bomb)
    assert body.length <= DECODE_CAP
    assert {"http.decompress_capped", "http.decompression_bomb"} & set(txs[0].anomalies)
    assert txs[1].response is not None and txs[1].response.body.head == b"ok"
    assert peak < DECODE_CAP + (16 << 20)


def test_b14_nested_gzip_layers_are_capped_too() -> None:
    bomb = _gzip(_gzip(_gzip(bytes(32 << 20))))
    txs, _ = run(_fetch(_bomb_response(bomb, "gzip, gzip, gzip")).frames)
    body = txs[0].response.body  # type: ignore[union-attr]
    assert body.length <= DECODE_CAP
    assert {"http.decompress_capped", "http.decompression_bomb",
            "http.too_many_encoding_layers"} & set(txs[0].anomalies)
    assert txs[1].request is not None and txs[1].request.target == "/after"


def test_b14_corrupt_gzip_is_flagged_and_the_next_transaction_survives() -> None:
    good = _gzip(b"hello world" * 100)
    corrupt = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    txs, _ = run(_fetch(_bomb_response(corrupt, "gzip")).frames)
    assert "http.decompress_failed" in txs[0].anomalies
    assert txs[0].response is not None and txs[0].response.body.wire_length == len(corrupt)
    assert txs[1].response is not None and txs[1].response.body.head == b"ok"


def test_b15_hundred_thousand_headers_are_capped_and_parsing_goes_on() -> None:
    head = b"GET /big HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 100_000 + b"\r\n"
    conv = Conversation().handshake().send(0, head)
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    conv.send(0, b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
    txs, other = run(conv.frames)
    kinds = anomaly_kinds(other) | {k for t in txs for k in t.anomalies}
    assert kinds & {"http.too_many_headers", "http.header_too_long"}
    targets = [t.request.target for t in txs if t.request]
    assert targets[-1] == "/next"
    assert "/big" not in targets[1:]  # the capped head is never parsed twice


def test_b15_ten_mib_header_line_is_flagged_not_kept() -> None:
    head = b"GET /long HTTP/1.1\r\nHost: h\r\nX-Long: " + b"a" * (10 << 20) + b"\r\n\r\n"
    conv = Conversation().handshake().send(0, head, mss=8960)
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
    tracemalloc.start()
    try:
        txs, other = run(conv.frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kinds = anomaly_kinds(other) | {k for t in txs for k in t.anomalies}
    assert kinds & {"http.line_too_long", "http.header_too_long"}
    for tx in txs:
        if tx.request is not None:
            assert all(len(v) <= 64 << 10 for _, v in tx.request.headers)
    # The frames themselves hold 10 MiB; parsing must not hold another copy or two.
    assert peak < 8 << 20


def test_b15_request_line_of_one_mib_without_crlf_invents_nothing() -> None:
    conv = Conversation().handshake().send(0, b"GET /" + b"a" * (1 << 20), mss=8960).close()
    txs, other = run(conv.frames)
    assert "http.line_too_long" in anomaly_kinds(other) | {k for t in txs for k in t.anomalies}
    assert all(t.response is None for t in txs)
    assert all(t.request is None or len(t.request.target) <= 64 << 10 for t in txs)


def test_b7_five_hundred_pipelined_requests_flush_the_oldest_beyond_the_cap() -> None:
    requests = b"".join(f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(500))
    conv = Conversation().handshake().send(0, requests)
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" * 500).close()
    txs, other = run(conv.frames)
    targets = [t.request.target for t in txs if t.request]
    assert sorted(targets, key=lambda s: int(s[1:])) == [f"/{i}" for i in range(500)]
    kinds = anomaly_kinds(other) | {k for t in txs for k in t.anomalies}
    assert "http.excessive_pipelining" in kinds
    assert any(t.response is None for t in txs)  # flushed as unanswered, never mispaired
    for tx in txs:
        if tx.request is not None and tx.response is not None:
            assert tx.response.status == 200
