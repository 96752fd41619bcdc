"""Inventory findings: kinds, OWASP API Top 10 (2023) mapping, remediation, aggregation.

Occurrences aggregate into one finding per (kind, endpoint, client, sub-key).  The book
keeps a reference to the endpoint's trie node rather than its template, because templates
change as evidence arrives (`/posts/hello-world` becomes `/posts/{post}`): the template is
rendered when findings are read, and aggregates that now share a template are merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mirrorscope.model import EndpointKey, Finding

SEVERITIES = ("info", "low", "medium", "high", "critical")

OWASP = {
    "api.pii_exposure": "API3:2023",  # Broken Object Property Level Authorization (exposure)
    "api.secret_in_url": "API2:2023",  # Broken Authentication: credentials in the URL
    "api.cleartext_credentials": "API8:2023",  # Security Misconfiguration: no TLS
    "api.jwt_weak": "API2:2023",  # Broken Authentication: weak tokens
    "api.nonprod_exposed": "API9:2023",  # Improper Inventory Management
    "api.shadow_endpoint": "API9:2023",
    "api.zombie_endpoint": "API9:2023",
}

REMEDIATION = {
    "api.pii_exposure": (
        "Return only the fields the client needs: apply response schemas / serializers per "
        "role, mask card numbers and national ids, and require authentication on endpoints "
        "that return personal data."),
    "api.secret_in_url": (
        "Move credentials out of the URL (into the Authorization header or the body): URLs "
        "are written to proxy, server and browser logs and leak through Referer. Rotate the "
        "exposed credentials."),
    "api.cleartext_credentials": (
        "Serve the API over TLS only (redirect or refuse plain HTTP, enable HSTS) and rotate "
        "credentials that were sent in clear text."),
    "api.jwt_weak": (
        "Reject unsigned tokens (alg 'none') and pin the accepted algorithms; issue tokens "
        "with a short 'exp' and verify it on every request."),
    "api.nonprod_exposed": (
        "Take development/staging hosts off networks that production clients reach, or put "
        "them behind authentication; never load production data into them."),
    "api.shadow_endpoint": (
        "Document the endpoint in the API specification (and review it like any other "
        "endpoint) or remove it from the deployment."),
    "api.zombie_endpoint": (
        "Retire the deprecated version: tell its remaining clients to migrate, then remove "
        "the route (or block it at the gateway)."),
}


def raise_severity(severity: str, steps: int = 1) -> str:
    """The severity `steps` levels higher (capped at critical)."""
    index = SEVERITIES.index(severity) + steps
    return SEVERITIES[max(0, min(index, len(SEVERITIES) - 1))]


def max_severity(a: str, b: str) -> str:
    """The higher of two severities."""
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


@dataclass(slots=True)
class Aggregate:
    """One finding being accumulated."""

    kind: str
    severity: str
    host: str | None
    method: str | None
    node: object | None  # the trie node of the endpoint (None: host-level findings)
    client_ip: str | None
    subkey: str
    ts_first: float
    ts_last: float
    count: int = 1
    principal: str | None = None
    confidence: float = 1.0
    evidence: dict[str, object] = field(default_factory=dict)
    explanation: tuple[dict[str, object], ...] = ()
    transactions: list[tuple[str, int]] = field(default_factory=list)


def _merge_evidence(mine: dict[str, object], theirs: dict[str, object], limit: int = 20) -> None:
    for key, value in theirs.items():
        current = mine.get(key)
        if isinstance(current, list) and isinstance(value, list):
            for item in value:
                if item not in current and len(current) < limit:
                    current.append(item)
        elif key not in mine:
            mine[key] = value


class FindingBook:
    """Aggregates inventory findings; bounded by max_findings."""

    def __init__(self, max_findings: int = 10_000, max_transactions: int = 10) -> None:
        self._aggregates: dict[tuple[object, ...], Aggregate] = {}
        self._max = max_findings
        self._max_tx = max_transactions
        self.dropped = 0  # occurrences not recorded because the book was full

    def record(self, *, kind: str, severity: str, host: str | None, method: str | None,
               node: object | None, ts: float, tx: tuple[str, int] | None,
               evidence: dict[str, object], subkey: str = "", client_ip: str | None = None,
               principal: str | None = None, confidence: float = 1.0,
               explanation: tuple[dict[str, object], ...] = ()) -> Aggregate | None:
        """Count one occurrence; returns the aggregate when this occurrence created it."""
        resolve = getattr(node, "resolve", None)
        node = resolve() if resolve is not None else node
        key = (kind, host, method, id(node) if node is not None else None, client_ip, subkey)
        agg = self._aggregates.get(key)
        if agg is not None:
            agg.count += 1
            agg.ts_first = min(agg.ts_first, ts)
            agg.ts_last = max(agg.ts_last, ts)
            agg.severity = max_severity(agg.severity, severity)
            agg.confidence = max(agg.confidence, confidence)
            _merge_evidence(agg.evidence, evidence)
            if tx is not None and len(agg.transactions) < self._max_tx and \
                    tx not in agg.transactions:
                agg.transactions.append(tx)
            return None
        if len(self._aggregates) >= self._max:
            self.dropped += 1
            return None
        agg = Aggregate(kind, severity, host, method, node, client_ip, subkey, ts, ts,
                        principal=principal, confidence=confidence, evidence=dict(evidence),
                        explanation=explanation, transactions=[tx] if tx is not None else [])
        self._aggregates[key] = agg
        return agg

    def findings(self, template_of: Callable[[object], str]) -> list[Finding]:
        """Every aggregate as a Finding, with endpoints rendered by their current template."""
        merged: dict[tuple[object, ...], Aggregate] = {}
        rendered: dict[tuple[object, ...], EndpointKey | None] = {}
        for agg in self._aggregates.values():
            endpoint = None
            if agg.node is not None and agg.host is not None and agg.method is not None:
                endpoint = EndpointKey(agg.host, agg.method, template_of(agg.node))
            key = (agg.kind, endpoint, agg.host if endpoint is None else None, agg.client_ip,
                   agg.subkey)
            have = merged.get(key)
            if have is None:
                merged[key] = replace(agg, evidence=dict(agg.evidence),
                                      transactions=list(agg.transactions))
                rendered[key] = endpoint
                continue
            have.count += agg.count
            have.ts_first = min(have.ts_first, agg.ts_first)
            have.ts_last = max(have.ts_last, agg.ts_last)
            have.severity = max_severity(have.severity, agg.severity)
            _merge_evidence(have.evidence, agg.evidence)
            for tx in agg.transactions:
                if tx not in have.transactions and len(have.transactions) < self._max_tx:
                    have.transactions.append(tx)
        out = [to_finding(agg, rendered[key]) for key, agg in merged.items()]
        out.sort(key=lambda f: (f.kind, f.endpoint.host if f.endpoint else "",
                                f.endpoint.path_template if f.endpoint else "",
                                f.endpoint.method if f.endpoint else "", f.client_ip or ""))
        return out


def aggregate_key(agg: Aggregate, endpoint: EndpointKey | None) -> str:
    """The natural key a store can upsert a finding by (stable across feed/findings calls)."""
    where = f"{endpoint.host}|{endpoint.method}|{endpoint.path_template}" if endpoint else \
        f"{agg.host or ''}||"
    return f"{agg.kind}|{where}|{agg.client_ip or ''}|{agg.subkey}"


def to_finding(agg: Aggregate, endpoint: EndpointKey | None) -> Finding:
    """An aggregate as the shared Finding type (evidence carries its aggregate_key)."""
    evidence = dict(agg.evidence)
    evidence["aggregate_key"] = aggregate_key(agg, endpoint)
    return Finding(
        kind=agg.kind,
        severity=agg.severity,
        owasp=OWASP[agg.kind],
        endpoint=endpoint,
        client_ip=agg.client_ip,
        ts_first=agg.ts_first,
        ts_last=agg.ts_last,
        count=agg.count,
        principal=agg.principal,
        confidence=agg.confidence,
        evidence=evidence,
        explanation=agg.explanation,
        remediation=REMEDIATION[agg.kind],
        transactions=tuple(agg.transactions),
    )
