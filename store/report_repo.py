"""Read-only queries behind `mirrorscope report`: runs and traffic aggregated in SQL.

Traffic over time is counted by the database (GROUP BY time bucket) so a report over
millions of transactions never loads them.  Only plain dicts leave this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, case, cast, func, select

from mirrorscope.store.db import StoreError
from mirrorscope.store.dbops import ExistingDatabase, read_errors
from mirrorscope.store.models import CaptureRun, Transaction

RUN_KEYS = ("id", "source", "status", "started_at", "finished_at", "packets", "bytes",
            "flows", "transactions", "ts_first", "ts_last")
# A bucket query never returns more groups than this (a guard against a tiny width).
MAX_BUCKETS = 10_000


class ReportRepo(ExistingDatabase):
    """Read-only view of an existing mirrorscope database for reports."""

    # ---------------------------------------------------------------------- reads

    def runs(self) -> list[dict[str, Any]]:
        """Every capture run (without its stats document), oldest first."""
        columns = [getattr(CaptureRun, name) for name in RUN_KEYS]
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(CaptureRun.id)).all()
        return [dict(zip(RUN_KEYS, row, strict=True)) for row in rows]

    def traffic_span(self, *, since: float | None = None) -> dict[str, Any]:
        """Transactions at or after since: {"count", "first", "last"} (packet time)."""
        stmt = select(func.count(), func.min(Transaction.ts), func.max(Transaction.ts))
        if since is not None:
            stmt = stmt.where(Transaction.ts >= since)
        with read_errors(), self._engine.connect() as conn:
            count, first, last = conn.execute(stmt).one()
        return {
            "count": int(count or 0),
            "first": None if first is None else float(first),
            "last": None if last is None else float(last),
        }

    def traffic_buckets(
        self, *, start: float, width: float, by_endpoint: bool = False,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Transaction counts per time bucket and status class (2 for 2xx, 0 for none).

        Bucket i covers [start + i*width, start + (i+1)*width); transactions before start
        are left out, and so are those before since.  by_endpoint: also group by host,
        method and path (the URI without its query), so the caller can attribute traffic
        to owners.
        """
        if not width > 0:
            raise StoreError("bucket width must be > 0")
        offset = (Transaction.ts - start) / width
        # CAST truncates on SQLite (offset is >= 0, so that is floor); PostgreSQL rounds.
        bucket = (
            cast(func.floor(offset), BigInteger) if self._postgres else cast(offset, Integer)
        ).label("bucket")
        status_class = case(
            (Transaction.status.is_(None), 0), else_=Transaction.status // 100
        ).label("status_class")
        columns: list[Any] = [bucket, status_class]
        if by_endpoint:
            columns += [Transaction.host, Transaction.method, self._path_only(Transaction.uri)]
        stmt = (
            select(*columns, func.count().label("count"))
            .where(Transaction.ts >= (start if since is None else max(start, since)))
            .group_by(*columns)
            .order_by(bucket)
        )
        keys = ["bucket", "status_class"] + (["host", "method", "path"] if by_endpoint else [])
        out = []
        with read_errors(), self._engine.connect() as conn:
            for row in conn.execute(stmt):
                record = dict(zip(keys, row[:-1], strict=True))
                if record["bucket"] >= MAX_BUCKETS:
                    continue
                record["bucket"] = int(record["bucket"])
                record["status_class"] = int(record["status_class"] or 0)
                record["count"] = int(row[-1])
                out.append(record)
        return out

    def _path_only(self, uri: Any) -> Any:
        """SQL expression: the URI up to (not including) its '?'."""
        position = func.strpos(uri, "?") if self._postgres else func.instr(uri, "?")
        return case((position > 0, func.substr(uri, 1, position - 1)), else_=uri).label("path")
