"""`mirrorscope report`: gather what the database knows into one plain data structure.

gather() reads the store (runs, merged endpoint inventory, findings with their triage
state, traffic counted per time bucket in SQL) and applies the optional owner and time
filters; report_html.render() turns the result into one self-contained HTML file and
write_report() puts it on disk atomically.  Nothing here re-reads raw wire data: evidence
comes from the store, which redacted it when it was written.

Endpoint risk score (documented in the report too): the sum, over the endpoint's findings
that are not closed, of a severity weight (critical 10, high 5, medium 2, low 1, info 0),
plus 2 per distinct sensitive data type the endpoint carries, plus 3 more when it carries
sensitive data and was seen answering without authentication.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorscope.model import EndpointKey

if TYPE_CHECKING:
    from mirrorscope.ownership import Owner, OwnershipRules

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_WEIGHT = {"critical": 10, "high": 5, "medium": 2, "low": 1, "info": 0}
SENSITIVE_WEIGHT = 2
UNAUTHENTICATED_SENSITIVE_WEIGHT = 3
OWASP_2023 = {
    "API1:2023": "Broken Object Level Authorization",
    "API2:2023": "Broken Authentication",
    "API3:2023": "Broken Object Property Level Authorization",
    "API4:2023": "Unrestricted Resource Consumption",
    "API5:2023": "Broken Function Level Authorization",
    "API6:2023": "Unrestricted Access to Sensitive Business Flows",
    "API7:2023": "Server Side Request Forgery",
    "API8:2023": "Security Misconfiguration",
    "API9:2023": "Improper Inventory Management",
    "API10:2023": "Unsafe Consumption of APIs",
}
STATUS_CLASSES = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx", 1: "1xx", 0: "no response"}
# Bucket widths offered for time charts (seconds): the smallest giving <= MAX_BARS bars.
_BUCKET_WIDTHS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
                  60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                  2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400)
MAX_BARS = 60
# Titles of the inventory's finding kinds (detection kinds carry theirs in their catalogue).
INVENTORY_TITLES = {
    "api.pii_exposure": "Sensitive data exposure",
    "api.secret_in_url": "Credentials in the URL",
    "api.cleartext_credentials": "Credentials sent in clear text",
    "api.jwt_weak": "Weak JSON Web Token",
    "api.nonprod_exposed": "Non-production host exposed",
    "api.shadow_endpoint": "Shadow (undocumented) endpoint",
    "api.zombie_endpoint": "Zombie (deprecated) endpoint",
}
SHADOW_KIND = "api.shadow_endpoint"
ZOMBIE_KIND = "api.zombie_endpoint"


class ReportError(Exception):
    """The report cannot be built from this input (bad filter, unreadable database)."""


@dataclass(slots=True)
class EndpointView:
    """One endpoint of the (filtered) inventory with its risk."""

    host: str
    method: str
    path: str
    count: int
    first_seen: float
    last_seen: float
    auth: list[str]
    sensitive: list[str]
    kind: str
    owner: str | None = None
    exists: bool = True  # False: only ever answered 404/405/400 (probing, not a route)
    nonprod: bool = False
    findings: Counter[str] = field(default_factory=Counter)  # open findings per severity
    score: int = 0


@dataclass(slots=True)
class FindingView:
    """One finding as the report shows it: the store's dict plus owner, SLA and title."""

    data: dict[str, Any]
    title: str
    owasp_name: str
    remediation_steps: list[str]
    owner: str | None = None
    owner_contact: str | None = None
    sla: Any = None  # lifecycle.SlaStatus: age, due date, breached


@dataclass(slots=True)
class TimeChart:
    """Counts per time bucket, one list per named series (bucket i starts at start+i*width)."""

    start: float
    width: float
    series: dict[str, list[float]]


@dataclass(slots=True)
class Inventory:
    """Counts that summarise the (filtered) API inventory."""

    hosts: Counter[str]  # host -> requests
    endpoints: int
    api_endpoints: int
    static_endpoints: int
    not_existing: int  # probed routes that never answered as existing
    nonprod_hosts: int
    shadow: int | None  # None: no spec was configured, so nothing can be said
    zombie: int | None
    sensitive: Counter[str]  # data type -> endpoints carrying it
    auth: Counter[str]  # scheme -> endpoints using it


@dataclass(slots=True)
class ReportData:
    """Everything the HTML needs, already filtered."""

    generated_at: float
    database: str
    owner: str | None
    since: float | None
    runs: list[dict[str, Any]]
    traffic_total: int
    traffic_first: float | None
    traffic_last: float | None
    inventory: Inventory
    endpoints: list[EndpointView]
    findings: list[FindingView]
    by_severity: dict[str, int]
    by_owasp: dict[str, dict[str, int]]  # category -> severity -> count
    traffic: TimeChart | None
    findings_over_time: TimeChart | None
    notes: list[str] = field(default_factory=list)


def gather(
    db_url: str,
    *,
    rules: OwnershipRules | None = None,
    owner: str | None = None,
    since_seconds: float | None = None,
    now: float | None = None,
) -> ReportData:
    """Read the database and build the report's data (owner needs rules: OwnershipRules)."""
    from mirrorscope.store.analysis_repo import AnalysisStore
    from mirrorscope.store.db import StoreError
    from mirrorscope.store.report_repo import ReportRepo

    if owner is not None and rules is None:
        raise ReportError("--owner needs ownership rules: pass --owners FILE")
    if since_seconds is not None and not (math.isfinite(since_seconds) and since_seconds >= 0):
        raise ReportError("--since must be a non-negative duration")
    now = time.time() if now is None else now
    since = None if since_seconds is None else now - since_seconds
    try:
        with ReportRepo(db_url) as repo, AnalysisStore(db_url) as analysis:
            runs = repo.runs()
            observations = analysis.endpoint_observations()
            findings = analysis.findings(since=since)
            span = repo.traffic_span(since=since)
            return _assemble(repo, db_url, runs, observations, findings, span, rules, owner,
                             since, now)
    except StoreError as exc:
        raise ReportError(str(exc)) from exc


def _assemble(repo: Any, db_url: str, runs: list[dict[str, Any]], observations: list[dict],
              findings: list[dict[str, Any]], span: dict[str, Any],
              rules: OwnershipRules | None,
              owner: str | None, since: float | None, now: float) -> ReportData:
    owner_of = _owner_lookup(rules)
    endpoints = _endpoints(observations, since, owner_of)
    views = [_finding_view(f, owner_of, now) for f in findings]
    notes = []
    if owner is not None:
        endpoints = [e for e in endpoints if e.owner == owner]
        unattributed = sum(1 for v in views if v.data.get("endpoint") is None)
        views = [v for v in views if v.owner == owner]
        if unattributed:
            notes.append(f"{unattributed} finding(s) without an endpoint (host-wide) cannot be "
                         "attributed to a team and are left out.")
        if not endpoints and not views:
            notes.append(f"No endpoint or finding in this database is owned by {owner!r}.")
    _score(endpoints, views)
    views.sort(key=lambda v: (-SEVERITIES.index(v.data["severity"]), -v.data["count"],
                              v.data["id"]))
    by_severity = {level: 0 for level in reversed(SEVERITIES)}
    by_owasp: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEVERITIES, 0))
    for view in views:
        by_severity[view.data["severity"]] += 1
        by_owasp[view.data["owasp"]][view.data["severity"]] += 1
    start, width, size = _bucketing(span, views, since)
    traffic = None if start is None else _traffic(repo, start, width, size, owner, owner_of,
                                                  since)
    traffic_total = span["count"] if traffic is None or owner is None else int(
        sum(sum(values) for values in traffic.series.values()))
    return ReportData(
        generated_at=now,
        database=_safe_url(db_url),
        owner=owner,
        since=since,
        runs=runs,
        traffic_total=traffic_total,
        traffic_first=span["first"],
        traffic_last=span["last"],
        inventory=_inventory(endpoints, views),
        endpoints=sorted(endpoints, key=lambda e: (-e.score, -e.count, e.host, e.path)),
        findings=views,
        by_severity=by_severity,
        by_owasp=dict(sorted(by_owasp.items(), key=lambda item: _owasp_order(item[0]))),
        traffic=traffic,
        findings_over_time=None if start is None else _findings_chart(views, start, width,
                                                                      size),
        notes=notes,
    )


# ------------------------------------------------------------------ endpoints & findings


def _owner_lookup(rules: OwnershipRules | None) -> Callable[[str, str, str], Owner | None]:
    """owner_for(host, path, method) with a cache (traffic repeats the same paths)."""
    cache: dict[tuple[str, str, str], Owner | None] = {}

    def lookup(host: str, path: str, method: str) -> Owner | None:
        if rules is None:
            return None
        key = (host, path, method)
        if key not in cache:
            cache[key] = rules.owner_for(host, path, method)
        return cache[key]

    return lookup


def _endpoints(observations: Iterable[dict], since: float | None,
               owner_of: Callable[[str, str, str], Owner | None]) -> list[EndpointView]:
    """Every run's document of an endpoint merged into one view (as `inventory` does)."""
    from mirrorscope.analysis.inventory_stats import merge_docs

    docs: dict[EndpointKey, dict] = {}
    for row in observations:
        key = EndpointKey(row["host"], row["method"], row["path_template"])
        docs[key] = merge_docs(docs[key], row["doc"]) if key in docs else row["doc"]
    out = []
    for key, doc in docs.items():
        last_seen = float(doc.get("last_seen") or 0)
        if since is not None and last_seen < since:
            continue
        found = owner_of(key.host, key.path_template, key.method)
        out.append(EndpointView(
            host=key.host, method=key.method, path=key.path_template,
            count=int(doc.get("count") or 0), first_seen=float(doc.get("first_seen") or 0),
            last_seen=last_seen, auth=[str(a) for a in doc.get("auth") or []],
            sensitive=sorted({str(s.get("type")) for s in doc.get("sensitive") or []
                              if isinstance(s, dict)}),
            kind=str(doc.get("kind") or "api"), owner=None if found is None else found.team,
            exists=doc.get("exists") is not False, nonprod=bool(doc.get("nonprod")),
        ))
    out.sort(key=lambda e: (e.host, e.path, e.method))
    return out


def _finding_view(finding: dict[str, Any], owner_of: Callable[[str, str, str], Owner | None],
                  now: float) -> FindingView:
    from mirrorscope import lifecycle
    from mirrorscope.analysis.detection_catalog import CATALOG

    endpoint = finding.get("endpoint")
    found = None if endpoint is None else owner_of(
        endpoint["host"], endpoint["path_template"], endpoint["method"])
    entry = CATALOG.get(finding["kind"])
    title = entry.title if entry is not None else INVENTORY_TITLES.get(
        finding["kind"], _title_from_kind(finding["kind"]))
    return FindingView(
        data=finding,
        title=title,
        owasp_name=OWASP_2023.get(finding["owasp"], ""),
        remediation_steps=remediation_steps(finding.get("remediation") or ""),
        owner=None if found is None else found.team,
        owner_contact=None if found is None else (found.contact or None),
        sla=lifecycle.sla_status(finding, now),
    )


def _title_from_kind(kind: str) -> str:
    """'api.pii_exposure' -> 'Pii exposure' (kinds outside the detection catalogue)."""
    name = kind.rsplit(".", 1)[-1].replace("_", " ").strip()
    return name[:1].upper() + name[1:] if name else kind


def remediation_steps(text: str) -> list[str]:
    """A remediation paragraph as a list of steps: one per sentence or ';'-clause."""
    clauses = re.split(r"(?<=[.;])\s+(?=[A-Za-z])", " ".join(text.split()))
    steps = []
    for clause in clauses:
        clause = clause.strip().rstrip(";").strip()
        if clause:
            steps.append(clause[:1].upper() + clause[1:])
    return steps


def _score(endpoints: list[EndpointView], views: list[FindingView]) -> None:
    """Fill each endpoint's open-finding counts and risk score (see the module docstring)."""
    from mirrorscope import lifecycle

    index = {(e.host, e.method, e.path): e for e in endpoints}
    for view in views:
        endpoint = view.data.get("endpoint")
        if endpoint is None or view.data.get("status") in lifecycle.CLOSED_STATUSES:
            continue
        key = (endpoint["host"], endpoint["method"], endpoint["path_template"])
        target = index.get(key)
        if target is None:  # a finding on an endpoint the inventory has not kept
            target = EndpointView(key[0], key[1], key[2], 0, 0.0, 0.0, [], [], "api",
                                  owner=view.owner)
            index[key] = target
            endpoints.append(target)
        target.findings[view.data["severity"]] += 1
    for endpoint in endpoints:
        score = sum(SEVERITY_WEIGHT[s] * n for s, n in endpoint.findings.items())
        if endpoint.sensitive:
            score += SENSITIVE_WEIGHT * len(endpoint.sensitive)
            if "none" in endpoint.auth:
                score += UNAUTHENTICATED_SENSITIVE_WEIGHT
        endpoint.score = score


def _inventory(endpoints: list[EndpointView], views: list[FindingView]) -> Inventory:
    kinds = {v.data["kind"] for v in views}
    shadow = {_endpoint_of(v) for v in views if v.data["kind"] == SHADOW_KIND}
    zombie = {_endpoint_of(v) for v in views if v.data["kind"] == ZOMBIE_KIND}
    hosts: Counter[str] = Counter()
    sensitive: Counter[str] = Counter()
    auth: Counter[str] = Counter()
    for e in endpoints:
        hosts[e.host] += e.count
        sensitive.update(e.sensitive)
        auth.update(set(e.auth))
    spec_known = SHADOW_KIND in kinds or ZOMBIE_KIND in kinds
    return Inventory(
        hosts=hosts,
        endpoints=len(endpoints),
        api_endpoints=sum(1 for e in endpoints if e.kind == "api"),
        static_endpoints=sum(1 for e in endpoints if e.kind == "static"),
        not_existing=sum(1 for e in endpoints if not e.exists),
        nonprod_hosts=len({e.host for e in endpoints if e.nonprod}),
        shadow=len(shadow) if spec_known else None,
        zombie=len(zombie) if spec_known else None,
        sensitive=sensitive,
        auth=auth,
    )


def _endpoint_of(view: FindingView) -> tuple[str, str, str] | None:
    endpoint = view.data.get("endpoint")
    if endpoint is None:
        return None
    return (endpoint["host"], endpoint["method"], endpoint["path_template"])


def _owasp_order(category: str) -> tuple[int, str]:
    match = re.match(r"API(\d+):", category)
    return (int(match.group(1)) if match else 99, category)


# ------------------------------------------------------------------------ time charts


def _bucketing(span: dict[str, Any], views: list[FindingView], since: float | None
               ) -> tuple[float | None, float, int]:
    """Start, width and number of the time buckets covering the traffic and the findings.

    With since, nothing starts before it: a finding first seen earlier (and seen again
    since) is counted in the first bucket.
    """
    times = [t for t in (span["first"], span["last"]) if t is not None]
    times += [v.data["first_seen"] for v in views]
    if since is not None:
        times = [max(t, since) for t in times]
    if not times:
        return None, 1.0, 0
    first, last = min(times), max(times)
    # The smallest width giving at most MAX_BARS bars once aligned on a multiple of it
    # (round axis labels); the aligned start can add one bar, hence the margin.
    width = next((w for w in _BUCKET_WIDTHS if (last - first) / w < MAX_BARS - 1),
                 _BUCKET_WIDTHS[-1])
    start = math.floor(first / width) * width
    return start, float(width), int((last - start) // width) + 1


def _traffic(repo: Any, start: float, width: float, size: int, owner: str | None,
             owner_of: Callable[[str, str, str], Owner | None], since: float | None) -> TimeChart:
    """Transactions per bucket and status class (counted in SQL; see ReportRepo)."""
    rows = repo.traffic_buckets(start=start, width=width, by_endpoint=owner is not None,
                                since=since)
    series: dict[str, list[float]] = {}
    for row in rows:
        if row["bucket"] >= size:  # arrived after the span was read
            continue
        if owner is not None:
            found = owner_of(row["host"] or "", row["path"] or "", row["method"] or "")
            if found is None or found.team != owner:
                continue
        name = STATUS_CLASSES.get(row["status_class"], "other")
        values = series.setdefault(name, [0.0] * size)
        values[row["bucket"]] += row["count"]
    ordered = {name: series[name] for name in STATUS_CLASSES.values() if name in series}
    ordered.update({k: v for k, v in series.items() if k not in ordered})
    return TimeChart(start, width, ordered)


def _findings_chart(views: list[FindingView], start: float, width: float, size: int
                    ) -> TimeChart:
    """Findings per bucket of their first sighting, one series per severity."""
    series = {level: [0.0] * size for level in reversed(SEVERITIES)}
    for view in views:
        index = min(max(int((view.data["first_seen"] - start) // width), 0), size - 1)
        series[view.data["severity"]][index] += 1
    return TimeChart(start, width, series)


# ----------------------------------------------------------------------------- output


def _safe_url(url: str) -> str:
    """The database URL with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy parses: show nothing that could be a secret
        return "(unparseable database URL)"


def write_report(path: Path, text: str) -> None:
    """Write text to path atomically (a temporary file in the same directory, renamed).

    The file is created 0600: it lists the API's weaknesses; share it deliberately.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
