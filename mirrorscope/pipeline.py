"""The one place that wires the stages: capture -> decode -> TCP -> HTTP -> store.

Stages never import each other; this module composes them, owns the I/O loop, the
periodic packet-time expiry and the batching towards the store.  Everything here is
plain orchestration: the behaviour lives in the stages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorscope.analysis.detection import DetectionConfig, Detector
from mirrorscope.analysis.inventory import Inventory
from mirrorscope.analysis.inventory_config import InventoryConfig
from mirrorscope.analysis.models_io import DetectionError, DetectionModel
from mirrorscope.analysis.origin import OriginConfig
from mirrorscope.capture.decode import Decoder
from mirrorscope.capture.pcapfile import CaptureFileError, PcapSource
from mirrorscope.collector import replay_collector
from mirrorscope.model import (
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    EndpointSummary,
    Finding,
    HttpTransaction,
    RawFrame,
    StreamData,
    StreamGap,
)
from mirrorscope.reassembly.http1 import HttpObserver
from mirrorscope.reassembly.tcp import (
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_FLOWS,
    DEFAULT_MAX_HALF_OPEN,
    TcpReassembler,
)
from mirrorscope.writer import BatchWriter

if TYPE_CHECKING:
    from mirrorscope.alerts import AlertSink

STAGES = ("decode", "tcp", "http", "analysis", "store")
EXPIRE_EVERY_SECONDS = 1.0  # packet-time interval between timeout sweeps
STORE_BATCH = 2000  # records per database transaction
# Batches waiting for the writer thread.  It bounds memory: 64 gave 495 MB; with 4 the
# 500 MB capture peaked at 149 MB against 138 MB for the 53 MB slice, with 1 at 131 MB
# against 120 MB (+9 %), and no slower (181 s vs 198 s).  A replay reads a file, so a
# parser waiting on a slow database loses nothing.
WRITER_QUEUE_BATCHES = 1
DEFAULT_DB = "sqlite:///mirrorscope.db"


@dataclass(slots=True)
class ReplayOptions:
    """What to run and where to write."""

    until: str = "store"  # last stage to run: decode | tcp | http | store
    db_url: str | None = None
    force: bool = False  # re-ingest a capture whose content hash is already complete
    store_raw: bool = False  # keep secrets unredacted in stored evidence (opt-in)
    body_keep: int = 64 << 10
    hmac_key: bytes | None = None
    spec: dict | None = None  # a user's OpenAPI document: shadow/zombie findings
    model_name: str = "default"  # detection model to score with, when one was learned
    learn_seconds: float | None = None  # learn a baseline from the first N s, then score
    alerts_jsonl: str | None = None  # append findings as JSON lines (file 0600)
    webhook: str | None = None  # POST each finding as JSON
    syslog: str | None = None  # "HOST:PORT", "HOST" (514) or a unix socket path
    origin: OriginConfig | None = None  # trusted proxies, internal/partner networks
    checksum: str = "auto"  # TCP checksums: auto (offload-aware) | strict (drop bad) | off
    workers: int = 1  # parse processes per file (flows sharded; analysis stays in one)


@dataclass(slots=True)
class Progress:
    """A progress snapshot handed to the caller's callback."""

    source: str
    bytes_read: int
    size: int
    packets: int
    transactions: int


@dataclass(slots=True)
class FileResult:
    """What happened to one input file."""

    source: str
    packets: int = 0
    bytes: int = 0
    skipped: bool = False  # already ingested (same content hash)
    error: str | None = None  # one-line message naming the file (and offset)
    run_id: int | None = None


@dataclass(slots=True)
class ReplayStats:
    """Totals across all files of one replay."""

    packets: int = 0
    bytes: int = 0
    segments: int = 0
    flows: int = 0
    transactions: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    seconds: float = 0.0
    anomalies: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)  # by kind
    endpoints: int = 0
    alerts: dict[str, object] = field(default_factory=dict)  # sink counters after close()
    files: list[FileResult] = field(default_factory=list)
    decode: dict[str, object] = field(default_factory=dict)
    tcp: dict[str, object] = field(default_factory=dict)
    http: dict[str, object] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        """One-line error messages, one per damaged or unreadable input."""
        return [f.error for f in self.files if f.error]


def _counters(obj: object) -> dict[str, object]:
    """A stage's stats object as a plain dict (dataclass with slots, or anything with __dict__)."""
    if obj is None:
        return {}
    names = (getattr(obj, "__slots__", None) or getattr(obj, "__dataclass_fields__", None)
             or vars(obj))
    out: dict[str, object] = {}
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int | float | str):
            out[name] = value
        elif isinstance(value, dict):
            out[name] = dict(value)
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Content hash of a capture file: the ledger key that makes replays idempotent."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shared_limits(share: int) -> dict[str, int]:
    """The reassembler's global bounds for one of ``share`` processes splitting the flows.

    Without the split, N workers would buffer N times the memory cap (and track N times
    the flows) the operator configured for the sensor."""
    if share < 1:
        raise ValueError(f"share must be >= 1, not {share}")
    return {"max_flows": max(1, DEFAULT_MAX_FLOWS // share),
            "max_half_open": max(1, DEFAULT_MAX_HALF_OPEN // share),
            "max_buffered_bytes": max(1, DEFAULT_MAX_BUFFERED_BYTES // share)}


class Analyzer:
    """Decode -> TCP -> HTTP for one stream of frames; collects what comes out."""

    def __init__(self, until: str = "http", *, body_keep: int = 64 << 10,
                 checksum: str = "auto", share: int = 1) -> None:
        """checksum: TCP checksum policy, auto | strict | off (see capture/checksum.py).

        share: how many processes split the flows (replay or capture workers): each keeps
        1/share of the reassembler's global bounds, so together they hold what one would."""
        if until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; choose one of {', '.join(STAGES)}")
        self.until = until
        self.decoder = Decoder(checksum=checksum)
        self.tcp = TcpReassembler(**shared_limits(share)) if until != "decode" else None
        self.http = (HttpObserver(body_keep=body_keep)
                     if until in ("http", "analysis", "store") else None)
        self.stats = ReplayStats()
        self._next_expire: float | None = None
        self._last_ts = 0.0

    # The output of the pipeline is a list of records for the store (or the caller).
    def feed(self, frame: RawFrame, out: list[object]) -> None:
        """Push one frame through the configured stages, appending results to ``out``."""
        self.stats.packets += 1
        self.stats.bytes += len(frame.data)
        ts = frame.ts
        if ts > self._last_ts:
            self._last_ts = ts
        for item in self.decoder.feed(frame):
            if isinstance(item, Anomaly):
                self._anomaly(item, out)
                continue
            self.stats.segments += 1
            if self.tcp is not None:
                self._stream_events(self.tcp.feed(item), out)
        if self._next_expire is None:
            self._next_expire = ts + EXPIRE_EVERY_SECONDS
        elif ts >= self._next_expire:
            self._next_expire = ts + EXPIRE_EVERY_SECONDS
            self._expire(ts, out)

    def tick(self, now: float, out: list[object]) -> None:
        """Run timeouts at ``now`` without a packet (live capture on a quiet link)."""
        if now > self._last_ts:
            self._last_ts = now
        self._expire(now, out)

    def _expire(self, now: float, out: list[object]) -> None:
        for item in self.decoder.expire(now):
            self._anomaly(item, out)
        if self.tcp is not None:
            self._stream_events(self.tcp.expire(now), out)

    def finish(self, out: list[object]) -> None:
        """End of input: flush every open flow so nothing buffered is lost."""
        now = self._last_ts
        for item in self.decoder.expire(now + 1e9):
            self._anomaly(item, out)
        if self.tcp is not None:
            self._stream_events(self.tcp.flush(now), out)
        self.stats.decode = _counters(getattr(self.decoder, "stats", None))
        if self.tcp is not None:
            self.stats.tcp = _counters(getattr(self.tcp, "stats", None))
        if self.http is not None:
            self.stats.http = _counters(getattr(self.http, "stats", None))

    def _anomaly(self, item: Anomaly, out: list[object]) -> None:
        self.stats.anomalies[item.kind] += 1
        out.append(item)

    def _stream_events(self, events: Iterable[object], out: list[object]) -> None:
        http = self.http
        stats = self.stats
        for event in events:
            kind = type(event)
            # Most events are in-order data: test for it first, with one type() lookup.
            if kind is not StreamData:
                if kind is Anomaly:
                    self._anomaly(event, out)  # type: ignore[arg-type]
                    continue
                if kind is ConnectionOpened:
                    stats.flows += 1
                    out.append(event)
                elif kind is StreamGap:
                    stats.gaps += 1
                    stats.gap_bytes += event.length  # type: ignore[attr-defined]
            if http is not None:
                for result in http.feed(event):  # type: ignore[arg-type]
                    if type(result) is HttpTransaction:
                        stats.transactions += 1
                        out.append(result)
                    else:
                        self._anomaly(result, out)  # type: ignore[arg-type]
            if kind is ConnectionClosed:
                # After the HTTP layer flushed the connection's last transactions, so the
                # connection's final accounting lands after everything it carried.
                out.append(event)


def transactions_from_pcap(path: str | os.PathLike[str]) -> list[HttpTransaction]:
    """Decode, reassemble and parse one capture file; return its HTTP transactions."""
    analyzer = Analyzer("http")
    out: list[object] = []
    with PcapSource(path) as source:
        try:
            for frame in source:
                analyzer.feed(frame, out)
        finally:
            analyzer.finish(out)
    return [item for item in out if isinstance(item, HttpTransaction)]


def iter_frames_safely(source: PcapSource, result: FileResult) -> Iterator[RawFrame]:
    """Yield a source's frames; damage ends the file with a recorded one-line error."""
    try:
        yield from source
    except CaptureFileError as exc:
        result.error = str(exc)


def replay(
    paths: Sequence[str | os.PathLike[str]],
    options: ReplayOptions | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReplayStats:
    """Replay capture files through the stages (and into the store when asked)."""
    from mirrorscope.alerts import make_sinks

    options = options or ReplayOptions()
    sink = make_sinks(options.alerts_jsonl, options.webhook, options.syslog)  # AlertError early
    started = time.perf_counter()
    store = None
    total = ReplayStats()
    try:
        if options.until == "store":
            store = _open_store(options)
        with replay_collector():
            for path in paths:
                result = _replay_one(Path(path), options, store, total, on_progress, sink)
                total.files.append(result)
    finally:
        if store is not None:
            store.close()
        if sink is not None:
            total.alerts = sink.close()  # bounded: a webhook drains for at most its timeout
    total.seconds = time.perf_counter() - started
    return total


def learn_baseline(paths: Sequence[str | os.PathLike[str]], *, db_url: str,
                   name: str = "default", hmac_key: bytes | None = None,
                   origin: OriginConfig | None = None) -> tuple[int, int, list[str]]:
    """Learn a detection model from known-good captures and store it; (id, learned, errors).

    ``origin`` names the trusted proxies, so principals' networks are learned from the
    clients behind them."""
    from mirrorscope.store.analysis_repo import AnalysisStore
    from mirrorscope.store.repository import Store

    key = hmac_key if hmac_key is not None else _hmac_key(ReplayOptions())
    Store(db_url, hmac_key=key).close()  # creates or checks the schema
    origin = origin or OriginConfig()
    inventory = Inventory(config=InventoryConfig(origin=origin), hmac_key=key)
    detector = Detector(endpoint_of=inventory.endpoint_of, hmac_key=key,
                        config=DetectionConfig(origin=origin))
    errors: list[str] = []
    learned = 0
    for path in paths:
        result = FileResult(source=str(path))
        try:
            source = PcapSource(path)
        except CaptureFileError as exc:
            errors.append(str(exc))
            continue
        analyzer = Analyzer("http")
        out: list[object] = []
        with source:
            for frame in iter_frames_safely(source, result):
                analyzer.feed(frame, out)
                learned += _learn_from(out, inventory, detector)
            analyzer.finish(out)
            learned += _learn_from(out, inventory, detector)
        if result.error:
            errors.append(result.error)
    model = detector.fit()
    with AnalysisStore(db_url) as analysis_store:
        model_id = analysis_store.save_model(name, "detection", json.loads(model.to_json()))
    return model_id, learned, errors


def _learn_from(out: list[object], inventory: Inventory, detector: Detector) -> int:
    learned = 0
    for item in out:
        if isinstance(item, HttpTransaction):
            inventory.feed(item)
            detector.learn(item)
            learned += 1
    out.clear()
    return learned


def _hmac_key(options: ReplayOptions) -> bytes:
    from mirrorscope.keys import load_or_create_key

    return options.hmac_key if options.hmac_key is not None else load_or_create_key()


class RunAnalysis:
    """Inventory and detection over one run's transactions and anomalies."""

    def __init__(self, hmac_key: bytes, *, spec: dict | None = None,
                 model: DetectionModel | None = None, learn_seconds: float | None = None,
                 refit_seconds: float | None = None, origin: OriginConfig | None = None) -> None:
        """learn_seconds: learn a baseline from the first N seconds of packet time, then score.
        refit_seconds: refit every N seconds on a reservoir of recent unflagged traffic.
        origin: trusted proxies and internal/partner networks (client resolution, exposure)."""
        origin = origin or OriginConfig()
        self.inventory = Inventory(config=InventoryConfig(
            spec=spec, origin=origin,
            internal_networks=tuple(dict.fromkeys(origin.internal_cidrs))), hmac_key=hmac_key)
        config = DetectionConfig(learn_unflagged=refit_seconds is not None, origin=origin)
        self.detector = Detector(endpoint_of=self.inventory.endpoint_of, hmac_key=hmac_key,
                                 model=model, config=config)
        self._window = self.detector.config.window_seconds
        self._findings: list[Finding] = []
        self._learn_seconds = learn_seconds
        self._learn_until: float | None = None  # packet time the learning phase ends
        self._refit_seconds = refit_seconds
        self._next_refit: float | None = None
        self.fits = 0  # baselines fitted in this run (first-N-seconds and refits)
        self.fit_errors: list[str] = []
        if refit_seconds is not None and learn_seconds is None:
            self._next_refit = -math.inf  # refits start from the first scored transaction

    @property
    def learning(self) -> bool:
        """Still in the first-N-seconds learning phase."""
        return self._learn_seconds is not None

    def observe(self, items: Iterable[object]) -> None:
        """Feed the transactions and anomalies of one batch (in capture order)."""
        inventory, detector, found = self.inventory, self.detector, self._findings
        for item in items:
            if isinstance(item, HttpTransaction):
                # The inventory's own findings are taken once, with final counts, at the end.
                inventory.feed(item)
                if self._learn_seconds is not None and self._learning(item):
                    detector.learn(item)
                    continue
                found += detector.feed(item)
                if self._next_refit is not None:
                    self._maybe_refit(item)
            elif isinstance(item, Anomaly):
                found += detector.feed_anomaly(item)
            elif type(item) is ConnectionClosed:
                detector.forget_connection(item.conn_id)

    def _learning(self, tx: HttpTransaction) -> bool:
        ts = _tx_time(tx)
        if self._learn_until is None:
            self._learn_until = ts + (self._learn_seconds or 0.0)
        if ts < self._learn_until:
            return True
        self._learn_seconds = None  # the phase is over: fit once, then score from here on
        self._fit()
        return False

    def _maybe_refit(self, tx: HttpTransaction) -> None:
        ts = _tx_time(tx)
        if self._next_refit is None or self._refit_seconds is None:
            return
        if self._next_refit == -math.inf:
            self._next_refit = ts + self._refit_seconds
        elif ts >= self._next_refit:
            self._next_refit = ts + self._refit_seconds
            self._fit()

    def _fit(self) -> None:
        try:
            self.detector.fit()
            self.fits += 1
        except DetectionError as exc:  # too little traffic to learn from: rules only
            self.fit_errors.append(str(exc))
        if self._refit_seconds is not None and self._next_refit is None:
            self._next_refit = -math.inf  # armed: the next transaction sets the clock

    def snapshot(self) -> tuple[list[EndpointSummary], list[tuple[Finding, float]]]:
        """The endpoints so far, and findings of closed windows with their window start.

        Storing a snapshot again for the same run replaces the earlier one (per-run rows),
        so a live sensor can persist one every interval.
        """
        window = self._window
        summaries = self.inventory.summaries()
        keyed = [(f, math.floor(f.ts_first / window) * window) for f in self._findings]
        keyed += [(f, 0.0) for f in self.inventory.findings()]  # one per endpoint, whole run
        return summaries, exposure_notes(keyed, summaries)

    def finish(self, now: float) -> tuple[list[EndpointSummary], list[tuple[Finding, float]]]:
        """Close every window: the endpoints, and findings with their aggregation window."""
        self._findings += self.detector.flush(math.inf)
        return self.snapshot()


def exposure_notes(findings: list[tuple[Finding, float]],
                   summaries: list[EndpointSummary]) -> list[tuple[Finding, float]]:
    """Findings on endpoints that external clients reach get a line saying so."""
    external = {s.key: s.doc["exposure"] for s in summaries
                if isinstance(s.doc.get("exposure"), dict) and s.doc["exposure"].get("external")}
    if not external:
        return findings
    out: list[tuple[Finding, float]] = []
    for finding, window in findings:
        exposure = external.get(finding.endpoint) if finding.endpoint is not None else None
        if exposure is not None:
            note = {"feature": "endpoint.exposure", "value": "external",
                    "baseline": f"reached by external clients ({exposure['external']} "
                                f"request(s)): exploitable from the internet"}
            finding = replace(finding, explanation=(*finding.explanation, note))
        out.append((finding, window))
    return out


def _tx_time(tx: HttpTransaction) -> float:
    if tx.request is not None:
        return tx.request.ts_start
    return tx.response.ts_start if tx.response is not None else 0.0


def _load_model(options: ReplayOptions, store: object | None) -> DetectionModel | None:
    """The learned detection model, when a baseline was stored (rules run regardless)."""
    if store is None:  # analysis without the store stage reads no database
        return None
    return load_detection_model(options.db_url or DEFAULT_DB, options.model_name,
                                _hmac_key(options))


def load_detection_model(db_url: str, name: str, hmac_key: bytes) -> DetectionModel | None:
    """The stored detection model called ``name``, or None when no baseline was learned."""
    from mirrorscope.store.analysis_repo import AnalysisStore

    with AnalysisStore(db_url) as analysis_store:
        record = analysis_store.load_model(name, kind="detection")
    if record is None:
        return None
    return DetectionModel.from_json(json.dumps(record["params"]), hmac_key=hmac_key)


def store_analysis(db_url: str, run_id: int, summaries: list[EndpointSummary],
                   findings: list[tuple[Finding, float]]) -> list[int]:
    """Persist one run's endpoints and findings (replacing what the run stored before)."""
    from mirrorscope.store.analysis_repo import AnalysisStore

    with AnalysisStore(db_url) as analysis_store:
        analysis_store.replace_endpoints(run_id, summaries)
        return analysis_store.upsert_findings(run_id, findings)


def _open_store(options: ReplayOptions):
    from mirrorscope.store.repository import Store

    return Store(options.db_url or DEFAULT_DB, store_raw=options.store_raw,
                 hmac_key=_hmac_key(options))


def _replay_one(
    path: Path,
    options: ReplayOptions,
    store: object | None,
    total: ReplayStats,
    on_progress: Callable[[Progress], None] | None,
    sink: AlertSink | None = None,
) -> FileResult:
    result = FileResult(source=str(path))
    try:
        source = PcapSource(path)
    except CaptureFileError as exc:
        result.error = str(exc)
        return result
    run_id = None
    with source, contextlib.ExitStack() as cleanup:
        if store is not None:
            sha = file_sha256(path)
            if not options.force and store.find_completed_run(sha):
                result.skipped = True
                return result
            run_id = store.begin_run(source=str(path), sha256=sha, size=source.size,
                                     started_at=time.time())
            result.run_id = run_id
        parse = None
        if options.workers > 1 and options.until != "decode":
            from mirrorscope.replay_workers import ShardedParse, feed_sharded

            # Forked before the writer thread starts; stopped (if still running) on exit.
            parse = cleanup.enter_context(ShardedParse(
                path, options.workers, until="http" if options.until == "store" else
                options.until, body_keep=options.body_keep, checksum=options.checksum,
                rows=(store.row_builder(), run_id) if store is not None and run_id is not None
                else None))
        # A bounded queue to a writer thread: locked or unreachable databases are retried
        # with backoff while parsing goes on; what cannot be written is counted, never raised.
        writer = BatchWriter(store, run_id, WRITER_QUEUE_BATCHES) if store is not None else None
        analysis = (RunAnalysis(_hmac_key(options), spec=options.spec,
                                model=None if options.learn_seconds else
                                _load_model(options, store),
                                learn_seconds=options.learn_seconds, origin=options.origin)
                    if options.until in ("analysis", "store") else None)
        analyzer: Analyzer | None = None
        if parse is not None:
            stats, ts_first, ts_last = feed_sharded(
                parse, source.size, result, _observer(analysis),
                lambda out: _drain(writer, out), on_progress)
        else:
            analyzer = Analyzer("http" if options.until == "store" else options.until,
                                body_keep=options.body_keep, checksum=options.checksum)
            ts_first = _feed(source, path, analyzer, result, analysis, writer, on_progress)
            stats, ts_last = analyzer.stats, analyzer._last_ts
        write_counts = writer.close() if writer is not None else {}
        if write_counts.get("dropped_items") or write_counts.get("failed_items"):
            # Not everything landed: leave the run failed so the next replay redoes it.
            result.error = result.error or (
                f"{path}: {write_counts.get('dropped_items', 0)} records dropped and "
                f"{write_counts.get('failed_items', 0)} failed to be written to the database")
        if on_progress is not None and analyzer is not None:
            on_progress(Progress(str(path), source.size, source.size, stats.packets,
                                 stats.transactions))
    result.packets = stats.packets
    result.bytes = stats.bytes
    if analysis is not None:
        summaries, findings = analysis.finish(ts_last)
        stats.endpoints = len(summaries)
        stats.findings.update(f.kind for f, _ in findings)
        ids = None
        if store is not None and run_id is not None:
            ids = store_analysis(options.db_url or DEFAULT_DB, run_id, summaries, findings)
        if sink is not None and findings:
            from mirrorscope.alerts import findings_to_json

            sink.send(findings_to_json(findings, ids))  # the DB id when stored, else a hash
    _accumulate(total, stats)
    if store is not None and run_id is not None:
        store.finish_run(
            run_id,
            status="failed" if result.error else "complete",
            stats={**_run_stats(stats), "writer": write_counts},
            error=result.error,
            ts_first=ts_first,
            ts_last=ts_last or None,
            finished_at=time.time(),
        )
    return result


def _feed(source: PcapSource, path: Path, analyzer: Analyzer, result: FileResult,
          analysis: RunAnalysis | None, writer: BatchWriter | None,
          on_progress: Callable[[Progress], None] | None) -> float | None:
    """One process: every frame through the analyzer, batches to analysis and the writer.

    Returns the first packet time."""
    out: list[object] = []
    ts_first: float | None = None
    progress_every = 4096
    for frame in iter_frames_safely(source, result):
        if ts_first is None:
            ts_first = frame.ts
        analyzer.feed(frame, out)
        if len(out) >= STORE_BATCH:
            if analysis is not None:
                analysis.observe(out)
            _drain(writer, out)
        if on_progress is not None and analyzer.stats.packets % progress_every == 0:
            on_progress(Progress(str(path), source.bytes_read, source.size,
                                 analyzer.stats.packets, analyzer.stats.transactions))
    analyzer.finish(out)
    if analysis is not None:
        analysis.observe(out)
    _drain(writer, out)
    return ts_first


def _observer(analysis: RunAnalysis | None) -> Callable[[list[object]], None]:
    """analysis.observe, or nothing when the run stops before analysis."""
    if analysis is None:
        return lambda _out: None
    return analysis.observe


def _drain(writer: BatchWriter | None, out: list[object]) -> None:
    if writer is not None and out:
        writer.put(out)  # takes a copy
    out.clear()


def _run_stats(stats: ReplayStats) -> dict[str, object]:
    return {
        "packets": stats.packets,
        "bytes": stats.bytes,
        "segments": stats.segments,
        "flows": stats.flows,
        "transactions": stats.transactions,
        "gaps": stats.gaps,
        "gap_bytes": stats.gap_bytes,
        "anomalies": dict(stats.anomalies),
        "findings": dict(stats.findings),
        "endpoints": stats.endpoints,
        "decode": stats.decode,
        "tcp": stats.tcp,
        "http": stats.http,
    }


def _accumulate(total: ReplayStats, one: ReplayStats) -> None:
    total.packets += one.packets
    total.bytes += one.bytes
    total.segments += one.segments
    total.flows += one.flows
    total.transactions += one.transactions
    total.gaps += one.gaps
    total.gap_bytes += one.gap_bytes
    total.anomalies.update(one.anomalies)
    total.findings.update(one.findings)
    total.endpoints += one.endpoints
    for name in ("decode", "tcp", "http"):
        merged = getattr(total, name)
        for key, value in getattr(one, name).items():
            if isinstance(value, int | float) and isinstance(merged.get(key, 0), int | float):
                merged[key] = merged.get(key, 0) + value
