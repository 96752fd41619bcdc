"""Streaming, bounded content decoding for HTTP bodies (gzip, deflate, brotli, nested layers).

Everything here is incremental: encoded bytes go in as they arrive, decoded bytes come out
through a callback in pieces of at most ``STEP`` bytes, so a bomb never materialises in
memory.  ``gzip.decompress`` (no output bound) is never used.

Tolerance follows what browsers (and libhtp) accept, because a passive monitor must see
what the client saw: gzip headers are parsed here rather than by zlib, so reserved flag
bits and a wrong header CRC do not stop decoding (zlib refuses both); a wrong trailer CRC
or length is flagged, not fatal; "deflate" may be zlib-wrapped or raw; data that is not
in the declared coding at all passes through unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli

__all__ = ["STEP", "BodyDecoder", "parse_codings"]

STEP = 64 << 10  # largest piece any layer produces per call: bounds memory per layer
_RAW_RETAIN = 64 << 10  # input kept until a layer first produces output (fallback to raw)
_MAX_GZIP_HEADER = 64 << 10  # FEXTRA + FNAME + FCOMMENT larger than this: not gzip
_BOMB_MIN_OUTPUT = 1 << 20  # as libhtp: the ratio test applies once this much came out

# Coding names we can decode, mapped to the decoder kind.
_KNOWN = {
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
    "x-deflate": "deflate",
    "br": "br",
}
_IGNORED = frozenset({"identity", "", "chunked"})
_JUNK = " \t\x0b\x0c\x00"

Emit = Callable[[bytes], None]
Report = Callable[[str, str], None]


def parse_codings(values: list[str]) -> tuple[list[str], list[str]]:
    """Split Content-Encoding / Transfer-Encoding values into codings, in applied order.

    Returns (codings to undo, names that are not plain coding names).  NUL bytes and stray
    whitespace are ignored inside names (as libhtp does).  Decoding stops at the last
    unknown coding: only the layers applied after it can be undone.
    """
    applied: list[str] = []
    unknown: list[str] = []
    for value in values:
        for token in value.replace(";", ",").split(","):
            name = token.replace("\x00", "").strip(_JUNK).lower()
            if name in _IGNORED:
                continue
            if name in _KNOWN:
                applied.append(_KNOWN[name])
                continue
            unknown.append(name[:32])
            # Like libhtp and the browsers it mimics: a mangled name that still says
            # gzip or deflate ("gzip_x", ":gzip", "\xa0deflate") is taken at its word.
            if "gzip" in name:
                applied.append("gzip")
            elif "deflate" in name:
                applied.append("deflate")
            else:
                applied.append("?")
    usable: list[str] = []
    for name in reversed(applied):
        if name == "?":
            break
        usable.append(name)
    usable.reverse()
    return usable, unknown


def _looks_like_zlib(head: bytes) -> bool:
    """RFC 1950 header check: CM=8, window <= 32 KiB, FCHECK makes it a multiple of 31."""
    if len(head) < 2:
        return False
    cmf, flg = head[0], head[1]
    return (cmf & 0x0F) == 8 and (cmf >> 4) <= 7 and ((cmf << 8) | flg) % 31 == 0


def _gzip_header_length(data: bytes) -> int:
    """Length of a gzip member header at the start of data; -1: need more; -2: not gzip."""
    if len(data) < 10:
        return -1 if b"\x1f\x8b\x08"[: len(data)] == data[:3] else -2
    if data[0] != 0x1F or data[1] != 0x8B or data[2] != 8:
        return -2
    flags = data[3]
    pos = 10
    if flags & 0x04:  # FEXTRA
        if len(data) < pos + 2:
            return -1
        pos += 2 + (data[pos] | data[pos + 1] << 8)
    for bit in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = data.find(b"\x00", pos)
            if end < 0:
                return -1 if len(data) < _MAX_GZIP_HEADER else -2
            pos = end + 1
    if flags & 0x02:  # FHCRC: not checked (browsers do not either)
        pos += 2
    if pos > _MAX_GZIP_HEADER:
        return -2
    return pos if len(data) >= pos else -1


class _Layer:
    """One decoding layer: push() input, pull() output in bounded pieces."""

    __slots__ = (
        "_crc",
        "_dec",
        "_fallbacks",
        "_input",
        "_kind",
        "_phase",
        "_raw",
        "_size",
        "done",
        "failed",
        "notes",
        "passthrough",
        "produced",
    )

    def __init__(self, kind: str) -> None:
        self._kind = kind  # "gzip" | "deflate" | "br"
        self._dec: object | None = None
        self._input = b""
        self._raw: bytearray | None = bytearray()  # input kept until the first output
        self._fallbacks: list[int] = []
        self._phase = 0  # gzip: 0 header, 1 inflate, 2 trailer
        self._crc = 0
        self._size = 0
        self.produced = False
        self.passthrough = False  # the data is not in this coding: bytes pass unchanged
        self.failed = False  # broke after producing output: later input is dropped
        self.done = False  # the end of the encoded stream was seen
        self.notes: list[tuple[str, str]] = []  # anomalies found (checksums, garbage)

    # -- streaming ---------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Queue encoded input."""
        if self.failed or not data:
            return
        if self._raw is not None and not self.passthrough:
            if len(self._raw) + len(data) <= _RAW_RETAIN:
                self._raw += data
            else:
                self._raw = None  # so much input without output: no raw fallback any more
        self._input = self._input + data if self._input else data

    def pull(self) -> tuple[bytes, str]:
        """Next decoded piece (b"" when more input is needed) and an error text ("")."""
        if self.failed:
            self._input = b""
            return b"", ""
        if self.passthrough:
            out, self._input = self._input[:STEP], self._input[STEP:]
            return out, ""
        if self.done:
            if self._input.strip(b"\x00\r\n \t"):
                self.notes.append(("http.decompress_trailing_data", f"{len(self._input)} bytes"))
            self._input = b""
            return b"", ""
        if self._kind == "br":
            return self._pull_brotli()
        if self._dec is None and not self._start():
            return b"", ""
        return self._pull_zlib()

    def _start(self) -> bool:
        """Pick the decoder for what the stream actually starts with."""
        data = self._input
        if self._kind == "gzip":
            hlen = _gzip_header_length(data)
            if hlen == -1:
                return False
            if hlen >= 0:
                self._input = data[hlen:]
                self._dec = zlib.decompressobj(-15)
                self._fallbacks = []
                self._phase = 1
                return True
            # Declared gzip, but no gzip header: zlib or raw deflate, as libhtp tries.
        if len(data) < 2:
            return False
        order = [15, -15] if _looks_like_zlib(data) else [-15, 15]
        self._dec = zlib.decompressobj(order[0])
        self._fallbacks = order[1:]
        self._phase = 3  # not gzip framing: no member trailer
        return True

    def _retry(self) -> bool:
        """Restart on the retained input with the next candidate format, if any."""
        if self.produced or self._raw is None or not self._fallbacks:
            return False
        self._dec = zlib.decompressobj(self._fallbacks.pop(0))
        self._input = bytes(self._raw)
        return True

    def _give_up(self, error: str) -> tuple[bytes, str]:
        """Decoding failed: before any output the body was not encoded; pass it through."""
        if not self.produced and self._raw is not None:
            self.passthrough = True
            raw, self._raw = bytes(self._raw), None
            self._input = b""
            return raw, error
        self.failed = True
        self._input = b""
        return b"", error

    def _pull_zlib(self) -> tuple[bytes, str]:
        while True:
            if self._phase == 2:
                if not self._trailer():
                    return b"", ""
                if self.done:
                    return self.pull()
                continue
            if self._dec is None and not self._start():
                return b"", ""  # the next member's header is not complete yet
            dec = self._dec
            data = self._input
            if not data:
                return b"", ""
            try:
                out = dec.decompress(data, STEP)  # type: ignore[attr-defined]
            except zlib.error as exc:
                if self._retry():
                    continue
                return self._give_up(str(exc))
            self._input = dec.unconsumed_tail  # type: ignore[attr-defined]
            if dec.eof:  # type: ignore[attr-defined]
                # At the end of the stream the rest of ``data`` is in unused_data (CPython
                # may also leave it in unconsumed_tail: take it once).
                self._input = dec.unused_data  # type: ignore[attr-defined]
                if self._phase == 1:
                    self._phase = 2
                else:
                    self.done = True
            if out:
                if self._phase in (1, 2):
                    self._crc = zlib.crc32(out, self._crc)
                    self._size += len(out)
                self.produced = True
                self._raw = None
                return out, ""
            if self.done:
                return self.pull()
            if self._phase != 2 and len(self._input) >= len(data):
                return b"", ""  # no progress: zlib wants more input

    def _trailer(self) -> bool:
        """gzip member trailer (CRC32, ISIZE); then maybe another member.  False: wait."""
        if len(self._input) < 8:
            return False
        trailer, self._input = self._input[:8], self._input[8:]
        crc = int.from_bytes(trailer[:4], "little")
        size = int.from_bytes(trailer[4:], "little")
        if crc != self._crc or size != self._size & 0xFFFFFFFF:
            self.notes.append(("http.decompress_checksum", "gzip trailer CRC or length mismatch"))
        self._crc = self._size = 0
        if self._input[:2] == b"\x1f\x8b":
            self._dec = None  # concatenated members: decode them all, as zcat does
            self._phase = 0
            if not self._start():
                self._phase = 0
        else:
            self.done = True
        return True

    def _pull_brotli(self) -> tuple[bytes, str]:
        if self._dec is None:
            self._dec = brotli.Decompressor()
        dec = self._dec
        assert isinstance(dec, brotli.Decompressor)
        try:
            if dec.can_accept_more_data():
                data, self._input = self._input, b""
                if not data:
                    return b"", ""
                out = dec.process(data, output_buffer_limit=STEP)
            else:
                out = dec.process(b"", output_buffer_limit=STEP)
        except brotli.error as exc:
            return self._give_up(str(exc) or "brotli error")
        if dec.is_finished():
            self.done = True
        if out:
            self.produced = True
            self._raw = None
        return out, ""

    def finish(self) -> tuple[bytes, str]:
        """End of body: bytes of a stream too short to start, and what was unfinished."""
        if self.passthrough or self.failed or self.done:
            return b"", ""
        if self._dec is None and self._kind != "br":
            if self._input and not self.produced:
                self.passthrough = True
                data, self._input = self._input, b""
                return data, "stream too short"
            return b"", ""
        if self._dec is None:
            return b"", ""
        if self._phase == 2:
            return b"", "gzip trailer missing"
        return b"", f"{self._kind} stream truncated"


class BodyDecoder:
    """Undo a chain of codings on a body stream, bounded in output, ratio and layers."""

    __slots__ = (
        "_emit",
        "_layers",
        "_max_output",
        "_max_ratio",
        "_report",
        "stopped",
        "total_in",
        "total_out",
        "truncated",
    )

    def __init__(
        self,
        codings: list[str],
        *,
        emit: Emit,
        report: Report,
        max_output: int = 8 << 20,
        max_ratio: int = 2048,
        max_layers: int = 3,
    ) -> None:
        # ``codings`` lists codings in the order they were applied; undo the last first.
        if len(codings) > max_layers:
            report(
                "http.too_many_encoding_layers",
                f"{len(codings)} layers, decoding the outer {max_layers}",
            )
            codings = codings[len(codings) - max_layers :]
        self._layers = [_Layer(kind) for kind in reversed(codings)]
        self._emit = emit
        self._report = report
        self._max_output = max_output
        self._max_ratio = max_ratio
        self.total_in = 0
        self.total_out = 0
        self.stopped = False  # a cap or an error ended decoding: later input is ignored
        self.truncated = False  # the decoded body is shorter than the real one

    def feed(self, data: bytes) -> None:
        """Decode one piece of the (de-chunked) body."""
        if self.stopped or not data:
            return
        self.total_in += len(data)
        self._run(0, data)

    def _run(self, index: int, data: bytes) -> None:
        if index == len(self._layers):
            self._deliver(data)
            return
        layer = self._layers[index]
        layer.push(data)
        while not self.stopped:
            out, error = layer.pull()
            if error:
                self._report("http.decompress_failed", f"layer {index + 1}: {error}"[:120])
                if layer.failed:
                    self.truncated = True
            if layer.notes:
                for kind, detail in layer.notes:
                    self._report(kind, f"layer {index + 1}: {detail}")
                layer.notes.clear()
            if out:
                self._run(index + 1, out)
            elif not error:
                return

    def _deliver(self, data: bytes) -> None:
        if self.stopped:
            return
        room = self._max_output - self.total_out
        if len(data) >= room:
            data = data[:room]
            self.stopped = self.truncated = True
            self._report("http.decompress_capped", f"decoded output capped at {self._max_output}")
        self.total_out += len(data)
        if data:
            self._emit(data)
        if (
            not self.stopped
            and self._layers
            and self.total_out > _BOMB_MIN_OUTPUT
            and self.total_out > self._max_ratio * max(self.total_in, 1)
        ):
            self.stopped = self.truncated = True
            self._report(
                "http.decompression_bomb", f"{self.total_in} bytes decoded to {self.total_out}+"
            )

    def gap(self) -> None:
        """Bytes of the body were lost: an encoded stream cannot continue past them."""
        if self._layers and not self.stopped:
            self.stopped = self.truncated = True

    def finish(self) -> None:
        """End of body: flush streams too short to start; flag unfinished ones."""
        if self.stopped:
            return
        for index, layer in enumerate(self._layers):
            data, problem = layer.finish()
            if problem:
                kind = "http.decompress_failed" if data else "http.decompress_incomplete"
                self._report(kind, f"layer {index + 1}: {problem}")
            if data:
                self._run(index + 1, data)
                if self.stopped:
                    return
