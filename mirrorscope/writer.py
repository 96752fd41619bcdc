"""A bounded queue and one thread between analysis and the store.

The packet path never blocks for long on the database: put() waits at most put_timeout
when the queue is full, then counts the batch as dropped.  The thread retries a batch whose
write failed for a transient reason (SQLite locked, PostgreSQL down or restarting) with
exponential backoff; Store.write_batch is idempotent, so a retry of a batch that did commit
adds nothing.  What cannot be written is counted, never raised into the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from mirrorscope.store.rows import PreparedRows

log = logging.getLogger("mirrorscope.writer")

_STOP = object()


class BatchStore(Protocol):
    """What the writer needs of a store (mirrorscope.store.Store fits)."""

    def write_batch(self, run_id: int, items: Sequence[Any]) -> None:
        """Write one batch in one transaction."""


@dataclass(slots=True)
class WriterCounters:
    """What happened to the batches handed to a BatchWriter."""

    written_batches: int = 0
    written_items: int = 0
    dropped_batches: int = 0  # the queue stayed full for put_timeout
    dropped_items: int = 0
    failed_batches: int = 0  # gave up after max_attempts, or a non-transient error
    failed_items: int = 0
    retries: int = 0


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: locks, lost connections, a server restarting."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _records(items: list[Any]) -> int:
    """Pipeline records in a batch: rows prepared ahead by replay workers are not records."""
    return len(items) - sum(type(item) is PreparedRows for item in items)


class BatchWriter:
    """Writes batches to a store from its own thread, behind a bounded queue."""

    def __init__(
        self,
        store: BatchStore,
        run_id: int,
        max_pending_batches: int = 64,
        *,
        put_timeout: float = 5.0,
        max_attempts: int = 8,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_pending_batches < 1 or max_attempts < 1:
            raise ValueError("max_pending_batches and max_attempts must be >= 1")
        self._store = store
        self._run_id = run_id
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending_batches)
        self._put_timeout = put_timeout
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._lock = threading.Lock()
        self._counters = WriterCounters()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mirrorscope-writer", daemon=True)
        self._thread.start()

    def put(self, batch: Sequence[Any]) -> bool:
        """Queue a copy of batch; False (and counted as dropped) when the queue stayed full."""
        if self._closed:
            raise RuntimeError("BatchWriter is closed")
        items = list(batch)
        if not items:
            return True
        try:
            self._queue.put(items, timeout=self._put_timeout)
        except queue.Full:
            with self._lock:
                self._counters.dropped_batches += 1
                self._counters.dropped_items += _records(items)
            return False
        return True

    @property
    def pending(self) -> int:
        """Batches queued and not yet taken by the thread."""
        return self._queue.qsize()

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._lock:
            return asdict(self._counters)

    def close(self) -> dict[str, int]:
        """Write everything queued (with retries), stop the thread, return the counters."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)  # blocks only until the thread takes a batch
            self._thread.join()
        return self.counters()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            self._write(batch)  # type: ignore[arg-type]

    def _write(self, items: list[Any]) -> None:
        delay = self._base_delay
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._store.write_batch(self._run_id, items)
            except Exception as exc:  # the thread must never die
                if attempt < self._max_attempts and is_transient(exc):
                    with self._lock:
                        self._counters.retries += 1
                    log.warning("database write failed (%s); retry %d in %.1f s",
                                type(exc).__name__, attempt, delay)
                    self._sleep(delay)
                    delay = min(delay * 2, self._max_delay)
                    continue
                log.error("database write of %d records failed for good: %s",
                          len(items), type(exc).__name__)
                with self._lock:
                    self._counters.failed_batches += 1
                    self._counters.failed_items += _records(items)
                return
            with self._lock:
                self._counters.written_batches += 1
                self._counters.written_items += _records(items)
            return
