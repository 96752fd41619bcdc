"""Finding lifecycle in the store: triage status changes, their audit trail, regressions.

Statuses: open, acknowledged (someone is on it), resolved (fixed), false_positive and
risk_accepted (not a problem / a known, accepted one).  Every change writes a row of
finding_status_history: who, when (wall clock), from what, to what and why.

Findings are keyed per aggregation window; the group key (the finding key without its
window) ties the windows of one recurring issue together.  When upsert_findings writes:

* a finding that is itself ``resolved`` and gets new activity after the resolution is
  re-opened as a regression of itself (regression_of = its own id);
* a new window row of a group whose latest closed finding is ``resolved`` and that shows new
  activity after the resolution is a regression of that finding (opened, regression_of set);
* a new window row of a group whose latest closed finding is ``false_positive`` or
  ``risk_accepted`` inherits that status: the verdict was about the issue, not one window.
  (Existing rows keep whatever status they have.)

"New activity after the resolution" joins two clocks.  Packet time: the occurrence just
written must end later than anything the group had ever shown (the cached ts_last of every
finding in the group, read before the write), so re-ingesting a capture already seen - with
or without --force - can never regress anything.  Wall clock: the run carrying it must have
started after the resolution, or (a live run that was already going) the packets themselves
must be later than the resolution, so buffered traffic from before it does not count.

Each automatic change writes a history row with actor "mirrorscope".
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection as DbConnection

from mirrorscope.store.db import StoreError
from mirrorscope.store.models import CaptureRun, FindingRow, FindingStatusChange
from mirrorscope.store.sanitize import safe_text

STATUSES = ("open", "acknowledged", "resolved", "false_positive", "risk_accepted")
CLOSED_STATUSES = ("resolved", "false_positive", "risk_accepted")
# Closed statuses that speak for the whole group: later windows inherit them.
SUPPRESSING_STATUSES = ("false_positive", "risk_accepted")
REASON_REQUIRED = SUPPRESSING_STATUSES
SYSTEM_ACTOR = "mirrorscope"
REGRESSION_REASON = "regression: seen again after resolution"
MAX_ACTOR_CHARS = 200
MAX_REASON_CHARS = 4000
HISTORY_KEYS = ("id", "finding_id", "ts", "actor", "old_status", "new_status", "reason")
_IN_CHUNK = 500


def check_status(status: str) -> str:
    """The status if it is one of STATUSES; StoreError otherwise."""
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


# ------------------------------------------------------------------ manual changes


def set_status(
    conn: DbConnection,
    finding_ids: Sequence[int],
    status: str,
    actor: str,
    reason: str,
    now: float,
) -> list[dict[str, Any]]:
    """Set the status of these findings (all or none); return {id, old_status, new_status}
    for each finding whose status changed (a finding already in that status is left alone).
    """
    check_status(status)
    actor = safe_text((actor or "").strip())[:MAX_ACTOR_CHARS]
    reason = safe_text((reason or "").strip())[:MAX_REASON_CHARS]
    if not actor:
        raise StoreError("a status change needs an actor (who made it)")
    if status in REASON_REQUIRED and not reason:
        raise StoreError(f"status {status} needs a reason (why)")
    wanted = sorted({_finding_id(value) for value in finding_ids})
    if not wanted:
        raise StoreError("no finding ids given")
    current: dict[int, str] = {}
    for chunk in _chunks(wanted):
        stmt = select(FindingRow.id, FindingRow.status).where(FindingRow.id.in_(chunk))
        current.update({int(fid): old for fid, old in conn.execute(stmt)})
    unknown = [fid for fid in wanted if fid not in current]
    if unknown:
        shown = ", ".join(str(fid) for fid in unknown[:20])
        more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
        raise StoreError(f"no finding with id {shown}{more}")
    changed = [fid for fid in wanted if current[fid] != status]
    for chunk in _chunks(changed):
        conn.execute(
            update(FindingRow)
            .where(FindingRow.id.in_(chunk))
            .values(status=status, status_actor=actor, status_reason=reason, status_at=now)
        )
    if changed:
        conn.execute(insert(FindingStatusChange), [
            {"finding_id": fid, "ts": now, "actor": actor, "old_status": current[fid],
             "new_status": status, "reason": reason}
            for fid in changed
        ])
    return [{"id": fid, "old_status": current[fid], "new_status": status} for fid in changed]


def history(conn: DbConnection, finding_id: int) -> list[dict[str, Any]]:
    """The finding's status changes, oldest first; StoreError for an unknown finding."""
    fid = _finding_id(finding_id)
    exists = conn.execute(select(FindingRow.id).where(FindingRow.id == fid)).one_or_none()
    if exists is None:
        raise StoreError(f"no finding with id {fid}")
    stmt = (
        select(*(getattr(FindingStatusChange, key) for key in HISTORY_KEYS))
        .where(FindingStatusChange.finding_id == fid)
        .order_by(FindingStatusChange.ts, FindingStatusChange.id)
    )
    out = []
    for row in conn.execute(stmt):
        record = dict(zip(HISTORY_KEYS, row, strict=True))
        record.update(id=int(record["id"]), finding_id=int(record["finding_id"]),
                      ts=float(record["ts"]))
        out.append(record)
    return out


# ----------------------------------------------------------- automatic changes


@dataclass(frozen=True, slots=True)
class _Closed:
    """A closed finding as it stood before a write."""

    id: int
    status: str
    status_at: float | None
    actor: str | None
    reason: str | None


@dataclass(slots=True)
class Snapshot:
    """What the store held, before a write, for the groups and rows that write touches."""

    group_max_ts: dict[str, float]  # latest packet time any finding of the group showed
    verdicts: dict[str, _Closed]  # the group's most recently closed finding
    existing: dict[str, tuple[int, str, float | None]]  # finding_key -> id, status, status_at


@dataclass(frozen=True, slots=True)
class Written:
    """One finding row a write produced: its key, group and this run's latest packet time."""

    finding_key: str
    group_key: str
    ts_last: float


def snapshot(conn: DbConnection, keys: Collection[str], groups: Collection[str]) -> Snapshot:
    """Read, before writing, what regression and inheritance decisions depend on."""
    group_list = sorted(groups)
    result = Snapshot({}, {}, {})
    for chunk in _chunks(group_list):
        stmt = (
            select(FindingRow.group_key, func.max(FindingRow.ts_last))
            .where(FindingRow.group_key.in_(chunk))
            .group_by(FindingRow.group_key)
        )
        result.group_max_ts.update({g: float(ts) for g, ts in conn.execute(stmt)})
        closed = and_(FindingRow.group_key.in_(chunk), FindingRow.status.in_(CLOSED_STATUSES))
        latest = (
            select(FindingRow.group_key.label("g"), func.max(FindingRow.status_at).label("at"))
            .where(closed)
            .group_by(FindingRow.group_key)
            .subquery()
        )
        rows = conn.execute(
            select(FindingRow.group_key, FindingRow.id, FindingRow.status, FindingRow.status_at,
                   FindingRow.status_actor, FindingRow.status_reason)
            .join(latest, and_(latest.c.g == FindingRow.group_key,
                               latest.c.at == FindingRow.status_at))
            .where(closed)
        ).all()
        # Closed rows written before status_at existed (NULL) are found by id instead.
        undated = conn.execute(
            select(FindingRow.group_key, FindingRow.id, FindingRow.status, FindingRow.status_at,
                   FindingRow.status_actor, FindingRow.status_reason)
            .where(closed, FindingRow.status_at.is_(None))
        ).all()
        for group, fid, status, at, actor, reason in [*undated, *rows]:
            candidate = _Closed(int(fid), status, None if at is None else float(at), actor, reason)
            best = result.verdicts.get(group)
            if best is None or _later(candidate, best):
                result.verdicts[group] = candidate
    for chunk in _chunks(sorted(keys)):
        stmt = select(FindingRow.finding_key, FindingRow.id, FindingRow.status,
                      FindingRow.status_at).where(FindingRow.finding_key.in_(chunk))
        result.existing.update({
            key: (int(fid), status, None if at is None else float(at))
            for key, fid, status, at in conn.execute(stmt)
        })
    return result


def apply_after_write(
    conn: DbConnection,
    run_id: int,
    written: Sequence[Written],
    ids: dict[str, int],
    before: Snapshot,
    now: float,
) -> list[dict[str, Any]]:
    """Re-open regressions and pass group verdicts on to new windows; return the changes."""
    started = conn.execute(
        select(CaptureRun.started_at).where(CaptureRun.id == run_id)
    ).scalar_one_or_none()
    run_started = None if started is None else float(started)

    def after(resolved_at: float | None, item: Written) -> bool:
        """Is this write's activity new, and later than the resolution?"""
        seen = before.group_max_ts.get(item.group_key)
        if seen is not None and item.ts_last <= seen:
            return False  # nothing the store had not already seen: a replay, not a return
        if resolved_at is None:
            return True
        return (run_started is not None and run_started > resolved_at) or item.ts_last > resolved_at

    changes: list[dict[str, Any]] = []
    for item in sorted(written, key=lambda w: ids[w.finding_key]):
        fid = ids[item.finding_key]
        existing = before.existing.get(item.finding_key)
        if existing is not None:
            _, status, status_at = existing
            if status == "resolved" and after(status_at, item):
                changes.append(_change(fid, "resolved", "open", SYSTEM_ACTOR,
                                       REGRESSION_REASON, regression_of=fid))
            continue
        verdict = before.verdicts.get(item.group_key)
        if verdict is None:
            continue
        if verdict.status in SUPPRESSING_STATUSES:
            why = f"inherited from finding #{verdict.id}"
            if verdict.reason:
                why += f" ({verdict.actor or 'unknown'}: {verdict.reason})"
            changes.append(_change(fid, "open", verdict.status, SYSTEM_ACTOR,
                                   why[:MAX_REASON_CHARS], regression_of=None))
        elif verdict.status == "resolved" and after(verdict.status_at, item):
            changes.append(_change(fid, "open", "open", SYSTEM_ACTOR, REGRESSION_REASON,
                                   regression_of=verdict.id))
    for change in changes:
        values: dict[str, Any] = {
            "status": change["new_status"],
            "status_actor": change["actor"],
            "status_reason": change["reason"],
            "status_at": now,
        }
        if change["regression_of"] is not None:
            values["regression_of"] = change["regression_of"]
        conn.execute(update(FindingRow).where(FindingRow.id == change["id"]).values(**values))
    if changes:
        # A new row was inserted open; its history starts there (old_status NULL).
        conn.execute(insert(FindingStatusChange), [
            {"finding_id": c["id"], "ts": now, "actor": c["actor"],
             "old_status": c["old_status"] if c["old_status"] != c["new_status"] else None,
             "new_status": c["new_status"], "reason": c["reason"]}
            for c in changes
        ])
    return changes


def _change(fid: int, old: str, new: str, actor: str, reason: str, *,
            regression_of: int | None) -> dict[str, Any]:
    return {"id": fid, "old_status": old, "new_status": new, "actor": actor, "reason": reason,
            "regression_of": regression_of}


def _later(candidate: _Closed, best: _Closed) -> bool:
    """Most recent status_at wins (undated is oldest); the higher id breaks ties."""
    a = -1.0 if candidate.status_at is None else candidate.status_at
    b = -1.0 if best.status_at is None else best.status_at
    return (a, candidate.id) > (b, best.id)


def _finding_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StoreError(f"a finding id is a positive integer, not {value!r}")
    return value


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


__all__ = [
    "CLOSED_STATUSES",
    "STATUSES",
    "SUPPRESSING_STATUSES",
    "Snapshot",
    "Written",
    "apply_after_write",
    "check_status",
    "history",
    "set_status",
    "snapshot",
]
