"""Finding lifecycle outside the store: statuses, age and SLA (due date) by severity.

When was a finding detected?  Its ts_first is *packet* time: for a live sensor that is about
the wall clock, but a replayed capture may be months old (every finding would be born
breached) or carry nonsense timestamps.  So the SLA clock starts at the packet time only
when it is plausible - between the wall-clock start of the run that first stored the finding
(``first_run_at``) and now - and at ``first_run_at`` otherwise, i.e. when mirrorscope told
you.  A finding dict without ``first_run_at`` (say, an alert document) uses its packet time.

Closed findings (resolved, false_positive, risk_accepted) are never in breach; their age
stops at the moment they were closed (``status_at``).  Severities whose SLA is None (info by
default) have no due date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mirrorscope.store.lifecycle_repo import CLOSED_STATUSES, STATUSES, SUPPRESSING_STATUSES

DAY = 86400.0
DEFAULT_SLA_DAYS: Mapping[str, int | None] = {
    "critical": 7,
    "high": 30,
    "medium": 90,
    "low": 180,
    "info": None,
}

__all__ = [
    "CLOSED_STATUSES",
    "DEFAULT_SLA_DAYS",
    "STATUSES",
    "SUPPRESSING_STATUSES",
    "SlaStatus",
    "detected_at",
    "parse_sla_days",
    "sla_status",
]


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """A finding's age and where it stands against its severity's SLA (times: epoch s)."""

    age_days: float
    due_at: float | None
    breached: bool
    days_left: float | None  # negative once breached; None when closed or without an SLA


def detected_at(finding: Mapping[str, Any], now: float) -> float:
    """Wall-clock moment the finding counts as detected (see the module docstring)."""
    packet = _number(finding.get("first_seen"))
    if packet is None:
        packet = _number(finding.get("ts_first"))
    stored = _number(finding.get("first_run_at"))
    if stored is None:
        return now if packet is None else packet
    if packet is not None and stored <= packet <= now:
        return packet
    return stored


def sla_status(
    finding: Mapping[str, Any],
    now: float,
    sla_days: Mapping[str, int | None] = DEFAULT_SLA_DAYS,
) -> SlaStatus:
    """Age and SLA standing of one finding dict (as AnalysisStore.findings() returns)."""
    start = detected_at(finding, now)
    closed = finding.get("status") in CLOSED_STATUSES
    end = now
    if closed:
        closed_at = _number(finding.get("status_at"))
        if closed_at is not None:
            end = max(start, min(closed_at, now))
    age_days = max(0.0, (end - start) / DAY)
    days = sla_days.get(str(finding.get("severity")))
    due_at = None if days is None else start + float(days) * DAY
    if closed or due_at is None:
        return SlaStatus(age_days, due_at, False, None)
    return SlaStatus(age_days, due_at, now > due_at, (due_at - now) / DAY)


def parse_sla_days(text: str) -> dict[str, int | None]:
    """DEFAULT_SLA_DAYS overridden by "critical=3,high=14,info=none"; ValueError if bad."""
    result = dict(DEFAULT_SLA_DAYS)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        if not sep or name not in DEFAULT_SLA_DAYS:
            raise ValueError(f"{part!r}: expected SEVERITY=DAYS with a severity among "
                             f"{', '.join(DEFAULT_SLA_DAYS)}")
        if value in ("none", "-", ""):
            result[name] = None
            continue
        if not value.isdigit():
            raise ValueError(f"{part!r}: days must be a whole number or 'none'")
        result[name] = int(value)
    return result


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
