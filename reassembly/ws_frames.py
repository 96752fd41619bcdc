"""WebSocket (RFC 6455) deframing for one direction of an upgraded connection.

After a 101 upgrade to WebSocket the HTTP observer may find HTTP carried inside the
frames (wstunnel and similar tools), as Zeek's WebSocket analyzer does.  This module only
turns wire bytes into the payload stream: the payloads of text and binary data frames
(and their continuation frames) concatenated in order, unmasked.  Control frames (close,
ping, pong) are skipped.  Nothing is buffered but an incomplete frame header (at most 14
bytes); payloads are streamed through as they arrive.

Problems are reported, never raised.  A protocol error the stream cannot be followed past
(reserved opcode, a compressed frame, a malformed control frame, a 64-bit length with its
top bit set) stops the deframer for good; oddities it can follow past (an unmasked client
frame, a masked server frame) are reported once and decoding goes on.
"""

from __future__ import annotations

__all__ = ["WebSocketDeframer"]

_OP_CONTINUATION = 0x0
_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8
_CONTROL_OPS = frozenset({0x8, 0x9, 0xA})
_MAX_CONTROL_PAYLOAD = 125


def _unmask(data: bytes, key: bytes, offset: int) -> bytes:
    """XOR data with the masking key, starting at key position ``offset`` (mod 4)."""
    if not data:
        return data
    shift = offset & 3
    rotated = key[shift:] + key[:shift]
    stream = rotated * (len(data) // 4 + 1)
    value = int.from_bytes(data, "big") ^ int.from_bytes(stream[: len(data)], "big")
    return value.to_bytes(len(data), "big")


class WebSocketDeframer:
    """Wire bytes of one direction in, data-frame payload bytes out."""

    __slots__ = (
        "_data_frame",
        "_fragmented",
        "_header",
        "_key",
        "_key_offset",
        "_noted",
        "_remaining",
        "dead",
        "from_client",
        "problems",
    )

    def __init__(self, from_client: bool) -> None:
        self.from_client = from_client
        self.dead = False  # decoding stopped (protocol error, gap or close frame)
        self.problems: list[str] = []  # new problems since the caller last cleared the list
        self._header = bytearray()
        self._remaining = 0  # payload bytes of the current frame still to come
        self._key: bytes | None = None
        self._key_offset = 0
        self._data_frame = False  # the current frame's payload belongs to the data stream
        self._fragmented = False  # a text/binary message is open (FIN not yet seen)
        self._noted: set[str] = set()

    def feed(self, data: bytes) -> bytes:
        """Consume wire bytes; return the data payload they completed or continued."""
        out: list[bytes] = []
        i, n = 0, len(data)
        while i < n and not self.dead:
            if self._remaining > 0:
                take = min(self._remaining, n - i)
                if self._data_frame:
                    piece = data[i : i + take]
                    if self._key is not None:
                        piece = _unmask(piece, self._key, self._key_offset)
                        self._key_offset += take
                    out.append(piece)
                self._remaining -= take
                i += take
                continue
            need = self._header_size()
            if need < 0 or len(self._header) < need:
                want = (need if need > 0 else 2) - len(self._header)
                self._header += data[i : i + want]
                i += min(want, n - i)
                continue
            self._start_frame()
        return b"".join(out)

    def gap(self) -> None:
        """Bytes were lost: frame boundaries cannot be found any more."""
        if not self.dead:
            self._stop("gap inside the WebSocket stream")

    # ---------------------------------------------------------------- internals

    def _header_size(self) -> int:
        """Bytes of the current frame header, or -1 while the first two are not here."""
        head = self._header
        if len(head) < 2:
            return -1
        size = 2
        length7 = head[1] & 0x7F
        if length7 == 126:
            size += 2
        elif length7 == 127:
            size += 8
        if head[1] & 0x80:
            size += 4
        return size

    def _start_frame(self) -> None:
        head = bytes(self._header)
        self._header = bytearray()
        fin = bool(head[0] & 0x80)
        rsv = head[0] & 0x70
        opcode = head[0] & 0x0F
        masked = bool(head[1] & 0x80)
        length7 = head[1] & 0x7F
        pos = 2
        if length7 == 126:
            length = int.from_bytes(head[2:4], "big")
            pos = 4
        elif length7 == 127:
            length = int.from_bytes(head[2:10], "big")
            pos = 10
            if length >> 63:
                self._stop("64-bit frame length with its most significant bit set")
                return
        else:
            length = length7
        self._key = head[pos : pos + 4] if masked else None
        self._key_offset = 0
        if rsv:
            # RSV1 is permessage-deflate: compressed payloads are not followed.
            self._stop(f"frame with reserved bits 0x{rsv >> 4:x} (extension data)")
            return
        if masked != self.from_client:
            self._note("unmasked client frame" if self.from_client else "masked server frame")
        if opcode in _CONTROL_OPS:
            if not fin or length > _MAX_CONTROL_PAYLOAD:
                self._stop("fragmented or over-long control frame")
                return
            self._data_frame = False
            self._remaining = length
            if opcode == _OP_CLOSE:
                self._remaining = 0
                self.dead = True  # nothing after a close frame is part of the stream
            return
        if opcode == _OP_CONTINUATION:
            if not self._fragmented:
                self._stop("continuation frame without a message to continue")
                return
        elif opcode in (_OP_TEXT, _OP_BINARY):
            if self._fragmented:
                self._stop("new data frame inside a fragmented message")
                return
        else:
            self._stop(f"reserved opcode 0x{opcode:x}")
            return
        self._fragmented = not fin
        self._data_frame = True
        self._remaining = length

    def _note(self, problem: str) -> None:
        if problem not in self._noted:
            self._noted.add(problem)
            self.problems.append(problem)

    def _stop(self, problem: str) -> None:
        self.dead = True
        self._remaining = 0
        self.problems.append(problem)
