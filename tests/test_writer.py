"""BatchWriter: bounded queue, retries with backoff, counters, never raises into the caller."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from mirrorscope.model import Anomaly, ConnectionOpened
from mirrorscope.store import Store
from mirrorscope.writer import BatchWriter


class FlakyStore:
    """Fails the first `failures` writes with OperationalError, then records batches."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or OperationalError("INSERT", {}, Exception("database is locked"))
        self.batches: list[list[Any]] = []

    def write_batch(self, run_id: int, items: list[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.batches.append(list(items))


class BlockedStore:
    """Blocks every write until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[Any]] = []

    def write_batch(self, run_id: int, items: list[Any]) -> None:
        self.release.wait(10)
        self.batches.append(list(items))


def test_transient_failures_are_retried_and_land_once() -> None:
    store = FlakyStore(failures=3)
    delays: list[float] = []
    writer = BatchWriter(store, 1, 4, base_delay=0.5, max_delay=1.0, sleep=delays.append)
    assert writer.put([1, 2, 3])
    counters = writer.close()
    assert store.batches == [[1, 2, 3]]
    assert delays == [0.5, 1.0, 1.0]  # doubled, capped
    assert counters["retries"] == 3 and counters["written_items"] == 3
    assert counters["failed_batches"] == 0


def test_giving_up_is_counted_not_raised() -> None:
    store = FlakyStore(failures=100)
    writer = BatchWriter(store, 1, 4, max_attempts=3, sleep=lambda _s: None)
    writer.put(["a", "b"])
    writer.put(["c"])
    counters = writer.close()
    assert (counters["failed_batches"], counters["failed_items"]) == (2, 3)
    assert counters["written_batches"] == 0


def test_non_transient_errors_are_not_retried() -> None:
    store = FlakyStore(failures=1, error=ValueError("bug"))
    writer = BatchWriter(store, 1, 4, sleep=lambda _s: None)
    writer.put([1])
    writer.put([2])
    counters = writer.close()
    assert counters["retries"] == 0 and counters["failed_items"] == 1
    assert store.batches == [[2]]


def test_a_full_queue_drops_after_a_bounded_wait() -> None:
    store = BlockedStore()
    writer = BatchWriter(store, 1, 2, put_timeout=0.05)
    results = [writer.put([n]) for n in range(6)]
    # One batch is being written (blocked), two wait in the queue, the rest are dropped.
    assert results[:3] == [True, True, True] and results[3:] == [False, False, False]
    store.release.set()
    counters = writer.close()
    assert (counters["dropped_batches"], counters["dropped_items"]) == (3, 3)
    assert sorted(store.batches) == [[0], [1], [2]]


def test_a_locked_sqlite_database_delays_but_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = Store(f"sqlite:///{path}")
    try:
        run_id = store.begin_run(source="t", sha256="a" * 64, size=1, started_at=0.0)
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        released = threading.Timer(1.5, locker.execute, args=("COMMIT",))
        released.start()
        writer = BatchWriter(store, run_id, 8, put_timeout=10.0)
        batches = [
            [ConnectionOpened(f"C{b}-{n}", 1.0, ("10.0.0.1", n), ("10.0.0.2", 80), False)
             for n in range(50)] + [Anomaly("tcp.gap", float(b))]
            for b in range(5)
        ]
        for batch in batches:
            writer.put(batch)
        writer.put(batches[0])  # a duplicate batch, as after a lost commit acknowledgement
        counters = writer.close()
        released.join()
        locker.close()
        assert counters["failed_batches"] == counters["dropped_batches"] == 0
        assert counters["written_batches"] == 6
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT count(*) FROM connections").fetchone() == (250,)
            assert check.execute("SELECT count(DISTINCT conn_id) FROM connections").fetchone() \
                == (250,)
        assert store.anomaly_counts(run_id) == {"tcp.gap": 5}
    finally:
        store.close()
