"""Persistence of analysis results: per-run endpoint inventory, findings, detector models.

Only mirrorscope.model types go in and plain dicts come out; ORM classes stay in the store.
Merging endpoint documents across runs is the caller's job (the store never imports
analysis), so endpoint rows are kept per run and handed back as they were written.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Insert, case, delete, func, or_, select, update
from sqlalchemy.engine import Connection as DbConnection

from mirrorscope.model import EndpointSummary, Finding
from mirrorscope.store import lifecycle_repo
from mirrorscope.store.db import StoreError
from mirrorscope.store.dbops import (
    ExistingDatabase,
    describe,
    dialect_insert,
    read_errors,
    run_write,
)
from mirrorscope.store.models import (
    SEVERITIES,
    CaptureRun,
    DetectorModel,
    EndpointObservation,
    FindingOccurrence,
    FindingRow,
)
from mirrorscope.store.sanitize import safe_text

T = TypeVar("T")

# Same retry policy as Store: every write here is one idempotent transaction.
# Nesting beyond this in a stored JSON document is replaced by a marker: a last line of
# defence so that a pathologically deep document cannot exhaust the recursion limit.
MAX_JSON_DEPTH = 64
TOO_DEEP_MARK = "...[too deep]"
# Bound on bound parameters per IN (...) list (SQLite allows 32766 per statement).
_IN_CHUNK = 500

# The public contract of findings(), in output order.
FINDING_KEYS = (
    "id",
    "kind",
    "owasp",
    "severity",
    "confidence",
    "endpoint",
    "client_ip",
    "principal",
    "first_seen",
    "last_seen",
    "count",
    "transactions",
    "evidence",
    "explanation",
    "remediation",
    "status",
)
ENDPOINT_KEYS = (
    "host",
    "method",
    "path_template",
    "count",
    "first_seen",
    "last_seen",
    "doc",
    "run_id",
)
# Triage fields findings() adds after the contract (alerts leave them out): who set the
# status, why and when (wall clock), the resolved finding this one is a regression of, whether
# an active test verified it, the group key shared by the windows of one recurring issue, and
# first_run_at: the wall clock at which the run that first stored the finding started.
LIFECYCLE_KEYS = (
    "status_actor",
    "status_reason",
    "status_at",
    "regression_of",
    "verified",
    "group_key",
    "first_run_at",
)
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


class AnalysisStore(ExistingDatabase):
    """Repository of analysis results over a database that Store (or `db upgrade`) created."""

    def __init__(self, url: str) -> None:
        """Open an existing database; refuse one whose schema is missing, behind or newer."""
        super().__init__(url)
        # What the latest upsert_findings changed automatically (regressions, inherited
        # verdicts): dicts with id, old_status, new_status, actor, reason, regression_of.
        self.lifecycle_changes: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ plumbing

    def _write(self, operation: Callable[[DbConnection], T]) -> T:
        """Run operation in one write transaction, retrying transient lock failures."""
        return run_write(self._engine, operation)

    def _insert(self, table: type[Any]) -> Insert:
        """The dialect's INSERT, which offers ON CONFLICT."""
        return dialect_insert(self._postgres, table)

    # ----------------------------------------------------------------- endpoints

    def replace_endpoints(self, run_id: int, summaries: Sequence[EndpointSummary]) -> None:
        """Make the run's endpoint rows exactly these summaries (one transaction)."""
        rows: dict[str, dict[str, Any]] = {}
        for summary in summaries:
            row = _endpoint_row(run_id, summary)
            earlier = rows.get(row["endpoint_key"])
            if earlier is None:
                rows[row["endpoint_key"]] = row
            else:
                # Distinct keys that escaping made equal: one endpoint as stored.
                earlier["count"] += row["count"]
                earlier["first_seen"] = min(earlier["first_seen"], row["first_seen"])
                earlier["last_seen"] = max(earlier["last_seen"], row["last_seen"])
        ordered = [rows[key] for key in sorted(rows)]

        def operation(conn: DbConnection) -> None:
            _lock_run(conn, run_id, self._postgres)
            conn.execute(delete(EndpointObservation).where(EndpointObservation.run_id == run_id))
            if ordered:
                conn.execute(self._insert(EndpointObservation), ordered)

        self._write(operation)

    def endpoint_observations(self, *, run_id: int | None = None) -> list[dict[str, Any]]:
        """Every run's endpoint rows (or one run's), for the caller to merge."""
        stmt = select(
            EndpointObservation.host,
            EndpointObservation.method,
            EndpointObservation.path_template,
            EndpointObservation.count,
            EndpointObservation.first_seen,
            EndpointObservation.last_seen,
            EndpointObservation.doc,
            EndpointObservation.run_id,
        ).order_by(
            EndpointObservation.host,
            EndpointObservation.method,
            EndpointObservation.path_template,
            EndpointObservation.run_id,
        )
        if run_id is not None:
            stmt = stmt.where(EndpointObservation.run_id == run_id)
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            record = dict(zip(ENDPOINT_KEYS, row, strict=True))
            record["doc"] = json.loads(record["doc"])
            out.append(record)
        return out

    # ------------------------------------------------------------------ findings

    def upsert_findings(
        self,
        run_id: int,
        findings: Sequence[tuple[Finding, float]],
        *,
        updated_at: float | None = None,
    ) -> list[int]:
        """Store (finding, window_start) pairs as this run's occurrences; return their ids.

        A finding's count, first and last time are summed over runs; writing a run again
        replaces that run's occurrence instead of adding to it.  Severity and confidence
        keep the highest value seen; evidence, explanation, remediation and the sample of
        transactions are the latest written.  The lifecycle rules of lifecycle_repo apply
        (regressions of resolved findings re-open; suppressed groups stay suppressed); what
        they changed is left in self.lifecycle_changes.
        """
        now = time.time() if updated_at is None else updated_at
        keys: list[str] = []
        rows: dict[str, dict[str, Any]] = {}
        for finding, window_start in findings:
            row = _finding_row(run_id, finding, window_start, now)
            keys.append(row["finding_key"])
            earlier = rows.get(row["finding_key"])
            if earlier is None:
                rows[row["finding_key"]] = row
            else:
                _merge_duplicate(earlier, row)
        self.lifecycle_changes = []
        if not rows:
            return []
        # Sorted keys: concurrent writers lock rows in the same order (no deadlocks).
        ordered = [rows[key] for key in sorted(rows)]

        def operation(conn: DbConnection) -> tuple[dict[str, int], list[dict[str, Any]]]:
            _lock_run(conn, run_id, self._postgres)
            before = lifecycle_repo.snapshot(
                conn,
                [row["finding_key"] for row in ordered],
                {row["finding"]["group_key"] for row in ordered},
            )
            stmt = self._insert(FindingRow)
            excluded = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[FindingRow.finding_key],
                set_={
                    "severity": case(
                        (_rank(excluded.severity) > _rank(FindingRow.severity), excluded.severity),
                        else_=FindingRow.severity,
                    ),
                    "confidence": case(
                        (excluded.confidence > FindingRow.confidence, excluded.confidence),
                        else_=FindingRow.confidence,
                    ),
                    "owasp": excluded.owasp,
                    "evidence": excluded.evidence,
                    "explanation": excluded.explanation,
                    "remediation": excluded.remediation,
                    "transactions": excluded.transactions,
                    "last_run_id": excluded.last_run_id,
                    "updated_at": excluded.updated_at,
                },
            )
            conn.execute(stmt, [row["finding"] for row in ordered])
            ids: dict[str, int] = {}
            for chunk in _chunks([row["finding_key"] for row in ordered]):
                selected = select(FindingRow.finding_key, FindingRow.id).where(
                    FindingRow.finding_key.in_(chunk)
                )
                ids.update({key: int(finding_id) for key, finding_id in conn.execute(selected)})
            occurrences = [
                {**row["occurrence"], "finding_id": ids[row["finding_key"]]} for row in ordered
            ]
            occurrences.sort(key=lambda occurrence: occurrence["finding_id"])
            upsert = self._insert(FindingOccurrence)
            upsert = upsert.on_conflict_do_update(
                index_elements=[FindingOccurrence.finding_id, FindingOccurrence.run_id],
                set_={
                    name: upsert.excluded[name] for name in ("count", "ts_first", "ts_last")
                },
            )
            conn.execute(upsert, occurrences)
            for chunk in _chunks(sorted(ids.values())):
                _refresh_totals(conn, chunk)
            written = [
                lifecycle_repo.Written(
                    row["finding_key"], row["finding"]["group_key"], row["occurrence"]["ts_last"]
                )
                for row in ordered
            ]
            changes = lifecycle_repo.apply_after_write(conn, run_id, written, ids, before, now)
            return ids, changes

        ids, changes = self._write(operation)
        self.lifecycle_changes = changes
        return [ids[key] for key in keys]

    def findings(
        self,
        *,
        severity: str | Collection[str] | None = None,
        min_severity: str | None = None,
        kind: str | None = None,
        owasp: str | None = None,
        since: float | None = None,
        status: str | Collection[str] | None = None,
        finding_ids: Collection[int] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Findings as public dicts (FINDING_KEYS then LIFECYCLE_KEYS), oldest first.

        severity: one level or several; min_severity: that level and above; kind: exact or
        a dotted prefix ("attack" matches "attack.sqli"); since: last seen at or after;
        status: one triage status or several; finding_ids: only these.
        """
        if limit is not None and limit < 0:
            raise StoreError("limit must be >= 0")
        totals = (
            select(
                FindingOccurrence.finding_id,
                func.sum(FindingOccurrence.count).label("count"),
                func.min(FindingOccurrence.ts_first).label("first_seen"),
                func.max(FindingOccurrence.ts_last).label("last_seen"),
            )
            .group_by(FindingOccurrence.finding_id)
            .subquery("totals")
        )
        # Totals come from the occurrences, not the cached columns: a deleted run's
        # occurrences vanish by cascade and the finding's figures follow.
        stmt = (
            select(
                FindingRow.id,
                FindingRow.kind,
                FindingRow.owasp,
                FindingRow.severity,
                FindingRow.confidence,
                FindingRow.host,
                FindingRow.method,
                FindingRow.path_template,
                FindingRow.client_ip,
                FindingRow.principal,
                totals.c.first_seen,
                totals.c.last_seen,
                totals.c.count,
                FindingRow.transactions,
                FindingRow.evidence,
                FindingRow.explanation,
                FindingRow.remediation,
                FindingRow.status,
                FindingRow.status_actor,
                FindingRow.status_reason,
                FindingRow.status_at,
                FindingRow.regression_of,
                FindingRow.verified,
                FindingRow.group_key,
                CaptureRun.started_at,
            )
            .join(totals, totals.c.finding_id == FindingRow.id)
            .outerjoin(CaptureRun, CaptureRun.id == FindingRow.first_run_id)
            .order_by(totals.c.first_seen, FindingRow.id)
        )
        if severity is not None:
            wanted = [severity] if isinstance(severity, str) else list(severity)
            for level in wanted:
                _check_severity(level)
            stmt = stmt.where(FindingRow.severity.in_(wanted))
        if min_severity is not None:
            floor = _SEVERITY_RANK[_check_severity(min_severity)]
            stmt = stmt.where(FindingRow.severity.in_(SEVERITIES[floor:]))
        if kind is not None:
            # substr, not LIKE: SQLite's LIKE ignores case and both need escaping.
            prefix = f"{kind}."
            under = func.substr(FindingRow.kind, 1, len(prefix)) == prefix
            stmt = stmt.where(or_(FindingRow.kind == kind, under))
        if owasp is not None:
            stmt = stmt.where(FindingRow.owasp == owasp)
        if since is not None:
            stmt = stmt.where(totals.c.last_seen >= since)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for name in statuses:
                lifecycle_repo.check_status(name)
            stmt = stmt.where(FindingRow.status.in_(statuses))
        if finding_ids is not None:
            wanted = sorted({int(fid) for fid in finding_ids})
            if len(wanted) > _IN_CHUNK:
                raise StoreError(f"at most {_IN_CHUNK} finding ids at once")
            stmt = stmt.where(FindingRow.id.in_(wanted))
        if limit is not None:
            stmt = stmt.limit(limit)
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_finding_dict(row) for row in rows]

    def set_status(
        self,
        finding_ids: Sequence[int],
        status: str,
        actor: str,
        reason: str = "",
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """Set the triage status of findings (all or none: an unknown id is a StoreError).

        Records who, why and when in finding_status_history; returns {id, old_status,
        new_status} for each finding that changed (one already in that status is skipped).
        """
        when = time.time() if now is None else _finite(now, "now")
        return self._write(
            lambda conn: lifecycle_repo.set_status(conn, finding_ids, status, actor, reason, when)
        )

    def finding_history(self, finding_id: int) -> list[dict[str, Any]]:
        """A finding's status changes, oldest first: id, finding_id, ts, actor, old_status,
        new_status, reason.  StoreError for an unknown finding."""
        with read_errors(), self._engine.connect() as conn:
            return lifecycle_repo.history(conn, finding_id)

    # -------------------------------------------------------------------- models

    def save_model(
        self, name: str, kind: str, params: dict[str, Any], *, created_at: float | None = None
    ) -> int:
        """Store a model's JSON document under a name; return its id (it becomes the latest)."""
        if not name:
            raise StoreError("a model needs a non-empty name")
        if not isinstance(params, dict):
            raise StoreError("model params must be a JSON object (a dict)")
        try:
            # Kept exactly (no escaping): ensure_ascii alone makes it storable, and the
            # model must load back bit for bit.  NaN is not JSON: refuse it.
            document = json.dumps(params, ensure_ascii=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"model params are not JSON-serialisable: {exc}") from exc
        values = {
            "name": safe_text(name),
            "kind": safe_text(kind),
            "created_at": time.time() if created_at is None else created_at,
            "params": document,
        }

        def operation(conn: DbConnection) -> int:
            stmt = self._insert(DetectorModel).values(**values).returning(DetectorModel.id)
            return int(conn.execute(stmt).scalar_one())

        return self._write(operation)

    def load_model(self, name: str, *, kind: str | None = None) -> dict[str, Any] | None:
        """The latest model saved under name (and kind): id, name, kind, created_at, params."""
        stmt = (
            select(
                DetectorModel.id,
                DetectorModel.name,
                DetectorModel.kind,
                DetectorModel.created_at,
                DetectorModel.params,
            )
            .where(DetectorModel.name == safe_text(name))
            .order_by(DetectorModel.id.desc())
            .limit(1)
        )
        if kind is not None:
            stmt = stmt.where(DetectorModel.kind == safe_text(kind))
        with read_errors(), self._engine.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            return None
        record = dict(row._mapping)
        record["params"] = json.loads(record["params"])
        return record


# ------------------------------------------------------------------ row builders


def _endpoint_row(run_id: int, summary: EndpointSummary) -> dict[str, Any]:
    key = summary.key
    host, method, path = safe_text(key.host), safe_text(key.method), safe_text(key.path_template)
    return {
        "run_id": run_id,
        "endpoint_key": _digest([host, method, path]),
        "host": host,
        "method": method,
        "path_template": path,
        "count": _count(summary.count),
        "first_seen": _finite(summary.first_seen, "first_seen"),
        "last_seen": _finite(summary.last_seen, "last_seen"),
        "doc": _json_text(summary.doc),
    }


def _finding_row(
    run_id: int, finding: Finding, window_start: float, now: float
) -> dict[str, Any]:
    """The finding's row (as first inserted) and this run's occurrence, keyed."""
    endpoint = finding.endpoint
    if endpoint is None:
        host = method = path = ""
    else:
        host = safe_text(endpoint.host)
        method = safe_text(endpoint.method)
        path = safe_text(endpoint.path_template)
    kind = safe_text(finding.kind)
    client = safe_text(finding.client_ip or "")
    principal = safe_text(finding.principal or "")
    # + 0.0 folds -0.0 into 0.0: one window, one key.
    window = _finite(window_start, "window_start") + 0.0
    key = _digest([kind, host, method, path, client, principal, repr(window)])
    group = _digest([kind, host, method, path, client, principal])
    count = _count(finding.count)
    ts_first = _finite(finding.ts_first, "ts_first")
    ts_last = _finite(finding.ts_last, "ts_last")
    return {
        "finding_key": key,
        "finding": {
            "finding_key": key,
            "kind": kind,
            "host": host,
            "method": method,
            "path_template": path,
            "client_ip": client,
            "principal": principal,
            "window_start": window,
            "severity": _check_severity(finding.severity),
            "owasp": safe_text(finding.owasp),
            "confidence": _finite(finding.confidence, "confidence"),
            "ts_first": ts_first,
            "ts_last": ts_last,
            "count": count,
            "evidence": _json_text(finding.evidence),
            "explanation": _json_text(list(finding.explanation)),
            "remediation": safe_text(finding.remediation),
            "transactions": _json_text([list(ref) for ref in finding.transactions]),
            "status": "open",
            "group_key": group,
            "first_run_id": run_id,
            "last_run_id": run_id,
            "updated_at": now,
        },
        "occurrence": {
            "run_id": run_id,
            "count": count,
            "ts_first": ts_first,
            "ts_last": ts_last,
        },
    }


def _merge_duplicate(earlier: dict[str, Any], row: dict[str, Any]) -> None:
    """Two findings of one call with one stored key are one finding: add them up."""
    first, second = earlier["finding"], row["finding"]
    if _SEVERITY_RANK[second["severity"]] > _SEVERITY_RANK[first["severity"]]:
        first["severity"] = second["severity"]
    first["confidence"] = max(first["confidence"], second["confidence"])
    occurrence, extra = earlier["occurrence"], row["occurrence"]
    occurrence["count"] += extra["count"]
    occurrence["ts_first"] = min(occurrence["ts_first"], extra["ts_first"])
    occurrence["ts_last"] = max(occurrence["ts_last"], extra["ts_last"])
    first.update(
        count=occurrence["count"], ts_first=occurrence["ts_first"], ts_last=occurrence["ts_last"]
    )


def _refresh_totals(conn: DbConnection, finding_ids: list[int]) -> None:
    """Recompute the cached count, ts_first and ts_last of findings from their occurrences.

    Only called for findings that were just given an occurrence, so no aggregate is NULL.
    """
    def total(column: Any) -> Any:
        return (
            select(column)
            .where(FindingOccurrence.finding_id == FindingRow.id)
            .correlate(FindingRow)
            .scalar_subquery()
        )

    conn.execute(
        update(FindingRow)
        .where(FindingRow.id.in_(finding_ids))
        .values(
            count=total(func.sum(FindingOccurrence.count)),
            ts_first=total(func.min(FindingOccurrence.ts_first)),
            ts_last=total(func.max(FindingOccurrence.ts_last)),
        )
    )


def _finding_dict(row: Any) -> dict[str, Any]:
    (
        finding_id,
        kind,
        owasp,
        severity,
        confidence,
        host,
        method,
        path,
        client,
        principal,
        first_seen,
        last_seen,
        count,
        transactions,
        evidence,
        explanation,
        remediation,
        status,
        status_actor,
        status_reason,
        status_at,
        regression_of,
        verified,
        group_key,
        first_run_at,
    ) = row
    # Stored '' stands for absent; an endpoint always has a method and a path template.
    endpoint = (
        None
        if not method and not path
        else {"host": host, "method": method, "path_template": path}
    )
    values = (
        int(finding_id),
        kind,
        owasp,
        severity,
        float(confidence),
        endpoint,
        client or None,
        principal or None,
        float(first_seen),
        float(last_seen),
        int(count),  # SUM(bigint) is numeric on PostgreSQL
        json.loads(transactions),
        json.loads(evidence),
        json.loads(explanation),
        remediation,
        status,
    )
    record = dict(zip(FINDING_KEYS, values, strict=True))
    record.update(
        status_actor=status_actor,
        status_reason=status_reason,
        status_at=None if status_at is None else float(status_at),
        regression_of=None if regression_of is None else int(regression_of),
        verified=bool(verified),
        group_key=group_key,
        first_run_at=None if first_run_at is None else float(first_run_at),
    )
    return record


# ----------------------------------------------------------------- value checks


def _check_severity(level: str) -> str:
    if level not in _SEVERITY_RANK:
        raise StoreError(f"severity must be one of {SEVERITIES}, not {level!r}")
    return level


def _rank(column: Any) -> Any:
    """SQL expression: the severity's rank (higher is worse)."""
    return case(_SEVERITY_RANK, value=column, else_=-1)


def _count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"count must be a non-negative integer, not {value!r}")
    return value


def _finite(value: float, name: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise StoreError(f"{name} must be a finite number, not {value!r}")
    return number


def _digest(parts: list[str]) -> str:
    """sha256 of key parts; JSON-encoding them keeps ("a,b", "c") apart from ("a", "b,c")."""
    material = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


def _json_text(value: object) -> str:
    """Wire-derived JSON as stored: every string escaped by safe_text, strict JSON out."""
    return json.dumps(_storable(value, 0), ensure_ascii=True, separators=(",", ":"))


def _storable(value: object, depth: int) -> object:
    """A copy of value that any backend stores and any UTF-8 writer prints."""
    if isinstance(value, str):
        return safe_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # NaN is not JSON
    if depth >= MAX_JSON_DEPTH:
        return TOO_DEEP_MARK
    if isinstance(value, dict):
        return {
            safe_text(key if isinstance(key, str) else str(key)): _storable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_storable(item, depth + 1) for item in value]
    return safe_text(str(value))


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _lock_run(conn: DbConnection, run_id: int, postgres: bool) -> None:
    """Check the run exists; on PostgreSQL also serialise writers of one run's results.

    FOR NO KEY UPDATE does not block the KEY SHARE locks that foreign-key checks of Store's
    concurrent inserts take.  (SQLite's BEGIN IMMEDIATE already serialises every writer.)
    """
    stmt = select(CaptureRun.id).where(CaptureRun.id == run_id)
    if postgres:
        stmt = stmt.with_for_update(key_share=True)
    if conn.execute(stmt).one_or_none() is None:
        raise StoreError(f"no capture run with id {run_id}")


_describe = describe
