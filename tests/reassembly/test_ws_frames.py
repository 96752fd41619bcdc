"""WebSocket deframing (RFC 6455) and HTTP carried inside a WebSocket after a 101 upgrade."""

from __future__ import annotations

import struct

import pytest
from test_http_script import run

from mirrorscope.reassembly.ws_frames import WebSocketDeframer

KEY = b"\x37\xfa\x21\x3d"


def frame(payload: bytes, *, opcode: int = 2, fin: bool = True, key: bytes | None = None,
          rsv: int = 0) -> bytes:
    """Build one frame by hand (RFC 6455 5.2), independently of the code under test."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    mask_bit = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([first, mask_bit | n])
    elif n < 1 << 16:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def feed_bytewise(deframer: WebSocketDeframer, wire: bytes) -> bytes:
    return b"".join(deframer.feed(wire[i : i + 1]) for i in range(len(wire)))


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 70000])
def test_lengths_7_16_64_bit_with_masking(size: int) -> None:
    payload = bytes(range(256)) * (size // 256 + 1)
    payload = payload[:size]
    wire = frame(payload, key=KEY) + frame(b"tail", key=KEY)
    deframer = WebSocketDeframer(from_client=True)
    assert deframer.feed(wire) == payload + b"tail"
    assert deframer.problems == [] and not deframer.dead


def test_byte_by_byte_delivery_gives_the_same_stream() -> None:
    wire = frame(b"GET / HTTP/1.1\r\n", key=KEY) + frame(b"Host: a\r\n\r\n", key=KEY)
    assert feed_bytewise(WebSocketDeframer(True), wire) == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_fragments_join_and_control_frames_in_between_are_skipped() -> None:
    wire = (frame(b"hel", opcode=1, fin=False) + frame(b"", opcode=9)  # ping
            + frame(b"lo", opcode=0, fin=False) + frame(b"pong", opcode=10)
            + frame(b"!", opcode=0))
    deframer = WebSocketDeframer(from_client=False)
    assert deframer.feed(wire) == b"hello!"
    assert deframer.problems == []


def test_close_frame_ends_the_stream() -> None:
    deframer = WebSocketDeframer(from_client=False)
    wire = frame(b"a") + frame(b"\x03\xe8", opcode=8) + frame(b"after close")
    assert deframer.feed(wire) == b"a"
    assert deframer.dead


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        (frame(b"x", rsv=4), "reserved bits"),  # RSV1: permessage-deflate, not followed
        (frame(b"x", opcode=3), "reserved opcode"),
        (frame(b"x", opcode=0), "continuation frame without"),
        (frame(b"a", opcode=1, fin=False) + frame(b"b", opcode=2), "inside a fragmented"),
        (frame(b"p" * 126, opcode=9), "control frame"),
        (frame(b"p", opcode=9, fin=False), "control frame"),
        (bytes([0x82, 127]) + b"\x80" + b"\x00" * 7, "64-bit frame length"),
    ],
)
def test_protocol_errors_stop_decoding(wire: bytes, problem: str) -> None:
    deframer = WebSocketDeframer(from_client=False)
    deframer.feed(wire + frame(b"more"))
    assert deframer.dead
    assert any(problem in p for p in deframer.problems)


def test_unmasked_client_frame_is_noted_once_and_decoded() -> None:
    deframer = WebSocketDeframer(from_client=True)
    assert deframer.feed(frame(b"ab") + frame(b"cd")) == b"abcd"
    assert deframer.problems == ["unmasked client frame"]
    assert not deframer.dead


def test_gap_stops_decoding() -> None:
    deframer = WebSocketDeframer(from_client=False)
    deframer.gap()
    assert deframer.dead and deframer.feed(frame(b"x")) == b""


UPGRADE = (b"GET /v1/events HTTP/1.1\r\nHost: localhost:8888\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
INNER_GET = b"GET / HTTP/1.1\r\nHost: zeek.org\r\n\r\n"
INNER_301 = b"HTTP/1.1 301 Moved Permanently\r\nContent-Length: 5\r\n\r\nmoved"


def _pairs(result: object) -> list[tuple[str, str, int]]:
    return [(t.request.method, t.request.target, t.response.status)
            for t in result.by_depth() if t.request and t.response]


def test_http_inside_websocket_is_parsed() -> None:
    # wstunnel: HTTP carried in binary frames (Zeek's WebSocket analyzer finds it too).
    steps = [
        (">", UPGRADE),
        ("<", SWITCHED),
        (">", frame(INNER_GET[:10], key=KEY) + frame(INNER_GET[10:], key=KEY)),
        ("<", frame(INNER_301[:20]) + frame(INNER_301[20:])),
    ]
    result = run(steps)
    assert _pairs(result) == [("GET", "/v1/events", 101), ("GET", "/", 301)]
    inner = result.by_depth()[1]
    assert inner.response is not None and inner.response.body.head == b"moved"
    assert result.observer.stats.inner_http_tunnels == 1


def test_frames_sent_before_the_101_are_kept_for_the_tunnel() -> None:
    steps = [(">", UPGRADE + frame(INNER_GET, key=KEY)),
             ("<", SWITCHED + frame(INNER_301))]  # fmt: skip
    assert _pairs(run(steps)) == [("GET", "/v1/events", 101), ("GET", "/", 301)]


def test_websocket_with_json_messages_is_not_http() -> None:
    steps = [
        (">", UPGRADE),
        ("<", SWITCHED + frame(b'{"hello": 1}', opcode=1)),
        (">", frame(b'{"subscribe": "x"}', opcode=1, key=KEY)),
    ]
    result = run(steps)
    assert _pairs(result) == [("GET", "/v1/events", 101)]
    assert result.observer.stats.inner_http_tunnels == 0


def test_upgrade_to_another_protocol_is_not_deframed() -> None:
    steps = [
        (">", UPGRADE.replace(b"websocket", b"foo")),
        ("<", SWITCHED.replace(b"websocket", b"foo") + frame(INNER_301)),
        (">", frame(INNER_GET)),
    ]
    assert _pairs(run(steps)) == [("GET", "/v1/events", 101)]
