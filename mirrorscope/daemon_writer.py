"""The live daemon's single database writer.

It receives each worker's connection from the supervisor over a control socket
(SCM_RIGHTS), writes every batch in one transaction, and closes the run when the
supervisor says so, after every worker connection reached its end (or a deadline).
It ignores SIGINT/SIGTERM: the supervisor orders the shutdown, so that records still in
flight from the workers are written before the run is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mirrorscope.daemon_ipc import Counters, Receiver

if TYPE_CHECKING:
    from mirrorscope.analysis.origin import OriginConfig

log = logging.getLogger("mirrorscope.capture")

CTRL_CONN = b"conn"
CTRL_FINISH = b"finish"
CTRL_DONE = b"done"
CTRL_HEALTH = b"health"  # one health interval (JSON) for the sensor_health table
CTRL_MAX = 1 << 20  # the finish message carries the run's stats as JSON


ANALYSIS_PERSIST_SECONDS = 60.0  # how often a live run's endpoints and findings are stored


@dataclass(slots=True)
class WriterSetup:
    """What the forked writer needs."""

    ctrl: socket.socket  # SOCK_SEQPACKET to the supervisor
    db_url: str
    hmac_key: bytes
    run_id: int
    counters: Counters
    store_raw: bool = False
    alerts: tuple[str | None, str | None, str | None] = (None, None, None)  # jsonl, webhook, syslog
    learn_seconds: float | None = None
    refit_seconds: float | None = None
    origin: OriginConfig | None = None  # trusted proxies, internal/partner networks


@dataclass(slots=True)
class _StageTotals:
    """Workers' final stage counters ("bye" messages), summed."""

    workers: int = 0
    decode: Counter[str] = field(default_factory=Counter)
    tcp: Counter[str] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)

    def add(self, stats: dict[str, Any]) -> None:
        self.workers += 1
        for name in ("decode", "tcp", "http", "anomalies", "unsupported"):
            total: Counter[str] = getattr(self, name)
            for key, value in (stats.get(name) or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[key] += value
                elif isinstance(value, dict):  # e.g. flows_closed by reason
                    for sub, count in value.items():
                        if isinstance(count, int | float):
                            total[f"{key}.{sub}"] += count

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers_reported": self.workers,
            "decode": dict(self.decode),
            "tcp": dict(self.tcp),
            "http": dict(self.http),
            "anomalies": dict(self.anomalies),
            "unsupported": dict(self.unsupported),
        }


def writer_main(setup: WriterSetup, close_in_child: list[Any]) -> None:
    """Process entry point (after fork)."""
    for obj in close_in_child:
        with contextlib.suppress(OSError):
            obj.close()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(_Writer(setup).run())


class _Writer:
    def __init__(self, setup: WriterSetup) -> None:
        self.setup = setup
        self.selector = selectors.DefaultSelector()
        self.receivers: dict[int, Receiver] = {}
        self.stages = _StageTotals()
        self.counts = {"batches": 0, "records_written": 0, "records_failed": 0,
                       "connections": 0, "corrupt_streams": 0}
        self.finish: dict[str, Any] | None = None
        self.deadline = 0.0
        self.supervisor_gone = False

    def run(self) -> int:
        from mirrorscope.store.db import StoreError
        from mirrorscope.store.repository import Store

        setup = self.setup
        try:
            store = Store(setup.db_url, hmac_key=setup.hmac_key, store_raw=setup.store_raw)
        except StoreError as exc:
            log.error("writer: cannot open the database: %s", exc)
            return 1
        self.store = store
        self._start_analysis()
        self.selector.register(setup.ctrl, selectors.EVENT_READ, None)
        self._publish()
        try:
            while True:
                for key, _events in self.selector.select(0.5):
                    if key.data is None:
                        self._control()
                    else:
                        self._drain(key.data)
                self._publish()
                if time.monotonic() >= self.next_persist:
                    self._persist_analysis(final=False)
                if self.finish is not None and (
                    not self.receivers or time.monotonic() >= self.deadline
                ):
                    break
            return self._close_run()
        finally:
            store.close()

    def _control(self) -> None:
        ctrl = self.setup.ctrl
        try:
            message, fds, _flags, _addr = socket.recv_fds(ctrl, CTRL_MAX, 4)
        except (BlockingIOError, InterruptedError):
            return
        if not message and not fds:
            # The supervisor is gone: write what is in flight, then close the run.
            self.selector.unregister(ctrl)
            self.supervisor_gone = True
            self.finish = {"error": "supervisor exited without a clean shutdown"}
            self.deadline = time.monotonic() + 5.0
            return
        if message.startswith(CTRL_CONN):
            for fd in fds:
                sock = socket.socket(fileno=fd)
                receiver = Receiver(sock)
                self.receivers[fd] = receiver
                self.selector.register(sock, selectors.EVENT_READ, receiver)
                self.counts["connections"] += 1
        elif message.startswith(CTRL_HEALTH):
            self._health(message[len(CTRL_HEALTH):])
        elif message.startswith(CTRL_FINISH):
            payload = json.loads(message[len(CTRL_FINISH):] or b"{}")
            self.finish = payload
            self.deadline = time.monotonic() + float(payload.get("timeout", 5.0))
            for fd in fds:
                os.close(fd)

    def _drain(self, receiver: Receiver) -> None:
        for message in receiver.read():
            kind = message[0]
            if kind == "batch":
                self._write(message[1])
            elif kind == "bye":
                self.stages.add(message[2])
        if receiver.eof:
            if receiver.corrupt:
                self.counts["corrupt_streams"] += 1
                log.warning("writer: a worker connection ended mid-message (worker killed?)")
            self.selector.unregister(receiver.sock)
            self.receivers.pop(receiver.sock.fileno(), None)
            receiver.sock.close()

    def _health(self, payload: bytes) -> None:
        """Store one health interval; a failure costs that row, never the writer."""
        try:
            row = json.loads(payload)
            self.store.write_health(self.setup.run_id, [row])
        except Exception as exc:
            log.error("writer: health interval not stored: %s", exc)

    def _start_analysis(self) -> None:
        """Inventory and detection run here: the one process that sees every worker's flows."""
        from mirrorscope.pipeline import RunAnalysis, load_detection_model

        setup = self.setup
        try:
            model = load_detection_model(setup.db_url, "default", setup.hmac_key)
        except Exception as exc:  # a bad stored model: run the rules without it
            log.error("writer: detection model not loaded, rules only: %s", exc)
            model = None
        self.analysis = RunAnalysis(setup.hmac_key,
                                    model=None if setup.learn_seconds else model,
                                    learn_seconds=setup.learn_seconds,
                                    refit_seconds=setup.refit_seconds,
                                    origin=setup.origin)
        # Made here, after the fork: a webhook's sender thread does not survive one.
        from mirrorscope.alerts import AlertError, make_sinks

        try:
            self.sink = make_sinks(*setup.alerts)
        except AlertError as exc:  # checked before the fork; a late failure costs alerts only
            log.error("writer: alerts disabled: %s", exc)
            self.sink = None
        # Kept apart from self.counts, whose fields the shared-memory counters fix.
        self.analysis_counts = {"endpoints": 0, "findings": 0, "errors": 0}
        self.next_persist = time.monotonic() + ANALYSIS_PERSIST_SECONDS

    def _persist_analysis(self, *, final: bool) -> None:
        """Store the endpoints and findings so far; the last call closes every window."""
        from mirrorscope.pipeline import store_analysis

        self.next_persist = time.monotonic() + ANALYSIS_PERSIST_SECONDS
        try:
            if final:
                summaries, findings = self.analysis.finish(time.time())
            else:
                summaries, findings = self.analysis.snapshot()
            ids = store_analysis(self.setup.db_url, self.setup.run_id, summaries, findings)
            if self.sink is not None and findings:
                from mirrorscope.alerts import findings_to_json

                # The dedup wrapper sends a finding again only when its count grew.
                self.sink.send(findings_to_json(findings, ids))
            self.analysis_counts["endpoints"] = len(summaries)
            self.analysis_counts["findings"] = len(findings)
        except Exception as exc:  # analysis must never stop the writer
            self.analysis_counts["errors"] += 1
            log.error("writer: inventory/findings not stored: %s", exc)

    def _write(self, records: list[Any]) -> None:
        if not records:
            return
        try:
            self.analysis.observe(records)
        except Exception as exc:  # a bad record must not stop the writer
            self.analysis_counts["errors"] += 1
            log.error("writer: analysis skipped a batch: %s", exc)
        try:
            self.store.write_batch(self.setup.run_id, records)
        except Exception as exc:  # a bad batch (or a store bug) must not stop the writer
            self.counts["records_failed"] += len(records)
            log.error("writer: %d records lost: %s", len(records), exc)
            return
        self.counts["batches"] += 1
        self.counts["records_written"] += len(records)

    def _publish(self) -> None:
        values = dict(self.counts)
        values["pid"] = os.getpid()
        values["heartbeat"] = int(time.time())
        self.setup.counters.write(0, values)

    def _close_run(self) -> int:
        from mirrorscope.store.db import StoreError

        finish = self.finish or {}
        self._persist_analysis(final=True)
        # Connections still open at the deadline: their unread bytes are lost.
        unfinished = len(self.receivers)
        stats = dict(finish.get("stats") or {})
        stats["stages"] = self.stages.as_dict()
        stats["writer"] = dict(self.counts, connections_unfinished=unfinished)
        stats["analysis"] = dict(self.analysis_counts, fits=self.analysis.fits,
                                 fit_errors=self.analysis.fit_errors[-5:])
        if self.sink is not None:
            stats["alerts"] = self.sink.close()
        self._publish()
        error = finish.get("error")
        try:
            self.store.finish_run(
                self.setup.run_id,
                status="failed" if error else "complete",
                stats=stats,
                error=error,
                ts_first=finish.get("ts_first"),
                ts_last=finish.get("ts_last"),
                finished_at=time.time(),
            )
        except StoreError as exc:
            log.error("writer: cannot close the run: %s", exc)
            return 1
        if not self.supervisor_gone:
            with contextlib.suppress(OSError):
                self.setup.ctrl.send(CTRL_DONE)
        return 0
