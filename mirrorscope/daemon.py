"""The live capture daemon: a supervisor, N capture workers and one database writer.

Start-up order matters for privileges (RELIABILITY.md §5.1): the supervisor opens the
capture sockets (and the metrics port) while it still holds CAP_NET_RAW, then drops
to ``--user`` with no capabilities, and only then opens the database (so its files
belong to that user) and forks the writer and the workers.  No packet is parsed
before the drop, and a process that would parse packets as root refuses to.

The supervisor keeps every capture socket open for the daemon's life: a worker that
crashes is re-forked on the same socket (same fanout slot, so its flows come back to
it), with exponential back-off, and counted.  It samples kernel drop counters and the
workers' shared-memory counters every second, logs a health line every
``health_interval`` and serves them as Prometheus metrics.

Shutdown (SIGTERM, SIGINT, --duration): workers flush their open flows and exit, then
the writer commits what they sent and closes the run with the final statistics; all
within ``shutdown_timeout`` seconds, after which stragglers are killed.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import pwd
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorscope.capture import bpf
from mirrorscope.capture.live import CaptureConfig, LiveCaptureError, LiveSource, open_sources
from mirrorscope.capture.live_privileges import (
    PrivilegeError,
    drop_privileges,
    read_identity,
    refuse_root,
)
from mirrorscope.daemon_ipc import WORKER_FIELDS, WRITER_FIELDS, Counters
from mirrorscope.daemon_preload import preload
from mirrorscope.daemon_worker import EXIT_REFUSED, WorkerSetup, worker_main
from mirrorscope.daemon_writer import (
    CTRL_DONE,
    CTRL_FINISH,
    CTRL_HEALTH,
    WriterSetup,
    writer_main,
)
from mirrorscope.metrics import Metric, MetricsServer, render

if TYPE_CHECKING:
    from mirrorscope.analysis.origin import OriginConfig

log = logging.getLogger("mirrorscope.capture")

EXIT_OK = 0
EXIT_FAILURE = 1  # something broke while running (writer died, shutdown overran)
EXIT_CONFIG = 2  # could not start: interface, filter, privileges, database
SAMPLE_EVERY = 1.0  # seconds between counter samples (metrics freshness)
HEALTH_KEEP = 120  # health intervals kept in the run's stats (the log has them all)
RESTART_BACKOFF_MAX = 30.0
RESTART_HEALTHY_AFTER = 60.0  # a worker up this long resets its back-off
_SUMMED = tuple(f for f in WORKER_FIELDS if f not in ("pid", "heartbeat", "pending_bytes",
                                                         "ts_first_us", "ts_last_us"))


class DaemonError(RuntimeError):
    """The daemon cannot start: the message says what to fix."""


@dataclass(slots=True)
class DaemonConfig:
    """Everything `mirrorscope capture` can be told."""

    capture: CaptureConfig
    workers: int = 1
    db_url: str = "sqlite:///mirrorscope.db"
    duration: float | None = None
    user: str | None = None
    allow_root: bool = False
    metrics_port: int | None = None
    health_interval: float = 10.0
    shutdown_timeout: float = 15.0
    store_raw: bool = False
    body_keep: int = 64 << 10
    bpf_file: str | None = None  # re-read on SIGHUP
    hmac_key: bytes | None = None  # None: the installation key
    alerts: tuple[str | None, str | None, str | None] = (None, None, None)  # jsonl, webhook, syslog
    learn_seconds: float | None = None  # learn the baseline from the first N s, then score
    refit_seconds: float | None = None  # refit on recent unflagged traffic every N s
    checksum: str = "auto"  # TCP checksums in the workers: auto | strict | off
    origin: OriginConfig | None = None  # trusted proxies, internal/partner networks


@dataclass(slots=True)
class _Slot:
    """One worker position: its socket outlives the processes that read it."""

    index: int
    source: LiveSource
    proc: Any = None  # multiprocessing.Process
    started: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    kernel: dict[str, int] = field(default_factory=lambda: {"packets": 0, "drops": 0,
                                                             "freeze_q": 0})


def run_daemon(config: DaemonConfig) -> int:
    """Run until stopped; returns the process exit code (raises DaemonError on bad setup)."""
    return _Supervisor(config).run()


def live_run_id(iface: str, started_at: float) -> str:
    """A unique ledger key for one live run (the store's sha256 column)."""
    return hashlib.sha256(f"iface:{iface}|{started_at:.6f}|{os.getpid()}".encode()).hexdigest()


class _Supervisor:
    def __init__(self, config: DaemonConfig) -> None:
        if config.workers < 1:
            raise DaemonError("--workers must be at least 1")
        self.config = config
        self.ctx = multiprocessing.get_context("fork")
        self.slots: list[_Slot] = []
        self.metrics: MetricsServer | None = None
        self.ctrl: socket.socket | None = None
        self.writer: Any = None
        self.run_id = 0
        self.stop_reason: str | None = None
        self.reload_requested = False
        self.failure: str | None = None
        self.worker_counters = Counters(config.workers, WORKER_FIELDS)
        self.writer_counters = Counters(1, WRITER_FIELDS)
        self.retired: dict[str, int] = dict.fromkeys(_SUMMED, 0)
        self.kernel = {"packets": 0, "drops": 0, "freeze_q": 0}
        self.restarts = 0
        self.killed = 0
        self.reloads = 0
        self.health: deque[dict[str, Any]] = deque(maxlen=HEALTH_KEEP)
        self.last_health: dict[str, Any] | None = None
        self.snapshot: dict[str, Any] = {}
        self.identity: dict[str, Any] = {}
        self.key = b""
        self.started_wall = time.time()
        self.started_mono = time.monotonic()

    # ------------------------------------------------------------------ start-up

    def run(self) -> int:
        config = self.config
        self._install_signals()
        if os.geteuid() == 0 and config.user is None and not config.allow_root:
            raise DaemonError("refusing to parse packets as root: pass --user NAME to drop "
                              "privileges after opening the interface (or --allow-root)")
        key = config.hmac_key if config.hmac_key is not None else _load_key()
        self.key = key
        if config.bpf_file:
            config.capture.bpf = _read_filter(config.bpf_file)
        preload(config.db_url, key)  # before the drop: the interpreter may become unreadable
        try:
            sources = open_sources(config.capture, config.workers)
        except (LiveCaptureError, bpf.BpfError) as exc:
            raise DaemonError(str(exc)) from exc
        self.slots = [_Slot(i, source) for i, source in enumerate(sources)]
        try:
            return self._run_opened(key)
        finally:
            for slot in self.slots:
                slot.source.close()
            if self.metrics is not None:
                self.metrics.close()

    def _run_opened(self, key: bytes) -> int:
        config = self.config
        if config.metrics_port is not None:
            try:  # bound before the drop, so a port below 1024 works too
                self.metrics = MetricsServer(config.metrics_port, self._render_metrics)
            except OSError as exc:
                raise DaemonError(f"--metrics-port {config.metrics_port}: {exc.strerror}") from exc
        self._prepare_database(key)
        self._drop_privileges()
        self.run_id = self._begin_run(key)
        # Everything loaded so far is shared with the children copy-on-write; keep the
        # collector from touching (and so copying) it in every process.
        gc.freeze()
        self._start_writer(key)
        for slot in self.slots:
            self._start_worker(slot)
        self._sample()
        if self.metrics is not None:
            self.metrics.start()
        mode = "ring" if config.capture.ring else "socket"
        log.info("ready: capturing on %s with %d worker(s) (%s), run %d, uid %s%s",
                 config.capture.iface, config.workers, mode, self.run_id,
                 self.identity.get("uid"),
                 f", metrics on 127.0.0.1:{self.metrics.port}" if self.metrics else "")
        self._loop()
        return self._shutdown()

    def _prepare_database(self, key: bytes) -> None:
        """Create and migrate a new database before the drop, then hand a SQLite file to --user.

        After the drop the Alembic scripts may be unreadable (a checkout in a 0700 folder), so
        a brand-new database is migrated while we still can read them.  An existing SQLite
        file is left to the unprivileged process: root would be refused a file it does not own.
        """
        from sqlalchemy.engine import make_url

        from mirrorscope.store.db import StoreError
        from mirrorscope.store.migrate import head_revision, known_revisions
        from mirrorscope.store.repository import Store

        head_revision()
        known_revisions()
        url = make_url(self.config.db_url)
        sqlite_path = (Path(url.database) if url.get_backend_name() == "sqlite"
                       and url.database and url.database != ":memory:" else None)
        if sqlite_path is not None and sqlite_path.exists():
            return
        try:
            Store(self.config.db_url, hmac_key=key, store_raw=self.config.store_raw).close()
        except StoreError as exc:
            raise DaemonError(f"database: {exc}") from exc
        if sqlite_path is not None and self.config.user and os.geteuid() == 0:
            account = pwd.getpwnam(self.config.user)
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{sqlite_path}{suffix}")
                if part.exists():
                    os.chown(part, account.pw_uid, account.pw_gid)

    def _drop_privileges(self) -> None:
        config = self.config
        try:
            if os.geteuid() == 0 and config.user is None:
                identity = read_identity()  # --allow-root: stays root, as asked
            else:
                identity = drop_privileges(config.user)
            refuse_root(config.allow_root)
        except PrivilegeError as exc:
            raise DaemonError(str(exc)) from exc
        self.identity = {"uid": identity.uids[1] if identity.uids else os.geteuid(),
                         "gid": identity.gids[1] if identity.gids else os.getegid(),
                         "cap_effective": identity.cap_effective}
        log.info("privileges: uid %s gid %s, effective capabilities %#x",
                 self.identity["uid"], self.identity["gid"], identity.cap_effective)

    def _begin_run(self, key: bytes) -> int:
        from mirrorscope.store.db import StoreError
        from mirrorscope.store.repository import Store

        config = self.config
        try:
            store = Store(config.db_url, hmac_key=key, store_raw=config.store_raw)
            try:
                return store.begin_run(
                    source=f"iface:{config.capture.iface}",
                    sha256=live_run_id(config.capture.iface, self.started_wall),
                    size=0, started_at=self.started_wall,
                )
            finally:
                store.close()  # the writer opens its own engine after the fork
        except StoreError as exc:
            raise DaemonError(str(exc)) from exc

    def _inherited(self, keep: LiveSource | None = None) -> list[Any]:
        """What a forked child must close: other sockets and rings, the control socket."""
        out: list[Any] = [slot.source for slot in self.slots if slot.source is not keep]
        if self.metrics is not None:
            out.append(self.metrics.socket)
        return out

    def _start_writer(self, key: bytes) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        setup = WriterSetup(ctrl=child_end, db_url=self.config.db_url, hmac_key=key,
                            run_id=self.run_id, counters=self.writer_counters,
                            store_raw=self.config.store_raw, alerts=self.config.alerts,
                            learn_seconds=self.config.learn_seconds,
                            refit_seconds=self.config.refit_seconds,
                            origin=self.config.origin)
        self.writer = self.ctx.Process(target=writer_main, name="mirrorscope-writer",
                                       args=(setup, [*self._inherited(), parent_end]))
        self.writer.start()
        child_end.close()
        self.ctrl = parent_end
        log.info("writer started (pid %d)", self.writer.pid)

    def _start_worker(self, slot: _Slot) -> None:
        assert self.ctrl is not None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self.ctrl, [b"conn"], [theirs.fileno()])
        finally:
            theirs.close()
        config = self.config
        setup = WorkerSetup(index=slot.index, source=slot.source, channel=mine,
                            counters=self.worker_counters, allow_root=config.allow_root,
                            body_keep=config.body_keep, checksum=config.checksum,
                            workers=config.workers,
                            flush_timeout=max(1.0, config.shutdown_timeout * 0.3),
                            drain_timeout=max(0.5, config.shutdown_timeout * 0.15))
        proc = self.ctx.Process(target=worker_main, name=f"mirrorscope-worker-{slot.index}",
                                args=(setup, [*self._inherited(keep=slot.source), self.ctrl]))
        proc.start()
        mine.close()
        slot.proc = proc
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("worker %d started (pid %d)", slot.index, proc.pid)

    # ------------------------------------------------------------------ running

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            if self.stop_reason is None:
                self.stop_reason = signal.Signals(signum).name

        def reload(_signum: int, _frame: object) -> None:
            self.reload_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _loop(self) -> None:
        config = self.config
        deadline = None if config.duration is None else time.monotonic() + config.duration
        next_sample = time.monotonic() + SAMPLE_EVERY
        next_health = time.monotonic() + config.health_interval
        while self.stop_reason is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.stop_reason = "duration"
                break
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            sentinels = [s.proc.sentinel for s in self.slots if s.proc is not None]
            if self.writer is not None:
                sentinels.append(self.writer.sentinel)
            multiprocessing.connection.wait(sentinels, timeout=0.2)
            self._supervise()
            if self.failure is not None:
                self.stop_reason = "failure"
                break
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + SAMPLE_EVERY
                self._sample()
            if now >= next_health:
                next_health = now + config.health_interval
                self._health()
        log.info("stopping (%s)", self.stop_reason)

    def _supervise(self) -> None:
        now = time.monotonic()
        if self.writer is not None and not self.writer.is_alive():
            self.failure = f"the writer exited with code {self.writer.exitcode}"
            log.error("%s: stopping", self.failure)
            return
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and not proc.is_alive():
                proc.join()
                self._retire(slot)
                slot.proc = None
                if proc.exitcode == EXIT_REFUSED:
                    self.failure = f"worker {slot.index} refused to run"
                    return
                if now - slot.started >= RESTART_HEALTHY_AFTER:
                    slot.backoff = 1.0
                slot.restarts += 1
                self.restarts += 1
                slot.restart_at = now + slot.backoff
                log.error("worker %d (pid %d) died with exit code %s; restart %d in %.0f s",
                          slot.index, proc.pid, proc.exitcode, slot.restarts, slot.backoff)
                slot.backoff = min(RESTART_BACKOFF_MAX, slot.backoff * 2)
            elif proc is None and slot.restart_at is not None and now >= slot.restart_at:
                self._start_worker(slot)

    def _retire(self, slot: _Slot) -> None:
        """Fold a dead worker's last counters into the totals and clear its row."""
        row = self.worker_counters.read(slot.index)
        for name in _SUMMED:
            self.retired[name] += row[name]
        for name in ("ts_first_us", "ts_last_us"):
            if row[name]:
                self.retired.setdefault(name, row[name])
                pick = min if name == "ts_first_us" else max
                self.retired[name] = pick(self.retired[name], row[name])
        self.worker_counters.clear(slot.index)

    def _reload(self) -> None:
        """SIGHUP: re-read the filter file (if any) and re-attach the filter."""
        config = self.config
        self.reloads += 1
        try:
            if config.bpf_file:
                config.capture.bpf = _read_filter(config.bpf_file)
            from mirrorscope.capture.live import compile_program

            program = compile_program(config.capture)
            for slot in self.slots:
                slot.source.set_program(program)
        except (OSError, bpf.BpfError, DaemonError) as exc:
            log.error("SIGHUP: reload failed, keeping the previous filter: %s", exc)
            return
        log.info("SIGHUP: reloaded; filter %r (%d instructions)", config.capture.bpf or "(all)",
                 len(program))

    # ------------------------------------------------------------------ health

    def _sample(self) -> dict[str, Any]:
        """Read kernel and worker counters into totals; refresh the metrics snapshot."""
        iface = self.config.capture.iface
        if self.failure is None and not Path("/sys/class/net", iface).exists():
            # A deleted interface never comes back to these sockets (a downed one does):
            # exit with an error so that the service manager starts us afresh.
            self.failure = f"interface {iface} disappeared"
            log.error("%s: stopping", self.failure)
        workers = []
        for slot in self.slots:
            try:
                stats = slot.source.kernel_stats()
            except OSError:
                continue
            slot.kernel["packets"] += stats.packets
            slot.kernel["drops"] += stats.drops
            slot.kernel["freeze_q"] += stats.freeze_q
            self.kernel["packets"] += stats.packets
            self.kernel["drops"] += stats.drops
            self.kernel["freeze_q"] += stats.freeze_q
        totals = dict(self.retired)
        for slot in self.slots:
            row = self.worker_counters.read(slot.index)
            for name in _SUMMED:
                totals[name] = totals.get(name, 0) + row[name]
            for name, pick in (("ts_first_us", min), ("ts_last_us", max)):
                if row[name]:
                    totals[name] = pick(totals.get(name) or row[name], row[name])
            alive = slot.proc is not None and slot.proc.is_alive()
            workers.append({"index": slot.index, "pid": row["pid"] if alive else 0,
                            "alive": alive, "restarts": slot.restarts, "row": row,
                            "kernel": dict(slot.kernel),
                            "rss": _rss(slot.proc.pid) if alive else 0})
        writer = self.writer_counters.read(0)
        writer_rss = _rss(self.writer.pid) if self.writer is not None else 0
        self.snapshot = {
            "time": time.time(),
            "totals": totals,
            "kernel": dict(self.kernel),
            "workers": workers,
            "writer": writer,
            "rss": {"supervisor": _rss(os.getpid()), "writer": writer_rss,
                    "workers": sum(w["rss"] for w in workers)},
            "restarts": self.restarts,
            "reloads": self.reloads,
        }
        return self.snapshot

    def _health(self) -> dict[str, Any]:
        """One health interval: deltas since the previous one, logged and kept."""
        snap = self._sample()
        totals = snap["totals"]
        current = {
            "packets": totals.get("packets", 0),
            "bytes": totals.get("bytes", 0),
            "kernel_packets": snap["kernel"]["packets"],
            "kernel_drops": snap["kernel"]["drops"],
            "flows": totals.get("flows", 0),
            "transactions": totals.get("transactions", 0),
            "acks": totals.get("acks", 0),
            "acks_above_gap": totals.get("acks_above_gap", 0),
            "records_written": snap["writer"].get("records_written", 0),
            "records_dropped": totals.get("records_dropped", 0),
        }
        previous = self.last_health or dict.fromkeys(current, 0)
        delta = {name: current[name] - previous.get(name, 0) for name in current}
        self.last_health = current
        rss = sum(snap["rss"].values())
        acks = delta.pop("acks")
        above = delta.pop("acks_above_gap")
        entry = {"time": round(snap["time"], 3), **delta, "rss_bytes": rss,
                 "capture_loss": round(above / acks, 6) if acks else 0.0,
                 "worker_restarts": self.restarts}
        self.health.append(entry)
        self._send_health(entry)
        log.info("health: packets=%d kernel_drops=%d flows=%d transactions=%d written=%d "
                 "dropped=%d rss=%.1fMiB loss=%.4f restarts=%d", entry["packets"],
                 entry["kernel_drops"], entry["flows"], entry["transactions"],
                 entry["records_written"], entry["records_dropped"], rss / 2**20,
                 entry["capture_loss"], self.restarts)
        return entry

    def _send_health(self, entry: dict[str, Any]) -> None:
        """Hand the interval to the writer for the sensor_health table (best effort)."""
        if self.ctrl is None or self.writer is None or not self.writer.is_alive():
            return
        row = {"ts": entry["time"], "interval_s": self.config.health_interval,
               **{k: v for k, v in entry.items() if k != "time"}}
        try:
            self.ctrl.send(CTRL_HEALTH + json.dumps(row).encode(), socket.MSG_DONTWAIT)
        except OSError as exc:  # a busy or gone writer costs this row, not the capture
            log.warning("health interval not sent to the writer: %s", exc)

    def _render_metrics(self) -> str:
        return render(build_metrics(self.snapshot, self.config.capture.iface))

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> int:
        config = self.config
        deadline = time.monotonic() + config.shutdown_timeout
        worker_deadline = time.monotonic() + config.shutdown_timeout * 0.6
        for slot in self.slots:
            if slot.proc is not None and slot.proc.is_alive():
                os.kill(slot.proc.pid, signal.SIGUSR1)
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                continue
            proc.join(max(0.0, worker_deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %d did not stop in time: killing it", slot.index)
                proc.kill()
                proc.join(2.0)
                self.killed += 1
        self._health()  # the last interval, with the final counters
        for slot in self.slots:
            if slot.proc is not None:
                self._retire(slot)
                slot.proc = None
        status = EXIT_FAILURE if self.failure else EXIT_OK
        if not self._finish_writer(deadline):
            status = EXIT_FAILURE
        log.info("stopped: %d packets, %d kernel drops, %d transactions, %d worker restart(s)",
                 self.retired.get("packets", 0), self.kernel["drops"],
                 self.retired.get("transactions", 0), self.restarts)
        return status

    def _final_stats(self) -> dict[str, Any]:
        totals = self.retired
        config = self.config
        acks = totals.get("acks", 0)
        return {
            "live": True,
            "packets": totals.get("packets", 0),
            "bytes": totals.get("bytes", 0),
            "flows": totals.get("flows", 0),
            "transactions": totals.get("transactions", 0),
            "gaps": totals.get("gaps", 0),
            "gap_bytes": totals.get("gap_bytes", 0),
            "anomalies_total": totals.get("anomalies", 0),
            "tunnels": totals.get("tunnels", 0),
            "kernel": dict(self.kernel),
            "capture_loss": round(totals.get("acks_above_gap", 0) / acks, 6) if acks else 0.0,
            "records_sent": totals.get("records_sent", 0),
            "records_dropped": totals.get("records_dropped", 0),
            "socket_errors": totals.get("socket_errors", 0),
            "workers": config.workers,
            "worker_restarts": self.restarts,
            "workers_killed": self.killed,
            "reloads": self.reloads,
            "stop_reason": self.stop_reason,
            "seconds": round(time.monotonic() - self.started_mono, 3),
            "capture": {
                "iface": config.capture.iface,
                "bpf": config.capture.bpf,
                "snaplen": config.capture.snaplen,
                "mode": "ring" if config.capture.ring else "socket",
                "ring_mb": config.capture.ring_mb,
                "promisc": config.capture.promisc,
            },
            "identity": self.identity,
            "health_interval": config.health_interval,
            "health": list(self.health),
        }

    def _finish_writer(self, deadline: float) -> bool:
        """Tell the writer to close the run; wait for it within the deadline."""
        writer, ctrl = self.writer, self.ctrl
        if writer is None or ctrl is None:
            return False
        totals = self.retired
        remaining = max(1.0, deadline - time.monotonic())
        payload: dict[str, Any] = {
            "stats": self._final_stats(),
            "timeout": max(0.5, remaining - 0.5),
            "ts_first": totals["ts_first_us"] / 1e6 if totals.get("ts_first_us") else None,
            "ts_last": totals["ts_last_us"] / 1e6 if totals.get("ts_last_us") else None,
        }
        if self.failure:
            payload["error"] = self.failure
        ok = False
        if writer.is_alive():
            try:
                ctrl.sendall(CTRL_FINISH + json.dumps(payload, default=str).encode())
                ctrl.settimeout(remaining)
                ok = ctrl.recv(64) == CTRL_DONE
            except OSError as exc:
                log.error("writer did not confirm the end of the run: %s", exc)
        writer.join(max(0.5, deadline - time.monotonic()))
        if writer.is_alive():
            log.error("writer did not stop in time: killing it (uncommitted records lost)")
            writer.kill()
            writer.join(2.0)
            return False
        ctrl.close()
        if not ok:
            self._mark_failed(self.failure or "the writer ended without closing the run")
        return ok and writer.exitcode == 0

    def _mark_failed(self, error: str) -> None:
        """Close the run as failed from the supervisor when the writer could not."""
        from mirrorscope.store.db import StoreError
        from mirrorscope.store.repository import Store

        try:
            store = Store(self.config.db_url, hmac_key=self.key)
            try:
                store.finish_run(self.run_id, status="failed", stats=self._final_stats(),
                                 error=error, finished_at=time.time())
            finally:
                store.close()
        except StoreError as exc:
            log.error("cannot mark run %d as failed: %s", self.run_id, exc)


def build_metrics(snapshot: dict[str, Any], iface: str) -> list[Metric]:
    """Prometheus metric families from a supervisor snapshot."""
    totals = snapshot.get("totals", {})
    writer = snapshot.get("writer", {})
    metrics = [
        Metric("mirrorscope_up", "gauge", "1 while the capture daemon runs.").add(1, iface=iface),
    ]
    by_worker = [
        ("mirrorscope_packets_total", "counter", "Frames analysed by the workers.", "packets"),
        ("mirrorscope_bytes_total", "counter", "Captured bytes analysed.", "bytes"),
        ("mirrorscope_flows_total", "counter", "TCP connections seen.", "flows"),
        ("mirrorscope_transactions_total", "counter", "HTTP transactions parsed.",
         "transactions"),
        ("mirrorscope_anomalies_total", "counter", "Anomalies raised.", "anomalies"),
        ("mirrorscope_stream_gap_bytes_total", "counter", "TCP bytes never seen (gaps).",
         "gap_bytes"),
        ("mirrorscope_records_dropped_total", "counter",
         "Records dropped because the writer fell behind.", "records_dropped"),
    ]
    for name, kind, help_text, field_name in by_worker:
        metric = Metric(name, kind, help_text)
        for worker in snapshot.get("workers", []):
            metric.add(worker["row"].get(field_name, 0), iface=iface,
                       worker=str(worker["index"]))
        metric.add(totals.get(field_name, 0) - sum(
            w["row"].get(field_name, 0) for w in snapshot.get("workers", [])),
            iface=iface, worker="exited")
        metrics.append(metric)
    kernel_packets = Metric("mirrorscope_kernel_packets_total", "counter",
                            "Frames the kernel passed to the capture sockets (drops included).")
    kernel_drops = Metric("mirrorscope_kernel_drops_total", "counter",
                          "Frames the kernel dropped because a capture buffer was full.")
    for worker in snapshot.get("workers", []):
        kernel_packets.add(worker["kernel"]["packets"], iface=iface, worker=str(worker["index"]))
        kernel_drops.add(worker["kernel"]["drops"], iface=iface, worker=str(worker["index"]))
    metrics += [kernel_packets, kernel_drops]
    acks = totals.get("acks", 0)
    metrics += [
        Metric("mirrorscope_capture_loss_ratio", "gauge",
               "Zeek-style capture loss: ACKs for bytes never seen / ACKs.")
        .add(totals.get("acks_above_gap", 0) / acks if acks else 0.0, iface=iface),
        Metric("mirrorscope_worker_restarts_total", "counter", "Workers re-forked after a crash.")
        .add(snapshot.get("restarts", 0), iface=iface),
        Metric("mirrorscope_reloads_total", "counter", "SIGHUP reloads.")
        .add(snapshot.get("reloads", 0), iface=iface),
        Metric("mirrorscope_records_written_total", "counter", "Records committed to the store.")
        .add(writer.get("records_written", 0), iface=iface),
        Metric("mirrorscope_records_failed_total", "counter",
               "Records lost to database errors.").add(writer.get("records_failed", 0),
                                                        iface=iface),
    ]
    rss = Metric("mirrorscope_resident_memory_bytes", "gauge", "Resident memory by process.")
    for process, value in snapshot.get("rss", {}).items():
        rss.add(value, iface=iface, process=process)
    metrics.append(rss)
    alive = Metric("mirrorscope_worker_up", "gauge", "1 if the worker process is running.")
    for worker in snapshot.get("workers", []):
        alive.add(1 if worker["alive"] else 0, iface=iface, worker=str(worker["index"]))
    metrics.append(alive)
    return metrics


def _rss(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _read_filter(path: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DaemonError(f"--bpf-file {path}: {exc.strerror}") from exc
    # tcpdump -F style: the whole file is the expression; '#' starts a comment line.
    return " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _load_key() -> bytes:
    from mirrorscope.keys import KeyFileError, load_or_create_key

    try:
        return load_or_create_key()
    except (KeyFileError, OSError) as exc:
        raise DaemonError(f"HMAC key: {exc}") from exc
