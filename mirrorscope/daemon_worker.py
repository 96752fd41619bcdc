"""One capture worker: read its fanout share of the interface, analyse, ship records.

A worker runs unprivileged (the supervisor dropped root before forking it), never
touches the database and never blocks on the writer: records go out through a
bounded non-blocking sender, and what does not fit is dropped and counted.

Stopping: SIGUSR1 from the supervisor (or from the kernel when the supervisor dies).
SIGINT/SIGTERM/SIGHUP are ignored so that a terminal's Ctrl-C or systemd's stop signal,
which reach the whole process group, leave the order of shutdown to the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from mirrorscope.capture.live import LiveSource
from mirrorscope.capture.live_privileges import PrivilegeError, die_with_parent, refuse_root
from mirrorscope.daemon_ipc import Counters, Sender
from mirrorscope.pipeline import Analyzer

log = logging.getLogger("mirrorscope.capture")

EXIT_REFUSED = 3  # refused to run (root): restarting would not help
READ_TIMEOUT = 0.2  # seconds a read waits for a block before the loop looks around
FLUSH_EVERY = 0.5  # seconds: records leave at least this often
BATCH = 2000  # records per message
PUBLISH_EVERY = 0.5  # seconds between counter updates
TICK_EVERY = 1.0  # wall-clock seconds between idle expiry sweeps
DRAIN_READ_TIMEOUT = 0.25  # > the block timeout (100 ms): partly filled blocks come too


@dataclass(slots=True)
class WorkerSetup:
    """Everything a forked worker needs (it inherits the objects, nothing is pickled)."""

    index: int
    source: LiveSource
    channel: Any  # socket.socket to the writer
    counters: Counters
    allow_root: bool = False
    body_keep: int = 64 << 10
    max_pending: int = 64 << 20
    flush_timeout: float = 5.0
    drain_timeout: float = 2.0
    checksum: str = "auto"  # TCP checksum policy (capture/checksum.py)
    workers: int = 1  # processes splitting the flows: each keeps 1/workers of the bounds


class _Stop:
    requested = False


def _request_stop(_signum: int, _frame: object) -> None:
    _Stop.requested = True


def worker_main(setup: WorkerSetup, close_in_child: list[Any]) -> None:
    """Process entry point (after fork): exits with 0, or EXIT_REFUSED as root."""
    for obj in close_in_child:
        with contextlib.suppress(OSError):
            obj.close()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _request_stop)
    die_with_parent(signal.SIGUSR1)
    try:
        refuse_root(setup.allow_root)
    except PrivilegeError as exc:
        log.error("worker %d: %s", setup.index, exc)
        sys.exit(EXIT_REFUSED)
    sys.exit(run_worker(setup))


def _tick(analyzer: Analyzer, now: float, out: list[object]) -> None:
    """Expire idle flows by wall-clock time when no packet comes to do it."""
    tick = getattr(analyzer, "tick", None)  # the public name, once the pipeline has one
    if tick is not None:
        tick(now, out)
    else:
        analyzer._expire(now, out)


def worker_analyzer(setup: WorkerSetup) -> Analyzer:
    """This worker's decode -> TCP -> HTTP, with its share of the sensor's bounds."""
    return Analyzer("http", body_keep=setup.body_keep, checksum=setup.checksum,
                    share=setup.workers)


def run_worker(setup: WorkerSetup) -> int:
    """The capture loop until a stop is requested; flushes open flows before returning."""
    source = setup.source
    analyzer = worker_analyzer(setup)
    feed = analyzer.feed
    sender = Sender(setup.channel, setup.max_pending)
    published = _Published(setup)
    out: list[object] = []
    monotonic = time.monotonic
    next_flush = next_publish = monotonic() + FLUSH_EVERY
    next_tick = time.time() + TICK_EVERY
    ts_first = 0.0
    ts_last = 0.0
    published.update(analyzer, sender, ts_first, ts_last)
    while not _Stop.requested:
        frames = source.read(READ_TIMEOUT)
        if frames:
            if not ts_first:
                ts_first = frames[0].ts
            for frame in frames:
                feed(frame, out)
            ts_last = frames[-1].ts
        else:
            now = time.time()
            if now >= next_tick:
                next_tick = now + TICK_EVERY
                _tick(analyzer, now, out)
        mono = monotonic()
        if len(out) >= BATCH or (out and mono >= next_flush):
            _ship(sender, out, published)
            out = []
            next_flush = mono + FLUSH_EVERY
        elif sender.pending:
            sender.pump()
        if mono >= next_publish:
            next_publish = mono + PUBLISH_EVERY
            published.update(analyzer, sender, ts_first, ts_last)
    # Stop: first analyse what the kernel already queued (it was captured before the
    # stop), within a bound since a busy link never runs dry; then flush open flows
    # (marked incomplete by the reassembler) and say goodbye.
    drain_until = monotonic() + setup.drain_timeout
    while monotonic() < drain_until:
        frames = source.read(DRAIN_READ_TIMEOUT)
        if not frames:
            break
        for frame in frames:
            feed(frame, out)
        ts_last = frames[-1].ts
        if len(out) >= BATCH:
            _ship(sender, out, published)
            out = []
    analyzer.finish(out)
    for start in range(0, len(out), BATCH):
        _ship(sender, out[start : start + BATCH], published)
    stats = analyzer.stats
    sender.send(("bye", setup.index, {
        "decode": stats.decode,
        "tcp": stats.tcp,
        "http": stats.http,
        "anomalies": dict(stats.anomalies),
        "unsupported": dict(getattr(analyzer.decoder, "unsupported", {})),
    }))
    flushed = sender.flush(monotonic() + setup.flush_timeout)
    published.update(analyzer, sender, ts_first, ts_last)
    if not flushed:
        log.error("worker %d: writer did not take the last %d bytes in time",
                  setup.index, sender.pending)
    return 0


def _ship(sender: Sender, records: list[object], published: _Published) -> None:
    if sender.send(("batch", records)):
        published.records_sent += len(records)
    else:
        published.records_dropped += len(records)


class _Published:
    """The worker's counters as the supervisor sees them (shared memory)."""

    __slots__ = ("counters", "index", "records_dropped", "records_sent", "source")

    def __init__(self, setup: WorkerSetup) -> None:
        self.counters = setup.counters
        self.index = setup.index
        self.source = setup.source
        self.records_sent = 0
        self.records_dropped = 0
        self.counters.clear(self.index)
        self.counters.write(self.index, {"pid": os.getpid()})

    def update(self, analyzer: Analyzer, sender: Sender, ts_first: float,
               ts_last: float) -> None:
        stats = analyzer.stats
        tcp = analyzer.tcp.stats if analyzer.tcp is not None else None
        self.counters.write(self.index, {
            "heartbeat": int(time.time()),
            "packets": stats.packets,
            "bytes": stats.bytes,
            "flows": stats.flows,
            "transactions": stats.transactions,
            "anomalies": sum(stats.anomalies.values()),
            "gaps": stats.gaps,
            "gap_bytes": stats.gap_bytes,
            "acks": getattr(tcp, "acks", 0),
            "acks_above_gap": getattr(tcp, "acks_above_gap", 0),
            "tunnels": getattr(analyzer.decoder.stats, "tunnels", 0),
            "records_sent": self.records_sent,
            "records_dropped": self.records_dropped,
            "pending_bytes": sender.pending,
            "socket_errors": self.source.errors,
            "ts_first_us": int(ts_first * 1e6),
            "ts_last_us": int(ts_last * 1e6),
        })
