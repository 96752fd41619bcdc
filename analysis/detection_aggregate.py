"""Aggregation of occurrences into findings: one per (kind, endpoint, client, window).

An ``Occurrence`` is one thing seen once (a signature in one request, one outlier, one
promoted anomaly, one window's behaviour).  The aggregator keeps them open per key until the
window closes, then emits one ``Finding`` with the count, first/last time, the worst
severity, the best-scored occurrence's evidence and explanation, and a sample of the
transactions.  Occurrences of protocol anomalies may not know their client yet: they are
keyed by connection and resolved at close time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mirrorscope.analysis.detection_catalog import info, max_severity, remediation
from mirrorscope.analysis.features_profile import endpoint_id
from mirrorscope.model import EndpointKey, Finding

MAX_WHERE = 10


@dataclass(slots=True)
class Occurrence:
    """One observation of a finding kind."""

    kind: str
    endpoint: EndpointKey | None
    client_ip: str | None
    ts: float
    principal: str | None = None
    severity: str | None = None  # None: the catalogue's default
    confidence: float = 1.0
    evidence: dict[str, object] = field(default_factory=dict)  # already redacted
    explanation: list[dict[str, object]] = field(default_factory=list)
    where: str | None = None  # the parameter/header the remediation should name
    refs: tuple[tuple[str, int], ...] = ()  # (conn_id, trans_depth) examples
    conn_id: str | None = None  # lets a client-less occurrence be resolved later
    score: float = 0.0  # ranks occurrences: the best one's evidence represents the finding
    count: int = 1
    ts_last: float | None = None
    owasp: str | None = None  # None: the catalogue's category
    window_level: bool = False  # one window's total: duplicates (address and principal
    # windows of the same activity) merge by max, not by sum


@dataclass(slots=True)
class _Open:
    first: Occurrence
    best: Occurrence
    count: int
    ts_first: float
    ts_last: float
    severity: str
    confidence: float
    principal: str | None
    where: list[str]
    refs: list[tuple[str, int]]


Key = tuple[str, EndpointKey | None, str | None, int]


class Aggregator:
    """Open findings per (kind, endpoint, client, window index), bounded in number."""

    def __init__(self, *, max_open: int = 100_000, max_samples: int = 10) -> None:
        self.max_open = max_open
        self.max_samples = max_samples
        self.open: dict[Key, _Open] = {}
        self.dropped = 0  # occurrences refused because max_open keys were open
        # Connections whose client is still to be resolved at close (open "conn:" keys).
        self.pending_conns: dict[str, int] = {}

    def add(self, occ: Occurrence, window: int) -> None:
        """Count one occurrence into its window's finding."""
        client = occ.client_ip if occ.client_ip is not None else (
            f"conn:{occ.conn_id}" if occ.conn_id else None)
        key: Key = (occ.kind, occ.endpoint, client, window)
        entry = self.open.get(key)
        if entry is None:
            if len(self.open) >= self.max_open:
                self.dropped += 1
                return
            self.open[key] = self._new(occ)
            if occ.client_ip is None and occ.conn_id:
                pending = self.pending_conns
                pending[occ.conn_id] = pending.get(occ.conn_id, 0) + 1
            return
        self._merge(entry, occ)

    def _new(self, occ: Occurrence) -> _Open:
        severity = occ.severity or info(occ.kind).severity
        return _Open(occ, occ, occ.count, occ.ts, occ.ts_last or occ.ts, severity,
                     occ.confidence, occ.principal, [occ.where] if occ.where else [],
                     list(occ.refs[: self.max_samples]))

    def _merge(self, entry: _Open, occ: Occurrence) -> None:
        if occ.window_level:
            entry.count = max(entry.count, occ.count)
        else:
            entry.count += occ.count
        entry.ts_first = min(entry.ts_first, occ.ts)
        entry.ts_last = max(entry.ts_last, occ.ts_last or occ.ts)
        entry.severity = max_severity(entry.severity, occ.severity or info(occ.kind).severity)
        entry.confidence = max(entry.confidence, occ.confidence)
        entry.principal = entry.principal or occ.principal
        if occ.where and occ.where not in entry.where and len(entry.where) < MAX_WHERE:
            entry.where.append(occ.where)
        for ref in occ.refs:
            if len(entry.refs) >= self.max_samples:
                break
            if ref not in entry.refs:
                entry.refs.append(ref)
        if occ.score > entry.best.score:
            entry.best = occ

    def close(self, before_window: int | None,
              resolve: Callable[[str], str | None] = lambda conn: None) -> list[Finding]:
        """Emit the findings of every window < ``before_window`` (all when None), in order."""
        ready = [k for k in self.open if before_window is None or k[3] < before_window]
        if not ready:
            return []
        merged: dict[Key, _Open] = {}
        for key in ready:
            entry = self.open.pop(key)
            kind, endpoint, client, window = key
            if client is not None and client.startswith("conn:"):
                conn_id = client[5:]
                client = resolve(conn_id)
                left = self.pending_conns.pop(conn_id, 1) - 1
                if left:
                    self.pending_conns[conn_id] = left
            final: Key = (kind, endpoint, client, window)
            if final in merged:
                target = merged[final]
                self._merge(target, entry.best)
                if not entry.best.window_level:
                    target.count += entry.count - entry.best.count
            else:
                merged[final] = entry
        out = [self._finding(key, entry) for key, entry in merged.items()]
        out.sort(key=lambda f: (f.ts_first, f.kind, f.client_ip or "", str(f.endpoint)))
        return out

    @staticmethod
    def _finding(key: Key, entry: _Open) -> Finding:
        kind, endpoint, client, _ = key
        best = entry.best
        evidence = dict(best.evidence)
        if len(entry.where) > 1:
            evidence["locations"] = list(entry.where)
        where = best.where or (entry.where[0] if entry.where else None)
        explanation = tuple(best.explanation) or (
            {"feature": kind, "value": entry.count, "baseline": "not expected"},)
        return Finding(
            kind=kind,
            severity=entry.severity,
            owasp=best.owasp or info(kind).owasp,
            endpoint=endpoint,
            client_ip=client,
            ts_first=entry.ts_first,
            ts_last=entry.ts_last,
            count=entry.count,
            principal=entry.principal,
            confidence=round(entry.confidence, 3),
            evidence=evidence,
            explanation=explanation,
            remediation=remediation(kind, endpoint_id(endpoint) if endpoint else None, where),
            transactions=tuple(entry.refs),
        )
