"""What the DAST needs from the store: recorded requests (with headers) and 'verified' marks.

Only plain dicts come out; ORM classes stay in the store.  Recorded requests are as stored,
that is redacted: credentials are fingerprints and never replayable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from mirrorscope.store import migrate
from mirrorscope.store.db import StoreError, make_engine
from mirrorscope.store.dbops import describe, read_errors, run_write, schema_error
from mirrorscope.store.models import FindingRow, Transaction

_IN_CHUNK = 500
RECORDED_KEYS = ("ts", "method", "host", "uri", "request_headers", "request_body",
                 "request_content_type", "status", "response_body", "response_content_type")


class DastStore:
    """Reads recorded requests and marks DAST findings verified, over an existing database."""

    def __init__(self, url: str) -> None:
        """Open an existing database whose schema is current; refuse anything else."""
        self._engine: Engine = make_engine(url, create=False)
        try:
            current = migrate.current_revision(self._engine)
            with self._engine.connect() as conn:
                empty = not migrate.has_user_tables(conn)
            head = migrate.head_revision()
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"cannot open database: {describe(exc)}") from exc
        if current != head:
            self._engine.dispose()
            if current is None and empty:
                raise StoreError("database has no mirrorscope schema: run `mirrorscope replay` "
                                 "first (the DAST replays recorded traffic)")
            raise schema_error(current, head)

    def close(self) -> None:
        """Release every pooled database connection."""
        self._engine.dispose()

    def __enter__(self) -> DastStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def recorded_requests(self, *, host: str | None = None,
                          limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: method, host, uri, headers [[name, value]], bodies."""
        stmt = (
            select(Transaction.ts, Transaction.method, Transaction.host, Transaction.uri,
                   Transaction.request_headers, Transaction.request_body_head,
                   Transaction.request_content_type, Transaction.status,
                   Transaction.response_body_head, Transaction.response_content_type)
            .where(Transaction.method.is_not(None), Transaction.uri.is_not(None))
            .order_by(Transaction.ts, Transaction.conn_id, Transaction.trans_depth)
        )
        if host is not None:
            stmt = stmt.where(Transaction.host == host)
        if limit is not None:
            stmt = stmt.limit(limit)
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            record = dict(zip(RECORDED_KEYS, row, strict=True))
            record["request_headers"] = [tuple(pair) for pair in
                                         json.loads(record["request_headers"] or "[]")]
            record["request_body"] = bytes(record["request_body"] or b"")
            record["response_body"] = bytes(record["response_body"] or b"")
            out.append(record)
        return out

    def mark_verified(self, finding_ids: Iterable[int]) -> int:
        """Set findings.verified on these findings (proven by a live request); return how many."""
        ids = sorted({int(finding_id) for finding_id in finding_ids})
        if not ids:
            return 0

        def operation(conn: Any) -> int:
            changed = 0
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start:start + _IN_CHUNK]
                result = conn.execute(update(FindingRow).where(FindingRow.id.in_(chunk))
                                      .values(verified=True))
                changed += result.rowcount or 0
            return changed

        return run_write(self._engine, operation)

    def verified(self) -> dict[int, bool]:
        """Every finding id with its verified flag."""
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(select(FindingRow.id, FindingRow.verified)).all()
        return {int(finding_id): bool(flag) for finding_id, flag in rows}
