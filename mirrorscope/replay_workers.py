"""`mirrorscope replay --workers N`: N processes parse one capture, this one analyses it.

Each worker (mirrorscope/replay_shard.py) reads the file, keeps its shard of the flows,
and sends keyed groups of records through its own pipe.  This process merges the
streams back into single-process order and runs analysis and the store exactly as a
one-process replay does (same records, same order, same store batches), so the
transactions and findings are identical.

Division of work: this process (analysis and the database writes for every shard) is the
critical path, so the workers take what is per-transaction and order-free off it: they
build their transactions' stored rows (redaction, JSON encoding; store.rows.PreparedRows
rides behind the transactions it belongs to), and they run at WORKER_NICE so the
scheduler never hands them this process's core.  Inventory and detection stay here: their
state (templates, windows, baselines) depends on the order of every shard's transactions.

Robustness: workers are forked before the writer thread starts, die with this process
(PR_SET_PDEATHSIG), ignore SIGINT (Ctrl-C reaches the whole process group; this process
stops them), and a worker that dies or fails ends the file with a one-line error naming
it (the run is marked failed, the CLI exits 2).  Nothing here waits without a timeout
on a process that may be gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import heapq
import io
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from mirrorscope import model, pipeline
from mirrorscope.capture.live_privileges import die_with_parent
from mirrorscope.capture.pcapfile import PcapSource
from mirrorscope.model import Anomaly, ConnectionOpened, Direction, HttpTransaction
from mirrorscope.pipeline import FileResult, Progress, ReplayStats, iter_frames_safely
from mirrorscope.replay_shard import END, Group, ShardAnalyzer
from mirrorscope.store.rows import PreparedRows, RowBuilder, prepare_rows

MAX_WORKERS = 64
EMIT_EVERY = 2048  # frames between a worker's messages (the merge's watermark step)
BACKLOG_GROUPS = 50_000  # groups buffered per worker before this process stops reading it
PIPE_BYTES = 1 << 20  # kernel pipe buffer asked for (Linux caps it at pipe-max-size)
POLL_SECONDS = 0.5  # how often a blocked merge checks that its workers are alive
STOP_SECONDS = 2.0  # grace for workers to exit before they are killed
# Workers yield the CPU to this process: it runs analysis and the store for all of them,
# so every slice the scheduler gives a worker instead of it delays the end of the run,
# while a worker that falls behind only makes the merge wait.  Measured on the 53 MB
# slice with 2 workers on 2 cores: nice 0 took 13.2-14.2 s, nice 10 11.9-12.0 s.  Not
# 19: under other load a worker must still progress.
WORKER_NICE = 10
_F_SETPIPE_SZ = 1031
_first = itemgetter(0)


class WorkerError(RuntimeError):
    """A replay worker died or failed: the message names the file and the worker."""


def feed_sharded(
    parse: ShardedParse,
    size: int,
    result: FileResult,
    observe: Callable[[list[object]], None],
    drain: Callable[[list[object]], None],
    on_progress: Callable[[Progress], None] | None,
) -> tuple[ReplayStats, float | None, float]:
    """Merge the workers' records and hand them on; (stats, first, newest packet time).

    ``observe`` (analysis) and ``drain`` (the writer) get the records at the same points
    as in a one-process replay, so store batches and findings come out identical.
    """
    out: list[object] = []
    prepared = 0  # PreparedRows in out: not records, so not counted in the batch size
    current = -1
    next_progress = 4096
    path = str(parse.path)
    try:
        for key, items in parse.groups():
            frame = key[0]
            if frame != current:
                # The single process checks the batch size after every frame.
                if (current >= 0 and current != END
                        and len(out) - prepared >= pipeline.STORE_BATCH):
                    observe(out)
                    drain(out)
                    prepared = 0
                current = frame
                if on_progress is not None and END > frame >= next_progress:
                    next_progress = frame + 4096
                    on_progress(Progress(path, parse.bytes_read, size, frame,
                                         parse.transactions))
            out += items
            if items and type(items[-1]) is PreparedRows:
                prepared += 1
    except WorkerError as exc:
        result.error = str(exc)
    observe(out)
    drain(out)
    stats = parse.merged_stats()
    if result.error is None and parse.error:
        result.error = parse.error
    if on_progress is not None:
        on_progress(Progress(path, size, size, stats.packets, stats.transactions))
    return stats, parse.ts_first, parse.last_ts


class ShardedParse:
    """The worker processes of one file, and the merge of their record streams."""

    def __init__(self, path: Path, workers: int, *, until: str = "http",
                 body_keep: int = 64 << 10, checksum: str = "auto",
                 rows: tuple[RowBuilder, int] | None = None) -> None:
        """rows: (the store's row builder, run id): workers build their transactions'
        stored rows, so this process, the critical path, only inserts them."""
        if not 2 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 2 and {MAX_WORKERS}, not {workers}")
        self.path = path
        self.workers = workers
        self._setup = {"until": until, "body_keep": body_keep, "checksum": checksum,
                       "rows": rows}
        self._procs: list[Any] = []
        self._conns: list[multiprocessing.connection.Connection] = []
        self._done: list[dict[str, Any] | None] = [None] * workers
        self._transactions = [0] * workers
        self.bytes_read = 0
        self.error: str | None = None  # damage in the file (every worker meets it)
        self.ts_first: float | None = None
        self.last_ts = 0.0
        self.anomalies: Counter[str] = Counter()  # in merged order, as one process counts
        self.flows = 0

    # ----------------------------------------------------------------- processes

    def __enter__(self) -> ShardedParse:
        context = multiprocessing.get_context("fork")  # no re-import; forked before threads
        try:
            for index in range(self.workers):
                receive, send = context.Pipe(duplex=False)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(send.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
                inherited = [*self._conns, receive]
                proc = context.Process(
                    target=_worker_main, name=f"mirrorscope-replay-{index + 1}",
                    args=(str(self.path), index, self.workers, self._setup, send, inherited),
                    daemon=True)
                proc.start()
                send.close()  # the worker holds the only write end: its death is an EOF
                self._conns.append(receive)
                self._procs.append(proc)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self._procs:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    proc.terminate()
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self._conns:
            conn.close()

    # --------------------------------------------------------------------- merge

    @property
    def transactions(self) -> int:
        """Transactions the workers reported so far (for progress)."""
        return sum(self._transactions)

    def groups(self) -> Iterator[Group]:
        """Every worker's keyed groups, merged into single-process order."""
        n = self.workers
        pending: list[deque[Group]] = [deque() for _ in range(n)]
        through = [-1] * n  # worker w has sent every group with frame index <= through[w]
        anomalies = self.anomalies
        while True:
            safe = min(through)
            runs = []
            for queue in pending:
                run = []
                while queue and queue[0][0][0] <= safe:
                    run.append(queue.popleft())
                if run:
                    runs.append(run)
            merged = runs[0] if len(runs) == 1 else heapq.merge(*runs, key=_first)
            for group in merged:
                for item in group[1]:
                    kind = type(item)
                    if kind is Anomaly:
                        anomalies[item.kind] += 1  # type: ignore[attr-defined]
                    elif kind is ConnectionOpened:
                        self.flows += 1
                yield group
            if all(done is not None for done in self._done) and safe >= END:
                return
            self._receive(pending, through)

    def _receive(self, pending: list[deque[Group]], through: list[int]) -> None:
        """Read what the workers sent; block (with liveness checks) on the laggards."""
        safe = min(through)
        readable = [w for w in range(self.workers)
                    if self._done[w] is None and len(pending[w]) < BACKLOG_GROUPS]
        laggards = [w for w in readable if through[w] == safe] or readable
        conns = {self._conns[w]: w for w in readable}
        ready = multiprocessing.connection.wait(list(conns), timeout=0)
        if not any(conns[c] in laggards for c in ready):
            wanted = [self._conns[w] for w in laggards]
            while True:
                ready = multiprocessing.connection.wait(wanted, timeout=POLL_SECONDS)
                if ready:
                    break
                for w in laggards:
                    if not self._procs[w].is_alive() and not self._conns[w].poll():
                        raise self._died(w)
        for conn in ready:
            self._take(conns[conn], pending, through)

    def _take(self, w: int, pending: list[deque[Group]], through: list[int]) -> None:
        collecting = gc.isenabled()
        gc.disable()  # unpickling builds many containers: cyclic GC passes tripled its cost
        try:
            message = pickle.loads(self._conns[w].recv_bytes())
        except (EOFError, OSError, pickle.UnpicklingError):
            raise self._died(w) from None
        finally:
            if collecting:
                gc.enable()
        kind = message[0]
        if kind == "groups":
            _, done_through, bytes_read, transactions, groups = message
            pending[w].extend(groups)
            through[w] = done_through
            self._transactions[w] = transactions
            if w == 0:
                self.bytes_read = bytes_read
        elif kind == "done":
            self._done[w] = message[1]
            if w == 0:
                info = message[1]
                self.error = info["error"]
                self.ts_first = info["ts_first"]
                self.last_ts = info["last_ts"]
        else:  # "failed": the worker's own one-line account
            raise WorkerError(f"{self.path}: replay worker {w + 1} of {self.workers} "
                              f"failed: {message[1]}")

    def _died(self, w: int) -> WorkerError:
        proc = self._procs[w]
        proc.join(1.0)
        code = proc.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return WorkerError(f"{self.path}: replay worker {w + 1} of {self.workers} died "
                           f"({how}); the capture was not fully replayed")

    # --------------------------------------------------------------------- stats

    def merged_stats(self) -> ReplayStats:
        """The file's stats as one process would count them (from the workers' parts)."""
        stats = ReplayStats()
        stats.anomalies = self.anomalies
        stats.flows = self.flows
        parts = [done for done in self._done if done is not None]
        for part in parts:
            for name in ("packets", "bytes", "segments", "transactions", "gaps",
                         "gap_bytes"):
                setattr(stats, name, getattr(stats, name) + part[name])
            _add(stats.decode, part["decode_fast"])
            _add(stats.tcp, part["tcp"])
            _add(stats.http, part["http"])
        if parts and self._done[0] is not None:
            _add(stats.decode, self._done[0]["decode_every"])  # frames all workers decoded
        return stats


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Sum counters (and dicts of counters) into ``total``."""
    for key, value in part.items():
        if isinstance(value, dict):
            into = total.setdefault(key, {})
            for sub, count in value.items():
                into[sub] = into.get(sub, 0) + count
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)


# ------------------------------------------------------------------------ worker side


def _direction(value: int) -> Direction:
    """Unpickle a Direction without the Enum constructor (two values, looked up)."""
    return _DIRECTIONS[value]


_DIRECTIONS = (Direction.ORIG, Direction.RESP)


def _model_reducers() -> dict[type, Callable[[Any], tuple[Any, tuple[Any, ...]]]]:
    """Pickle the model's records as ``cls(*fields)``.

    The default for frozen slotted dataclasses goes through dataclasses' Python-level
    __getstate__/__setstate__ (fields() per object): measured 5x slower to load, which
    made the merge the bottleneck.  Every model field is an __init__ argument.
    """
    table: dict[type, Callable[[Any], tuple[Any, tuple[Any, ...]]]] = {}
    for obj in vars(model).values():
        if (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                and obj.__module__ == model.__name__):
            names = [f.name for f in dataclasses.fields(obj)]
            get = attrgetter(*names)
            if len(names) == 1:
                table[obj] = lambda o, c=obj, g=get: (c, (g(o),))
            else:
                table[obj] = lambda o, c=obj, g=get: (c, g(o))
    table[Direction] = lambda d: (_direction, (int(d),))
    return table


def _dumps(message: Any, table: dict[type, Any]) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = table  # type: ignore[assignment]
    collecting = gc.isenabled()
    gc.disable()
    try:
        pickler.dump(message)
    finally:
        if collecting:
            gc.enable()
    return buffer.getvalue()



def _worker_main(path: str, index: int, workers: int, setup: dict[str, Any],
                 conn: multiprocessing.connection.Connection, inherited: list[Any]) -> None:
    """Process entry point (forked): parse the shard, send groups, then a summary."""
    for other in inherited:  # the parent's read ends: a dead peer must show as EOF there
        with contextlib.suppress(OSError):
            other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    with contextlib.suppress(OSError, AttributeError):
        die_with_parent(signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    try:
        _parse(path, index, workers, setup, conn)
    except BrokenPipeError:
        os._exit(1)  # the parent is gone: nobody to tell
    except BaseException as exc:  # told to the parent, which names the worker
        with contextlib.suppress(Exception):
            conn.send_bytes(pickle.dumps(("failed", f"{type(exc).__name__}: {exc}")))
        os._exit(1)
    conn.close()


def _parse(path: str, index: int, workers: int, setup: dict[str, Any],
           conn: multiprocessing.connection.Connection) -> None:
    analyzer = ShardAnalyzer(index, workers, until=setup["until"],
                             body_keep=setup["body_keep"], checksum=setup["checksum"])
    result = FileResult(source=path)
    stats = analyzer.stats
    send = conn.send_bytes
    table = _model_reducers()
    prepare = setup["rows"]
    with PcapSource(path) as source:
        def emit(through: int, groups: list[Group]) -> None:
            if prepare is not None:
                builder, run_id = prepare
                for _key, items in groups:
                    txs = [item for item in items if type(item) is HttpTransaction]
                    if txs:
                        items.append(prepare_rows(builder, run_id, txs))
            send(_dumps(("groups", through, source.bytes_read, stats.transactions, groups),
                        table))

        analyzer.run(iter_frames_safely(source, result), emit, EMIT_EVERY)
    fast, every = analyzer.decode_stats()
    send(pickle.dumps(("done", {
        "packets": stats.packets, "bytes": stats.bytes, "segments": stats.segments,
        "transactions": stats.transactions, "gaps": stats.gaps, "gap_bytes": stats.gap_bytes,
        "decode_fast": fast, "decode_every": every, "tcp": stats.tcp, "http": stats.http,
        "error": result.error, "ts_first": analyzer.ts_first, "last_ts": analyzer._last_ts,
    }), pickle.HIGHEST_PROTOCOL))
