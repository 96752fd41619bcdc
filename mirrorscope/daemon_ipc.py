"""How the live daemon's processes talk: framed pickles over private socket pairs.

Each worker has its own stream socket to the writer (created by the supervisor, the
writer's end handed over with SCM_RIGHTS).  Nothing is shared between workers, so a
worker killed in the middle of a write corrupts only its own connection, which the
writer then drops; a lock shared by a multiprocessing.Queue would instead be left held
and hang every other worker.

The worker's side never blocks the packet path: messages go into a bounded buffer that
is pushed out with non-blocking sends; a message that does not fit is dropped whole
(and counted), so the stream is never cut in the middle of a frame.
"""

from __future__ import annotations

import errno
import pickle
import select
import socket
import struct
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import RawArray
from typing import Any

_LENGTH = struct.Struct("!I")
MAX_FRAME = 256 << 20  # a frame longer than this means a corrupt stream

# Per-worker counters published in shared memory (int64 each) for the supervisor.
WORKER_FIELDS = (
    "pid",
    "heartbeat",  # wall-clock seconds of the last publish
    "packets",
    "bytes",
    "flows",
    "transactions",
    "anomalies",
    "gaps",
    "gap_bytes",
    "acks",
    "acks_above_gap",
    "tunnels",
    "records_sent",
    "records_dropped",  # dropped because the writer fell behind (buffer full)
    "pending_bytes",  # bytes waiting in the worker's send buffer
    "socket_errors",  # capture socket errors (link down)
    "ts_first_us",
    "ts_last_us",
)

WRITER_FIELDS = (
    "pid",
    "heartbeat",
    "batches",
    "records_written",
    "records_failed",  # a database error lost them (counted, logged)
    "connections",
    "corrupt_streams",
)


class Counters:
    """A block of int64 counters in shared memory: one writer process, any readers."""

    def __init__(self, rows: int, fields: tuple[str, ...]) -> None:
        self.rows = rows
        self.fields = fields
        self._width = len(fields)
        self.array = RawArray("q", rows * self._width)

    def write(self, index: int, values: dict[str, int]) -> None:
        """Store ``values`` (a subset of the fields) into row ``index``."""
        base = index * self._width
        array = self.array
        for name, value in values.items():
            array[base + self.fields.index(name)] = int(value)

    def read(self, index: int) -> dict[str, int]:
        """A snapshot of row ``index``."""
        base = index * self._width
        values = self.array[base : base + self._width]
        return dict(zip(self.fields, values, strict=True))

    def clear(self, index: int) -> None:
        """Zero row ``index`` (a new process takes the slot)."""
        base = index * self._width
        for i in range(self._width):
            self.array[base + i] = 0


def encode(message: Any) -> bytes:
    """One frame: 4-byte big-endian length, then the pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class Sender:
    """Non-blocking, bounded, whole-frame sender over a stream socket."""

    def __init__(self, sock: socket.socket, max_pending: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_pending = max_pending
        self._pending = bytearray()
        self.broken = False

    @property
    def pending(self) -> int:
        """Bytes accepted but not yet handed to the kernel."""
        return len(self._pending)

    def send(self, message: Any) -> bool:
        """Queue a message; False if it was dropped (buffer full or peer gone)."""
        if self.broken:
            return False
        frame = encode(message)
        if self._pending and len(self._pending) + len(frame) > self.max_pending:
            self.pump()
            if len(self._pending) + len(frame) > self.max_pending:
                return False
        self._pending += frame
        self.pump()
        return True

    def pump(self) -> None:
        """Hand as much as the socket takes right now to the kernel."""
        while self._pending and not self.broken:
            try:
                sent = self.sock.send(self._pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    self.broken = True
                    self._pending.clear()
                    return
                raise
            del self._pending[:sent]  # bytearray trims its head in O(1)

    def flush(self, deadline: float) -> bool:
        """Block until everything is sent or ``deadline`` (monotonic) passes."""
        while self._pending and not self.broken:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            select.select([], [self.sock], [], min(remaining, 0.5))
            self.pump()
        return not self._pending


class Receiver:
    """Reassembles frames from a stream socket; reports EOF and corruption."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buffer = bytearray()
        self.eof = False
        self.corrupt = False

    def read(self) -> Iterator[Any]:
        """Messages completed by the bytes available now (sets ``eof`` at the end)."""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self._buffer += chunk
            if len(self._buffer) >= 8 << 20:
                break  # let the caller interleave other connections
        yield from self._frames()

    def _frames(self) -> Iterator[Any]:
        buffer = self._buffer
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > MAX_FRAME:
                self.corrupt = True
                self.eof = True
                buffer.clear()
                return
            end = _LENGTH.size + length
            if len(buffer) < end:
                return
            body = bytes(buffer[_LENGTH.size : end])
            del buffer[:end]
            try:
                yield pickle.loads(body)
            except Exception:  # a truncated stream from a killed peer
                self.corrupt = True
                self.eof = True
                buffer.clear()
                return
