"""The automated-response ledger: one row per (rule, action, target), so nothing fires twice.

Plain dicts in and out; the ORM class stays in the store.  The caller decides what an
outcome means ("fired", "failed", "rate_limited", ...); the ledger only keeps the latest
state of each key, written in one transaction per batch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection as DbConnection

from mirrorscope.store.db import StoreError, make_engine
from mirrorscope.store.dbops import (
    dialect_insert,
    read_errors,
    require_schema_at_head,
    run_write,
)
from mirrorscope.store.models import ResponseFiring
from mirrorscope.store.sanitize import safe_text

# The public shape of a firing, in output order.
FIRING_KEYS = ("id", "fire_key", "rule", "action", "target", "kind", "first_fired",
               "last_fired", "fired_count", "finding_ids", "payload", "outcome")
_WRITABLE = ("rule", "action", "target", "kind", "first_fired", "last_fired", "fired_count",
             "finding_ids", "payload", "outcome")


def fire_key(rule: str, action: str, target: str) -> str:
    """sha256 of (rule, action, target), JSON-encoded so ("a,b", "c") != ("a", "b,c")."""
    material = json.dumps([rule, action, target], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


class ResponseLedger:
    """Read and upsert response firings in a database that Store (or `db upgrade`) created."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        """Open by URL (owned engine) or share an Engine; refuse a schema not at head."""
        if isinstance(url_or_engine, Engine):
            self._engine, self._owned = url_or_engine, False
        else:
            self._engine, self._owned = make_engine(url_or_engine, create=False), True
        self._postgres = self._engine.dialect.name == "postgresql"
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the pooled connections of an engine this ledger opened."""
        if self._owned:
            self._engine.dispose()

    def __enter__(self) -> ResponseLedger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        require_schema_at_head(self._engine)

    # ---------------------------------------------------------------------- reads

    def firings(self, *, rule: str | None = None) -> list[dict[str, Any]]:
        """Every firing (of one rule), oldest id first; finding_ids and payload parsed."""
        columns = [getattr(ResponseFiring, name) for name in FIRING_KEYS]
        stmt = select(*columns).order_by(ResponseFiring.id)
        if rule is not None:
            stmt = stmt.where(ResponseFiring.rule == safe_text(rule))
        with read_errors(), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            record = dict(zip(FIRING_KEYS, row, strict=True))
            record["finding_ids"] = json.loads(record["finding_ids"] or "[]")
            record["payload"] = json.loads(record["payload"] or "{}")
            out.append(record)
        return out

    # --------------------------------------------------------------------- writes

    def upsert(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Insert or overwrite firings keyed by (rule, action, target); return their keys.

        Each record needs rule, action, target, first_fired, last_fired, fired_count and
        outcome; kind, finding_ids (list of ints) and payload (JSON object) are optional.
        """
        rows: dict[str, dict[str, Any]] = {}
        for record in records:
            row = _row(record)
            rows[row["fire_key"]] = row  # the last record of a key wins
        if not rows:
            return []
        ordered = [rows[key] for key in sorted(rows)]  # one lock order for every writer

        def operation(conn: DbConnection) -> None:
            stmt = dialect_insert(self._postgres, ResponseFiring)
            stmt = stmt.on_conflict_do_update(
                index_elements=[ResponseFiring.fire_key],
                set_={name: stmt.excluded[name] for name in _WRITABLE},
            )
            conn.execute(stmt, ordered)

        run_write(self._engine, operation)
        return [row["fire_key"] for row in ordered]


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A validated, storable row for one firing record."""
    try:
        rule, action, target = (str(record[k]) for k in ("rule", "action", "target"))
        first, last = _time(record["first_fired"]), _time(record["last_fired"])
        count, outcome = record["fired_count"], str(record["outcome"])
    except KeyError as exc:
        raise StoreError(f"a response firing needs {exc.args[0]!r}") from exc
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise StoreError(f"fired_count must be a non-negative integer, not {count!r}")
    ids = record.get("finding_ids") or []
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise StoreError("finding_ids must be integers")
    payload = record.get("payload") or {}
    if not isinstance(payload, Mapping):
        raise StoreError("payload must be a JSON object")
    try:
        payload_text = json.dumps(payload, ensure_ascii=True, allow_nan=False,
                                  separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"payload is not JSON-serialisable: {exc}") from exc
    return {
        "fire_key": fire_key(rule, action, target),
        "rule": safe_text(rule),
        "action": safe_text(action),
        "target": safe_text(target),
        "kind": safe_text(str(record.get("kind") or "")),
        "first_fired": first,
        "last_fired": last,
        "fired_count": count,
        "finding_ids": json.dumps(sorted(set(ids))),
        "payload": safe_text(payload_text),
        "outcome": safe_text(outcome),
    }


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(float(value)):
        raise StoreError(f"a firing time must be a finite number, not {value!r}")
    return float(value)
