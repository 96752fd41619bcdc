"""Content decoding: gzip, deflate (zlib and raw), brotli, nesting, bombs, corruption (B14)."""

from __future__ import annotations

import gzip
import hashlib
import zlib

import brotli
import pytest
from test_http_script import GET, run

from mirrorscope.reassembly.http1 import HttpObserver
from mirrorscope.reassembly.http_decode import BodyDecoder, parse_codings

TEXT = b'{"customer": "alice", "card": "4111111111111111"}\n' * 20


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _decode(codings: list[str], data: bytes, piece: int = 7, **caps: int) -> tuple[bytes, list]:
    out: list[bytes] = []
    notes: list[tuple[str, str]] = []
    dec = BodyDecoder(codings, emit=out.append, report=lambda k, d: notes.append((k, d)), **caps)
    for i in range(0, len(data), piece):
        dec.feed(data[i : i + piece])
    dec.finish()
    return b"".join(out), notes


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", _raw_deflate(TEXT)),
        ("br", brotli.compress(TEXT)),
    ],
)
def test_single_layer_decodes_in_small_pieces(coding: str, encoded: bytes) -> None:
    out, notes = _decode([coding], encoded)
    assert out == TEXT
    assert notes == []


def test_nested_layers_are_undone_last_first() -> None:
    encoded = brotli.compress(zlib.compress(gzip.compress(TEXT)))  # gzip, deflate, br
    out, notes = _decode(["gzip", "deflate", "br"], encoded)
    assert out == TEXT and notes == []


def test_too_many_layers_decodes_the_outer_ones() -> None:
    encoded = gzip.compress(gzip.compress(gzip.compress(gzip.compress(TEXT))))
    out, notes = _decode(["gzip"] * 4, encoded, max_layers=3)
    assert out == gzip.compress(TEXT) or out.startswith(b"\x1f\x8b")
    assert "http.too_many_encoding_layers" in {k for k, _ in notes}


def test_gzip_bomb_stops_at_ratio() -> None:
    bomb = gzip.compress(b"\x00" * (64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    out, notes = _decode(["gzip"], bomb, piece=4096, max_output=64 << 20, max_ratio=100)
    kinds = {k for k, _ in notes}
    assert "http.decompression_bomb" in kinds
    assert len(out) < (64 << 20)


def test_output_cap_truncates() -> None:
    out, notes = _decode(["gzip"], gzip.compress(b"a" * 100_000), piece=1000, max_output=10_000)
    assert out == b"a" * 10_000
    assert "http.decompress_capped" in {k for k, _ in notes}


def test_corrupt_gzip_falls_back_to_raw_bytes() -> None:
    data = b"\x1f\x8b\x08\x00" + b"\xff" * 40
    out, notes = _decode(["gzip"], data)
    assert "http.decompress_failed" in {k for k, _ in notes}
    assert out == data  # nothing decoded: the raw bytes are the body


def test_declared_gzip_but_plain_text_passes_through() -> None:
    out, notes = _decode(["gzip"], b"plain text, not compressed")
    assert out == b"plain text, not compressed"
    assert "http.decompress_failed" in {k for k, _ in notes}


def test_truncated_gzip_keeps_what_decoded() -> None:
    encoded = gzip.compress(TEXT)
    out, notes = _decode(["gzip"], encoded[: len(encoded) - 8])  # trailer cut
    assert out == TEXT
    assert "http.decompress_incomplete" in {k for k, _ in notes}


def test_gzip_reserved_flag_and_bad_trailer_still_decode() -> None:
    encoded = bytearray(gzip.compress(TEXT, mtime=0))
    encoded[3] |= 0x20  # reserved FLG bit: zlib refuses it, browsers do not
    encoded[-8] ^= 0xFF  # wrong CRC32
    out, notes = _decode(["gzip"], bytes(encoded))
    assert out == TEXT
    assert "http.decompress_checksum" in {k for k, _ in notes}


def test_concatenated_gzip_members() -> None:
    out, _ = _decode(["gzip"], gzip.compress(b"part one, ") + gzip.compress(b"part two"))
    assert out == b"part one, part two"


def test_parse_codings() -> None:
    assert parse_codings(["gzip"]) == (["gzip"], [])
    assert parse_codings(["x-gzip, identity", "deflate"]) == (["gzip", "deflate"], [])
    assert parse_codings(["br,"]) == (["br"], [])
    # An unknown coding blocks the layers below it; names that still say gzip count.
    assert parse_codings(["compress, gzip"]) == (["gzip"], ["compress"])
    assert parse_codings(["gz\x00ip"]) == (["gzip"], [])
    assert parse_codings(["gzip_x"]) == (["gzip"], ["gzip_x"])


# ------------------------------------------------------------------- through the observer


def _response(headers: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize(
    ("header", "encoded"),
    [
        (b"Content-Encoding: gzip\r\n", gzip.compress(TEXT)),
        (b"Content-Encoding: x-gzip\r\n", gzip.compress(TEXT)),
        (b"Content-Encoding: deflate\r\n", zlib.compress(TEXT)),
        (b"Content-Encoding: deflate\r\n", _raw_deflate(TEXT)),
        (b"Content-Encoding: br\r\n", brotli.compress(TEXT)),
        (b"Content-Encoding: gzip, br\r\n", brotli.compress(gzip.compress(TEXT))),
        (
            b"Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
            gzip.compress(gzip.compress(TEXT)),
        ),
    ],
)
def test_observer_decodes_response_bodies(header: bytes, encoded: bytes) -> None:
    [tx] = run([(">", GET), ("<", _response(header, encoded))]).transactions
    assert tx.response is not None
    body = tx.response.body
    assert body.head == TEXT and body.length == len(TEXT)
    assert body.wire_length == len(encoded)
    assert body.sha256 == hashlib.sha256(TEXT).hexdigest()
    assert body.complete


def test_observer_decodes_chunked_then_gzip() -> None:
    enc = gzip.compress(TEXT)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(enc[i : i + 50]), enc[i : i + 50]) for i in range(0, len(enc), 50)
    )
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    [tx] = run([(">", GET), ("<", resp + chunks + b"0\r\n\r\n")]).transactions
    assert tx.response is not None and tx.response.body.head == TEXT


def test_observer_decodes_transfer_encoding_gzip() -> None:
    enc = gzip.compress(TEXT)
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    resp += b"%x\r\n" % len(enc) + enc + b"\r\n0\r\n\r\n"
    [tx] = run([(">", GET), ("<", resp)]).transactions
    assert tx.response is not None and tx.response.body.head == TEXT


def test_observer_gzip_bomb_flagged_and_bounded() -> None:
    bomb = gzip.compress(b"\x00" * (32 << 20), compresslevel=9)  # ratio about 1000
    observer = HttpObserver(decode_max_output=64 << 20, decode_max_ratio=500)
    result = run(
        [(">", GET), ("<", _response(b"Content-Encoding: gzip\r\n", bomb))], observer=observer
    )
    [tx] = result.transactions
    assert "http.decompression_bomb" in tx.anomalies
    assert tx.response is not None
    assert tx.response.body.complete is False and tx.response.body.sha256 is None
    assert tx.response.body.length < (32 << 20)
    assert observer.stats.decompression_bombs == 1


def test_observer_corrupt_gzip_keeps_raw_body() -> None:
    junk = b"\x1f\x8b\x08\x00not really gzip at all"
    [tx] = run([(">", GET), ("<", _response(b"Content-Encoding: gzip\r\n", junk))]).transactions
    assert tx.response is not None and tx.response.body.head == junk
    assert "http.decompress_failed" in tx.anomalies


def test_observer_unknown_encoding_is_left_alone() -> None:
    result = run([(">", GET), ("<", _response(b"Content-Encoding: compress\r\n", b"LZW?"))])
    [tx] = result.transactions
    assert tx.response is not None and tx.response.body.head == b"LZW?"
    assert "http.unknown_content_encoding" in tx.anomalies


def test_observer_decodes_request_bodies() -> None:
    enc = gzip.compress(TEXT)
    req = b"POST /up HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(enc)
    [tx] = run([(">", req + enc), ("<", b"HTTP/1.1 204 OK\r\n\r\n")]).transactions
    assert tx.request is not None and tx.request.body.head == TEXT
    assert tx.request.body.wire_length == len(enc)


def test_gap_stops_decoding() -> None:
    enc = gzip.compress(bytes(range(256)) * 64)
    resp = _response(b"Content-Encoding: gzip\r\n", b"")[: -0 or None]
    head = resp.replace(b"Content-Length: 0", b"Content-Length: %d" % len(enc))
    steps = [(">", GET), ("<", head + enc[:100]), ("<gap", 50), ("<", enc[150:])]
    [tx] = run(steps).transactions
    assert tx.response is not None and tx.response.body.complete is False
