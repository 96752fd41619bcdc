"""The store's public API: write pipeline events, read transactions, runs and counts.

Only mirrorscope.model types go in and plain dicts come out; ORM classes stay here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Engine, Insert, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.exc import SQLAlchemyError

from mirrorscope.model import (
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    HttpTransaction,
    is_security_anomaly,
)
from mirrorscope.store import migrate
from mirrorscope.store.db import StoreError, make_engine
from mirrorscope.store.dbops import (
    describe,
    dialect_insert,
    read_errors,
    run_write,
    schema_error,
)
from mirrorscope.store.models import (
    AnomalyBatch,
    AnomalyCount,
    AnomalyRow,
    CaptureRun,
    Connection,
    EndpointObservation,
    FindingOccurrence,
    FindingRow,
    SensorHealth,
    Transaction,
)
from mirrorscope.store.rows import PreparedRows, RowBuilder
from mirrorscope.store.sanitize import safe_optional, safe_text

T = TypeVar("T")
BatchItem = ConnectionOpened | ConnectionClosed | HttpTransaction | Anomaly | PreparedRows

# A write that hits "database is locked" (SQLite) or a deadlock/serialisation failure
# (PostgreSQL) is retried; every write is one idempotent transaction, so a retry is safe.
DEFAULT_MAX_BODY_HEAD = 64 * 1024
# Anomaly flood control (Zeek's weird sampling): counts stay exact, but only the first
# ANOMALY_ROWS_KEPT anomalies of a kind in a run are stored as rows, then one in
# ANOMALY_SAMPLE_EVERY, so 1M malformed requests cost ~1k rows, not 1M.
ANOMALY_ROWS_KEPT = 25
ANOMALY_SAMPLE_EVERY = 1000
FINAL_STATUSES = ("complete", "failed")
# The public JSONL contract of iter_transactions, in output order.
TRANSACTION_KEYS = (
    "conn_id",
    "trans_depth",
    "source",
    "ts",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "method",
    "host",
    "uri",
    "version",
    "status",
    "reason",
    "request_body_len",
    "response_body_len",
    "request_body_sha256",
    "response_body_sha256",
    "user_agent",
    "request_content_type",
    "response_content_type",
    "anomalies",
    "partial",
)
BODY_KEYS = ("request_body_b64", "response_body_b64")

_RUN_COLUMNS = (
    CaptureRun.id,
    CaptureRun.source,
    CaptureRun.source_sha256,
    CaptureRun.size,
    CaptureRun.started_at,
    CaptureRun.finished_at,
    CaptureRun.status,
    CaptureRun.error,
    CaptureRun.packets,
    CaptureRun.bytes,
    CaptureRun.flows,
    CaptureRun.transactions,
    CaptureRun.stats,
    CaptureRun.ts_first,
    CaptureRun.ts_last,
)


def _int_stat(stats: dict[str, Any], name: str) -> int:
    value = stats.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Store:
    """Repository over the mirrorscope database (SQLite file or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        store_raw: bool = False,
        hmac_key: bytes | None = None,
        upgrade: bool = True,
        max_body_head: int = DEFAULT_MAX_BODY_HEAD,
    ) -> None:
        """Open the database; migrate a brand-new one, refuse one whose schema is behind.

        store_raw: keep secrets as seen (no redaction).  hmac_key: key of the redaction
        fingerprints; without one a random per-Store key is used, so fingerprints only
        correlate within this Store's lifetime.
        """
        if max_body_head < 0:
            raise StoreError("max_body_head must be >= 0")
        self._store_raw = store_raw
        self._key = hmac_key if hmac_key is not None else os.urandom(32)
        self._max_body_head = max_body_head
        self._rows = self.row_builder()
        self._raw_inserts: dict[tuple[str, tuple[str, ...]],
                                tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]] | None]] = {}
        # Without upgrade the caller only means to use an existing database: never create.
        self._engine: Engine = make_engine(url, create=upgrade)
        self._postgres = self._engine.dialect.name == "postgresql"
        try:
            self._check_schema(upgrade)
        except BaseException:
            self._engine.dispose()
            raise

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release every pooled database connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _check_schema(self, upgrade: bool) -> None:
        try:
            with self._engine.connect() as conn:
                current = migrate._current_revision(conn)
                empty = not migrate.has_user_tables(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open database: {_describe(exc)}") from exc
        head = migrate.head_revision()
        if current == head:
            return
        if current is None and empty:
            if upgrade:
                try:
                    migrate.upgrade(self._engine)
                except SQLAlchemyError as exc:
                    raise StoreError(f"cannot create the schema: {_describe(exc)}") from exc
                return
            raise StoreError("database has no mirrorscope schema: run `mirrorscope db upgrade`")
        raise schema_error(current, head)

    # ------------------------------------------------------------------ plumbing

    def _write(self, operation: Callable[[DbConnection], T]) -> T:
        """Run operation in one write transaction, retrying transient lock failures."""
        return run_write(self._engine, operation)

    def _insert(self, table: type[Any]) -> Insert:
        """The dialect's INSERT, which offers ON CONFLICT."""
        return dialect_insert(self._postgres, table)

    def _text(self, value: str) -> str:
        """Free wire text as stored: redacted unless store_raw, then made storable."""
        return self._rows.text(value)

    def row_builder(self) -> RowBuilder:
        """A builder of this store's transaction rows (same redaction), for another process."""
        return RowBuilder(store_raw=self._store_raw, hmac_key=self._key,
                          max_body_head=self._max_body_head)

    # -------------------------------------------------------------------- runs

    def find_completed_run(self, sha256: str) -> dict[str, Any] | None:
        """The latest complete run of a capture with this content hash, if any."""
        stmt = (
            select(*_RUN_COLUMNS)
            .where(CaptureRun.source_sha256 == sha256, CaptureRun.status == "complete")
            .order_by(CaptureRun.id.desc())
            .limit(1)
        )
        with read_errors(), self._engine.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else _run_dict(row._mapping)

    def begin_run(self, *, source: str, sha256: str, size: int, started_at: float) -> int:
        """Start a run of a capture; any earlier run of the same content is wiped and reused.

        An incomplete run ('running' after a crash, or 'failed') is replaced so that the
        re-run ends equal to a clean run.  A complete one is replaced too: callers skip
        complete captures via find_completed_run unless forced, and since rows are keyed
        by their natural keys a second copy of the same capture could not hold rows.
        """
        if not sha256 or len(sha256) > 64:
            raise StoreError("sha256 must be a non-empty hex digest of at most 64 characters")
        values: dict[str, Any] = {
            "source": safe_text(source),
            "size": size,
            "started_at": started_at,
            "finished_at": None,
            "status": "running",
            "error": None,
            "packets": 0,
            "bytes": 0,
            "flows": 0,
            "transactions": 0,
            "stats": "{}",
            "ts_first": None,
            "ts_last": None,
        }

        def operation(conn: DbConnection) -> int:
            if self._postgres:  # serialise concurrent begin_run calls for one capture
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:sha))"), {"sha": sha256})
            stale = (
                conn.execute(
                    select(CaptureRun.id)
                    .where(CaptureRun.source_sha256 == sha256)
                    .order_by(CaptureRun.id)
                )
                .scalars()
                .all()
            )
            if not stale:
                stmt = (
                    self._insert(CaptureRun)
                    .values(source_sha256=sha256, **values)
                    .returning(CaptureRun.id)
                )
                return int(conn.execute(stmt).scalar_one())
            keep = stale[-1]
            for run_id in stale:
                _delete_run_rows(conn, run_id)
                if run_id != keep:
                    conn.execute(delete(CaptureRun).where(CaptureRun.id == run_id))
            conn.execute(update(CaptureRun).where(CaptureRun.id == keep).values(**values))
            return int(keep)

        return self._write(operation)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        stats: dict[str, Any],
        error: str | None = None,
        ts_first: float | None = None,
        ts_last: float | None = None,
        finished_at: float,
    ) -> None:
        """Close a run: status, counters (transactions counted from what was stored)."""
        if status not in FINAL_STATUSES:
            raise StoreError(f"finish_run status must be one of {FINAL_STATUSES}, not {status!r}")
        stats_json = json.dumps(stats, sort_keys=True, default=str, ensure_ascii=True)
        stored_error = None if error is None else self._text(error)

        def operation(conn: DbConnection) -> None:
            _require_run(conn, run_id)
            stored = conn.execute(
                select(func.count()).select_from(Transaction).where(Transaction.run_id == run_id)
            ).scalar_one()
            flows = _int_stat(stats, "flows")
            if "flows" not in stats:
                flows = conn.execute(
                    select(func.count()).select_from(Connection).where(Connection.run_id == run_id)
                ).scalar_one()
            conn.execute(
                update(CaptureRun)
                .where(CaptureRun.id == run_id)
                .values(
                    status=status,
                    stats=stats_json,
                    error=stored_error,
                    ts_first=ts_first,
                    ts_last=ts_last,
                    finished_at=finished_at,
                    packets=_int_stat(stats, "packets"),
                    bytes=_int_stat(stats, "bytes"),
                    flows=flows,
                    transactions=stored,
                )
            )

        self._write(operation)

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first."""
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(select(*_RUN_COLUMNS).order_by(CaptureRun.id)).all()
        return [_run_dict(row._mapping) for row in rows]

    def prune(self, *, older_than: float, now: float) -> dict[str, int]:
        """Delete finished runs whose finished_at is before now - older_than (seconds).

        Every row those runs wrote goes with them; findings left without any occurrence
        are deleted too.  Returns {"runs": n, "findings": m}.  Running runs are kept.
        """
        if older_than < 0:
            raise StoreError("older_than must be >= 0 seconds")
        cutoff = now - older_than

        def operation(conn: DbConnection) -> dict[str, int]:
            doomed = (
                conn.execute(
                    select(CaptureRun.id)
                    .where(
                        CaptureRun.status.in_(FINAL_STATUSES),
                        CaptureRun.finished_at.is_not(None),
                        CaptureRun.finished_at < cutoff,
                    )
                    .order_by(CaptureRun.id)
                )
                .scalars()
                .all()
            )
            for run_id in doomed:
                _delete_run_rows(conn, run_id)
                conn.execute(delete(CaptureRun).where(CaptureRun.id == run_id))
            orphans = conn.execute(
                delete(FindingRow).where(
                    ~select(FindingOccurrence.finding_id)
                    .where(FindingOccurrence.finding_id == FindingRow.id)
                    .exists()
                )
            ).rowcount
            return {"runs": len(doomed), "findings": int(orphans or 0)}

        return self._write(operation)

    # ------------------------------------------------------------------- writes

    def write_health(self, run_id: int, rows: Sequence[dict[str, Any]]) -> None:
        """Append live-capture health intervals (packets, drops, memory, capture loss ...)."""
        columns = [c.name for c in SensorHealth.__table__.columns if c.name not in ("id",
                                                                                   "run_id")]
        values = []
        for row in rows:
            record: dict[str, Any] = {"run_id": run_id}
            for name in columns:
                value = row.get(name, 0)
                if name in ("ts", "interval_s", "capture_loss"):
                    record[name] = float(value or 0.0)
                else:
                    record[name] = int(value or 0)
            values.append(record)
        if not values:
            return

        def operation(conn: DbConnection) -> None:
            conn.execute(insert(SensorHealth), values)

        self._write(operation)

    def health(self, run_id: int) -> list[dict[str, Any]]:
        """The health intervals of a run, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(SensorHealth).where(SensorHealth.run_id == run_id)
                                .order_by(SensorHealth.ts, SensorHealth.id)).mappings().all()
        return [{k: v for k, v in row.items() if k != "id"} for row in rows]

    def write_batch(self, run_id: int, items: Sequence[BatchItem]) -> None:
        """Store one batch of pipeline events in one transaction; re-writing is a no-op."""
        opened: dict[str, ConnectionOpened] = {}
        closed: dict[str, ConnectionClosed] = {}
        transactions: dict[tuple[str, int], HttpTransaction] = {}
        anomalies: list[Anomaly] = []
        unprepared: list[HttpTransaction] = []  # since the last PreparedRows
        prepared: dict[int, dict[str, Any]] = {}  # id(transaction) -> its row, built ahead
        for item in items:
            if isinstance(item, HttpTransaction):
                transactions.setdefault((item.conn_id, item.trans_depth), item)
                unprepared.append(item)
            elif type(item) is PreparedRows:
                if len(item.rows) != len(unprepared):
                    raise StoreError(f"{len(item.rows)} prepared rows for "
                                     f"{len(unprepared)} transactions")
                keys = item.keys
                for txn, values in zip(unprepared, item.rows, strict=True):
                    if values is not None:
                        prepared[id(txn)] = dict(zip(keys, values, strict=True))
                unprepared.clear()
            elif isinstance(item, Anomaly):
                anomalies.append(item)
            elif isinstance(item, ConnectionOpened):
                opened.setdefault(item.conn_id, item)
            elif isinstance(item, ConnectionClosed):
                closed[item.conn_id] = item  # the last word on a connection wins
            else:
                raise StoreError(f"write_batch cannot store a {type(item).__name__}")
        if not (opened or closed or transactions or anomalies):
            return
        # Redaction and row building happen before the write lock is taken.
        opened_rows = [self._opened_row(run_id, event) for event in opened.values()]
        closed_rows = [self._closed_row(run_id, event) for event in closed.values()]
        build = self._rows.transaction_row
        transaction_rows = [prepared.get(id(t)) or build(run_id, t)
                            for t in transactions.values()]
        implied_rows: dict[str, dict[str, Any]] = {}
        for txn, row in zip(transactions.values(), transaction_rows, strict=True):
            if txn.conn_id not in opened and txn.conn_id not in implied_rows:
                implied_rows[txn.conn_id] = self._implied_connection_row(run_id, txn, row["ts"])
        anomaly_rows = [self._anomaly_row(run_id, anomaly) for anomaly in anomalies]
        # Sorted keys: concurrent writers lock rows in the same order (no deadlocks).
        opened_rows.sort(key=lambda row: row["conn_id"])
        closed_rows.sort(key=lambda row: row["conn_id"])
        transaction_rows.sort(key=lambda row: (row["conn_id"], row["trans_depth"]))
        implied = sorted(implied_rows.values(), key=lambda row: row["conn_id"])

        def operation(conn: DbConnection) -> None:
            source_sha256 = _require_run(conn, run_id, running=True)
            if opened_rows:
                stmt = self._insert(Connection)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[Connection.conn_id],
                    set_={
                        name: stmt.excluded[name]
                        for name in (
                            "client_ip",
                            "client_port",
                            "server_ip",
                            "server_port",
                            "ts_start",
                            "partial",
                        )
                    },
                    where=Connection.run_id == stmt.excluded.run_id,
                )
                conn.execute(stmt, opened_rows)
            if implied:
                conn.execute(self._insert(Connection).on_conflict_do_nothing(), implied)
            if transaction_rows:
                self._insert_many(conn, "transactions", self._transaction_insert,
                                  transaction_rows)
            if closed_rows:
                stmt = self._insert(Connection)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[Connection.conn_id],
                    set_={
                        name: stmt.excluded[name]
                        for name in (
                            "ts_end",
                            "close_reason",
                            "orig_bytes",
                            "resp_bytes",
                            "orig_missed",
                            "resp_missed",
                            "packets",
                        )
                    },
                    where=Connection.run_id == stmt.excluded.run_id,
                )
                conn.execute(stmt, closed_rows)
            if anomaly_rows:
                self._write_anomalies(conn, run_id, source_sha256, anomaly_rows)

        self._write(operation)

    def _transaction_insert(self) -> Insert:
        return self._insert(Transaction).on_conflict_do_nothing(
            index_elements=[Transaction.conn_id, Transaction.trans_depth]
        )

    def _insert_many(self, conn: DbConnection, name: str, build: Callable[[], Insert],
                     rows: list[dict[str, Any]]) -> None:
        """executemany of one INSERT over rows that all have the same keys, on the driver.

        The hottest insert (one row per transaction) skips SQLAlchemy's per-row parameter
        processing: the statement is compiled once per Store and the rows go to the DB-API
        cursor as they are (plain str, int, float, bool, bytes and None, which both sqlite3
        and psycopg adapt themselves).  Positional drivers get tuples in the compiled order.
        """
        keys = tuple(rows[0])
        entry = self._raw_inserts.get((name, keys))
        if entry is None:
            compiled = build().compile(dialect=conn.dialect, column_keys=list(keys))
            order = compiled.positiontup if compiled.positional else None
            entry = (compiled.string, itemgetter(*order) if order else None)
            self._raw_inserts[(name, keys)] = entry
        sql, getter = entry
        conn.exec_driver_sql(sql, [getter(row) for row in rows] if getter else rows)

    def _write_anomalies(
        self, conn: DbConnection, run_id: int, source_sha256: str, rows: list[dict[str, Any]]
    ) -> None:
        """Count a batch's anomalies exactly once; store a sample of them as rows.

        Counting once: the batch's digest goes into the anomaly_batches ledger, and a batch
        already there (the same batch written again, e.g. a retry after a commit whose
        acknowledgement was lost) counts and stores nothing.
        """
        occurrences: Counter[str] = Counter()
        batch_digest = hashlib.sha256()
        for row in rows:
            material = "\x1f".join(
                (
                    source_sha256,
                    row["kind"],
                    repr(row["ts"]),
                    row["conn_id"] or "",
                    "" if row["direction"] is None else str(row["direction"]),
                    row["detail"],
                )
            )
            # Identical anomalies within one batch are distinct events: number them.
            ordinal = occurrences[material]
            occurrences[material] += 1
            digest = hashlib.sha1(f"{material}\x1f{ordinal}".encode("utf-8", "surrogatepass"))
            row["anomaly_key"] = digest.hexdigest()
            batch_digest.update(digest.digest())
        ledger = (
            self._insert(AnomalyBatch)
            .values(run_id=run_id, batch_key=batch_digest.hexdigest())
            .on_conflict_do_nothing()
            .returning(AnomalyBatch.batch_key)
        )
        if conn.execute(ledger).first() is None:
            return  # this very batch was counted before
        kinds = sorted({row["kind"] for row in rows})
        seen: dict[str, int] = {kind: 0 for kind in kinds}
        for chunk in _chunks(kinds):
            stored = conn.execute(
                select(AnomalyCount.kind, AnomalyCount.count).where(
                    AnomalyCount.run_id == run_id, AnomalyCount.kind.in_(chunk)
                )
            )
            seen.update({kind: int(count) for kind, count in stored})
        in_batch: Counter[str] = Counter()
        kept = []
        for row in rows:
            kind = row["kind"]
            number = seen[kind] + in_batch[kind]  # this anomaly's 0-based number in the run
            in_batch[kind] += 1
            if number < ANOMALY_ROWS_KEPT or number % ANOMALY_SAMPLE_EVERY == 0:
                kept.append(row)
        if kept:
            stmt = self._insert(AnomalyRow).on_conflict_do_nothing(
                index_elements=[AnomalyRow.anomaly_key]
            )
            conn.execute(stmt, kept)
        count_rows = [
            {"run_id": run_id, "kind": kind, "count": count}
            for kind, count in sorted(in_batch.items())
        ]
        upsert = self._insert(AnomalyCount)
        upsert = upsert.on_conflict_do_update(
            index_elements=[AnomalyCount.run_id, AnomalyCount.kind],
            set_={"count": AnomalyCount.count + upsert.excluded["count"]},
        )
        conn.execute(upsert, count_rows)

    # -------------------------------------------------------------- row builders

    def _opened_row(self, run_id: int, event: ConnectionOpened) -> dict[str, Any]:
        return {
            "conn_id": safe_text(event.conn_id),
            "run_id": run_id,
            "client_ip": safe_text(event.client[0]),
            "client_port": event.client[1],
            "server_ip": safe_text(event.server[0]),
            "server_port": event.server[1],
            "ts_start": event.ts,
            "ts_end": None,
            "partial": event.partial,
            "close_reason": None,
            "orig_bytes": None,
            "resp_bytes": None,
            "orig_missed": None,
            "resp_missed": None,
            "packets": None,
        }

    def _implied_connection_row(
        self, run_id: int, txn: HttpTransaction, ts: float
    ) -> dict[str, Any]:
        """A connection row for a transaction whose ConnectionOpened was never written."""
        return self._opened_row(
            run_id,
            ConnectionOpened(txn.conn_id, ts, txn.client, txn.server, txn.partial),
        )

    def _closed_row(self, run_id: int, event: ConnectionClosed) -> dict[str, Any]:
        return {
            "conn_id": safe_text(event.conn_id),
            "run_id": run_id,
            "client_ip": None,
            "client_port": None,
            "server_ip": None,
            "server_port": None,
            "ts_start": event.ts,
            "ts_end": event.ts,
            "partial": False,
            "close_reason": safe_text(event.reason),
            "orig_bytes": event.orig_bytes,
            "resp_bytes": event.resp_bytes,
            "orig_missed": event.orig_missed,
            "resp_missed": event.resp_missed,
            "packets": event.packets,
        }

    def _anomaly_row(self, run_id: int, anomaly: Anomaly) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "kind": safe_text(anomaly.kind),
            "ts": anomaly.ts,
            "conn_id": safe_optional(anomaly.conn_id),
            "direction": None if anomaly.direction is None else int(anomaly.direction),
            "detail": self._text(anomaly.detail),
            "security": is_security_anomaly(anomaly.kind),
        }

    # -------------------------------------------------------------------- reads

    def iter_transactions(
        self, *, limit: int | None = None, run_id: int | None = None, with_bodies: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Transactions as public JSONL dicts, ordered by ts, conn_id, trans_depth."""
        if limit is not None and limit < 0:
            raise StoreError("limit must be >= 0")
        columns = [
            Transaction.conn_id,
            Transaction.trans_depth,
            CaptureRun.source,
            Transaction.ts,
            Connection.client_ip,
            Connection.client_port,
            Connection.server_ip,
            Connection.server_port,
            Transaction.method,
            Transaction.host,
            Transaction.uri,
            Transaction.version,
            Transaction.status,
            Transaction.reason,
            Transaction.request_body_len,
            Transaction.response_body_len,
            Transaction.request_body_sha256,
            Transaction.response_body_sha256,
            Transaction.user_agent,
            Transaction.request_content_type,
            Transaction.response_content_type,
            Transaction.anomalies,
            Transaction.partial,
        ]
        if with_bodies:
            columns += [Transaction.request_body_head, Transaction.response_body_head]
        stmt = (
            select(*columns)
            .join(CaptureRun, CaptureRun.id == Transaction.run_id)
            .outerjoin(Connection, Connection.conn_id == Transaction.conn_id)
            .order_by(Transaction.ts, Transaction.conn_id, Transaction.trans_depth)
        )
        if run_id is not None:
            stmt = stmt.where(Transaction.run_id == run_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._iter_rows(stmt, with_bodies)

    def _iter_rows(self, stmt: Any, with_bodies: bool) -> Iterator[dict[str, Any]]:
        with read_errors(), self._engine.connect() as conn:
            result = conn.execution_options(yield_per=500).execute(stmt)
            for row in result:
                values = tuple(row)
                record = dict(zip(TRANSACTION_KEYS, values, strict=False))
                record["anomalies"] = json.loads(record["anomalies"])
                record["partial"] = bool(record["partial"])
                if with_bodies:
                    request_head, response_head = values[len(TRANSACTION_KEYS) :]
                    record["request_body_b64"] = _b64(request_head)
                    record["response_body_b64"] = _b64(response_head)
                yield record

    def anomaly_counts(self, run_id: int | None = None) -> dict[str, int]:
        """Exact anomaly counts per kind, for one run or summed over all runs."""
        stmt = select(AnomalyCount.kind, func.sum(AnomalyCount.count)).group_by(AnomalyCount.kind)
        if run_id is not None:
            stmt = stmt.where(AnomalyCount.run_id == run_id)
        with read_errors(), self._engine.connect() as conn:
            return {
                kind: int(total) for kind, total in conn.execute(stmt.order_by(AnomalyCount.kind))
            }


def _b64(head: bytes | None) -> str | None:
    return None if head is None else base64.b64encode(head).decode("ascii")


_describe = describe


def _require_run(conn: DbConnection, run_id: int, *, running: bool = False) -> str:
    """The run's source hash; StoreError when it does not exist (or is not running)."""
    row = conn.execute(
        select(CaptureRun.status, CaptureRun.source_sha256).where(CaptureRun.id == run_id)
    ).one_or_none()
    if row is None:
        raise StoreError(f"no capture run with id {run_id}")
    if running and row.status != "running":
        raise StoreError(f"capture run {run_id} is {row.status}: begin a new run to write")
    return str(row.source_sha256)


def _delete_run_rows(conn: DbConnection, run_id: int) -> None:
    """Remove everything a run wrote (children before the rows they reference)."""
    for table in (Transaction, AnomalyRow, AnomalyCount, AnomalyBatch, Connection,
                  EndpointObservation, FindingOccurrence, SensorHealth):
        conn.execute(delete(table).where(table.run_id == run_id))


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """Bounded IN (...) lists (SQLite allows 32766 parameters per statement)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _run_dict(row: Any) -> dict[str, Any]:
    record = dict(row)
    record["stats"] = json.loads(record["stats"]) if record["stats"] else {}
    return record
