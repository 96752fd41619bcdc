"""Render a ReportData as one self-contained HTML page (inline CSS and SVG, no script).

The page loads nothing: its Content-Security-Policy forbids every fetch (default-src
'none'), allows no script at all, and admits exactly one stylesheet, the inline one, by its
sha256 hash.  The severity filter of the findings list is pure CSS (radio buttons), so the
page needs no JavaScript.  Every wire-derived value goes through escape(); JSON evidence is
printed with ensure_ascii, so no raw control or direction-changing character reaches it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from mirrorscope import __version__
from mirrorscope.lifecycle import CLOSED_STATUSES
from mirrorscope.report import (
    OWASP_2023,
    SENSITIVE_WEIGHT,
    SEVERITIES,
    SEVERITY_WEIGHT,
    UNAUTHENTICATED_SENSITIVE_WEIGHT,
    EndpointView,
    FindingView,
    ReportData,
    TimeChart,
)
from mirrorscope.report_charts import Series, bar_chart, escape, hbar_chart, time_series

SEVERITY_COLOURS = {"critical": "#7b1e1e", "high": "#d62728", "medium": "#f58518",
                    "low": "#4c78a8", "info": "#8c8c8c"}
STATUS_COLOURS = {"2xx": "#54a24b", "3xx": "#72b7b2", "4xx": "#f58518", "5xx": "#d62728",
                  "1xx": "#b279a2", "no response": "#8c8c8c", "other": "#9d755d"}
MAX_DETAILED_FINDINGS = 500
MAX_EVIDENCE_CHARS = 16_000
MAX_RISK_ROWS = 50
MAX_RISK_BARS = 15
MAX_TRANSACTION_REFS = 20
PATH_CHARS = 200

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #222; background: #f6f7f9; line-height: 1.4; }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 2px solid #ccd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 8px; }
h4 { font-size: 13px; margin: 12px 0 4px; text-transform: uppercase; color: #555; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
nav { font-size: 13px; margin: 10px 0; }
nav a { margin-right: 14px; color: #2a5db0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 8px 14px;
  min-width: 120px; }
.card b { display: block; font-size: 22px; }
.card span { font-size: 12px; color: #555; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.panel { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 12px;
  margin: 8px 0; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
th, td { border: 1px solid #dde; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f5; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
code { overflow-wrap: anywhere; }
pre { background: #f3f4f7; border: 1px solid #e0e2e8; padding: 8px; overflow-x: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 420px; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 4px; color: #fff;
  font-size: 11px; font-weight: bold; text-transform: uppercase; }
.badge.sev-critical { background: #7b1e1e; } .badge.sev-high { background: #d62728; }
.badge.sev-medium { background: #f58518; } .badge.sev-low { background: #4c78a8; }
.badge.sev-info { background: #8c8c8c; }
.finding { background: #fff; border: 1px solid #dde; border-left: 6px solid #8c8c8c;
  border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
.finding.sev-critical { border-left-color: #7b1e1e; }
.finding.sev-high { border-left-color: #d62728; }
.finding.sev-medium { border-left-color: #f58518; }
.finding.sev-low { border-left-color: #4c78a8; }
.finding ol, .finding p { font-size: 13px; margin: 4px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0;
  font-size: 13px; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; }
.breached { color: #b00020; font-weight: bold; }
.note { font-size: 12px; color: #555; }
.notice { background: #fff7e0; border: 1px solid #f0d890; padding: 6px 10px;
  border-radius: 6px; font-size: 13px; }
.filter { font-size: 13px; margin: 8px 0; }
.filter input { margin-left: 10px; }
#show-critical:checked ~ .finding-list > .finding:not(.sev-critical),
#show-high:checked ~ .finding-list > .finding:not(.sev-high),
#show-medium:checked ~ .finding-list > .finding:not(.sev-medium),
#show-low:checked ~ .finding-list > .finding:not(.sev-low),
#show-info:checked ~ .finding-list > .finding:not(.sev-info) { display: none; }
svg.chart { display: block; max-width: 100%; height: auto; font-family: inherit; }
footer { font-size: 12px; color: #777; padding: 24px; }
@media print { .filter, nav { display: none; } body { background: #fff; } }
"""


def content_security_policy(css: str = CSS) -> str:
    """The page's policy: no fetch of any kind, no script, only this stylesheet."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; script-src 'none'; img-src 'none'; font-src 'none'; "
            f"connect-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
            "form-action 'none'")


def render(data: ReportData) -> str:
    """The whole report as one HTML document."""
    title = "mirrorscope API security report"
    if data.owner is not None:
        title += f" \u2014 team {data.owner}"
    body = "".join([
        _header(data, title),
        "<main>",
        *(f'<p class="notice">{escape(note)}</p>' for note in data.notes),
        _inventory(data),
        _findings_summary(data),
        _risk(data),
        _over_time(data),
        _details(data),
        "</main>",
        f"<footer>Generated by mirrorscope {escape(__version__)}. Evidence is shown as "
        "stored, with secrets redacted; principals are keyed hashes. Times are UTC.</footer>",
    ])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n"
    )


# ---------------------------------------------------------------------------- sections


def _header(data: ReportData, title: str) -> str:
    runs = data.runs
    started = [r["started_at"] for r in runs if r.get("started_at") is not None]
    finished = [r["finished_at"] for r in runs if r.get("finished_at") is not None]
    run_line = f"{len(runs)} capture run(s)"
    if started:
        run_line += f", {_utc(min(started))} \u2013 {_utc(max(finished or started))}"
    traffic_line = "no traffic stored"
    if data.traffic_first is not None and data.traffic_last is not None:
        traffic_line = (f"traffic (packet time) {_utc(data.traffic_first)} \u2013 "
                        f"{_utc(data.traffic_last)}")
    scope = []
    if data.owner is not None:
        scope.append(f"endpoints and findings owned by team {data.owner}")
    if data.since is not None:
        scope.append(f"activity since {_utc(data.since)}")
    unresolved = sum(1 for f in data.findings if f.data.get("status") not in CLOSED_STATUSES)
    urgent = data.by_severity.get("critical", 0) + data.by_severity.get("high", 0)
    breached = sum(1 for f in data.findings if f.sla is not None and f.sla.breached)
    cards = [
        ("transactions", data.traffic_total),
        ("endpoints", data.inventory.endpoints),
        ("hosts", len(data.inventory.hosts)),
        ("findings", len(data.findings)),
        ("not closed", unresolved),
        ("critical + high", urgent),
        ("SLA breached", breached),
    ]
    return (
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="meta">Generated {escape(_utc(data.generated_at))} from '
        f"<code>{escape(data.database)}</code></p>"
        f'<p class="meta">{escape(run_line)}; {escape(traffic_line)}</p>'
        + (f'<p class="meta">Scope: {escape("; ".join(scope))}</p>' if scope else "")
        + _cards(cards)
        + '<nav><a href="#inventory">Inventory</a><a href="#findings">Findings</a>'
        '<a href="#risk">Endpoints by risk</a><a href="#over-time">Over time</a>'
        '<a href="#details">Finding details</a></nav></header>'
    )


def _inventory(data: ReportData) -> str:
    inv = data.inventory
    unknown = "n/a (no spec)"
    cards = [
        ("hosts", len(inv.hosts)),
        ("endpoints", inv.endpoints),
        ("API endpoints", inv.api_endpoints),
        ("static assets", inv.static_endpoints),
        ("shadow (undocumented)", unknown if inv.shadow is None else inv.shadow),
        ("zombie (deprecated)", unknown if inv.zombie is None else inv.zombie),
        ("non-prod hosts", inv.nonprod_hosts),
        ("probed, not existing", inv.not_existing),
    ]
    hosts = _table(["host", "requests"],
                   [[_code(h), _num(n)] for h, n in inv.hosts.most_common(50)],
                   numeric={1}, empty="no hosts")
    sensitive = _table(["sensitive data type", "endpoints"],
                       [[escape(t), _num(n)] for t, n in inv.sensitive.most_common()],
                       numeric={1}, empty="no sensitive data seen")
    auth = _table(["auth scheme", "endpoints"],
                  [[_code(a), _num(n)] for a, n in inv.auth.most_common()],
                  numeric={1}, empty="no authentication seen")
    return (
        '<section id="inventory"><h2>Inventory summary</h2>' + _cards(cards)
        + f'<div class="row"><div class="panel">{hosts}</div><div class="panel">{sensitive}'
        f'</div><div class="panel">{auth}</div></div>'
        '<p class="note">Shadow and zombie counts need an API specification at analysis '
        "time (<code>replay --spec</code>); \u201cnot existing\u201d routes only ever answered "
        "404/405/400 (typical of probing).</p></section>"
    )


def _findings_summary(data: ReportData) -> str:
    severity_rows = [[_badge(level), _num(n)] for level, n in data.by_severity.items()]
    severity_chart = bar_chart(
        [(level, n) for level, n in data.by_severity.items()],
        title="Findings by severity",
        colours=[SEVERITY_COLOURS[level] for level in data.by_severity],
    )
    levels = list(reversed(SEVERITIES))
    owasp_rows = []
    for category, counts in data.by_owasp.items():
        owasp_rows.append([escape(category), escape(OWASP_2023.get(category, "")),
                           *(_num(counts.get(level, 0)) for level in levels),
                           _num(sum(counts.values()))])
    owasp_table = _table(["category", "name", *levels, "total"], owasp_rows,
                         numeric=set(range(2, 3 + len(levels))), empty="no findings")
    owasp_chart = hbar_chart(
        [(f"{c} {OWASP_2023.get(c, '')}", sum(n.values())) for c, n in data.by_owasp.items()],
        title="Findings by OWASP API Security Top 10 (2023) category",
        colours=["#4c78a8"], label_width=380,
    )
    severity_table = _table(["severity", "findings"], severity_rows, numeric={1})
    return (
        '<section id="findings"><h2>Findings by severity and OWASP category</h2>'
        f'<div class="row"><div class="panel">{severity_table}'
        f'</div><div class="panel">{severity_chart}</div></div>'
        f'<div class="panel">{owasp_table}</div><div class="panel">{owasp_chart}</div></section>'
    )


def _risk(data: ReportData) -> str:
    ranked = [e for e in data.endpoints if e.score > 0]
    chart = hbar_chart([(_endpoint_label(e), e.score) for e in ranked[:MAX_RISK_BARS]],
                       title=f"Endpoints by risk score (top {MAX_RISK_BARS})",
                       colours=[_risk_colour(e) for e in ranked[:MAX_RISK_BARS]] or None)
    rows = []
    for e in ranked[:MAX_RISK_ROWS]:
        open_counts = ", ".join(f"{n} {level}" for level in reversed(SEVERITIES)
                                if (n := e.findings.get(level, 0)))
        rows.append([_num(e.score), escape(e.method), _code(f"{e.host}{e.path}", PATH_CHARS),
                     escape(e.owner or "\u2013"), escape(open_counts or "\u2013"),
                     escape(", ".join(e.sensitive) or "\u2013"),
                     escape(", ".join(e.auth) or "\u2013"), _num(e.count)])
    table = _table(["score", "method", "endpoint", "owner", "open findings", "sensitive data",
                    "auth", "requests"], rows, numeric={0, 7}, empty="no endpoint at risk")
    weights = ", ".join(f"{level} {SEVERITY_WEIGHT[level]}" for level in reversed(SEVERITIES))
    more = len(ranked) - MAX_RISK_ROWS
    return (
        '<section id="risk"><h2>Endpoints by risk</h2>'
        f'<div class="panel">{chart}</div>'
        f'<p class="note">Risk score = sum over the endpoint\u2019s open findings of a severity '
        f"weight ({escape(weights)}) + {SENSITIVE_WEIGHT} per distinct sensitive data type it "
        f"carries + {UNAUTHENTICATED_SENSITIVE_WEIGHT} when it carries sensitive data and "
        "answered requests without authentication.</p>"
        f'<div class="panel">{table}</div>'
        + (f'<p class="note">{more} more endpoint(s) with a score not listed.</p>'
           if more > 0 else "")
        + "</section>"
    )


def _over_time(data: ReportData) -> str:
    traffic = _time_chart(data.traffic, "Traffic over time (transactions by status class)",
                          STATUS_COLOURS)
    findings = _time_chart(data.findings_over_time,
                           "Findings over time (by first sighting and severity)",
                           SEVERITY_COLOURS)
    return (
        '<section id="over-time"><h2>Traffic and findings over time</h2>'
        f'<div class="panel">{traffic}</div><div class="panel">{findings}</div>'
        '<p class="note">Packet time, UTC. A finding is counted in the bar of its first '
        "sighting.</p></section>"
    )


def _details(data: ReportData) -> str:
    shown = data.findings[:MAX_DETAILED_FINDINGS]
    radios = ['<input type="radio" name="sev" id="show-all" checked>'
              '<label for="show-all">all</label>']
    for level in reversed(SEVERITIES):
        if data.by_severity.get(level):
            radios.append(f'<input type="radio" name="sev" id="show-{level}">'
                          f'<label for="show-{level}">{level} ({data.by_severity[level]})</label>')
    more = len(data.findings) - len(shown)
    return (
        '<section id="details"><h2>Finding details</h2>'
        + (f'<p class="note">The {more} least severe finding(s) are not detailed here: see '
           "<code>mirrorscope findings</code>.</p>" if more > 0 else "")
        + ('<p class="note">No findings.</p>' if not shown else "")
        + f'<span class="filter">Show: {"".join(radios)}</span>'
        + '<div class="finding-list">' + "".join(_finding(f) for f in shown) + "</div></section>"
    )


def _finding(view: FindingView) -> str:
    f = view.data
    severity = f["severity"] if f["severity"] in SEVERITIES else "info"
    endpoint = f.get("endpoint")
    where = ("host-wide (no single endpoint)" if endpoint is None else
             f"{endpoint['method']} {endpoint['host']}{endpoint['path_template']}")
    facts = [
        ("OWASP", f"{escape(f['owasp'])} {escape(view.owasp_name)}"),
        ("Endpoint", _code(where, 2000)),
        ("Client", _code(f.get("client_ip") or "\u2013")),
        ("Principal", _code(f.get("principal") or "\u2013")
         + ' <span class="note">(keyed hash)</span>' if f.get("principal") else "\u2013"),
        ("Seen", f"{_num(f['count'])} time(s), {escape(_utc(f['first_seen']))} \u2013 "
                 f"{escape(_utc(f['last_seen']))}"),
        ("Confidence", escape(f"{float(f.get('confidence') or 0):.2f}")),
        ("Status", _status(f)),
        ("Owner", "\u2013" if view.owner is None else escape(view.owner) + (
            f" ({escape(view.owner_contact)})" if view.owner_contact else "")),
        ("SLA", _sla(view)),
    ]
    dl = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    steps = "".join(f"<li>{escape(step)}</li>" for step in view.remediation_steps)
    return (
        f'<article class="finding sev-{severity}" id="finding-{int(f["id"])}">'
        f"<h3>{_badge(severity)} #{int(f['id'])} {escape(view.title)} "
        f"<code>{escape(f['kind'])}</code></h3>"
        f'<dl class="facts">{dl}</dl>'
        f"<h4>Why</h4>{_explanation(f.get('explanation') or [])}"
        f"<h4>Evidence (redacted)</h4><pre>{_evidence(f.get('evidence'))}</pre>"
        f"<h4>Remediation</h4>"
        + (f"<ol>{steps}</ol>" if steps else '<p class="note">No remediation recorded.</p>')
        + f"<h4>Transactions</h4>{_transactions(f.get('transactions') or [])}</article>"
    )


# ----------------------------------------------------------------------------- pieces


def _status(f: dict[str, Any]) -> str:
    text = escape(f.get("status") or "open")
    if f.get("status_actor"):
        text += f" by {escape(f['status_actor'])}"
    if f.get("status_at"):
        text += f" at {escape(_utc(f['status_at']))}"
    if f.get("status_reason"):
        text += f": \u201c{escape(f['status_reason'], 500)}\u201d"
    if f.get("regression_of") is not None:
        text += f" \u2014 regression of #{int(f['regression_of'])}"
    if f.get("verified"):
        text += " \u2014 verified by an active test"
    return text


def _sla(view: FindingView) -> str:
    sla = view.sla
    if sla is None:
        return "\u2013"
    age = f"age {sla.age_days:.1f} d"
    if sla.due_at is None:
        return escape(f"{age}; no SLA for this severity")
    if sla.days_left is None:
        return escape(f"{age}; closed")
    if sla.breached:
        return (f'<span class="breached">BREACHED {escape(f"{-sla.days_left:.1f}")} d ago</span>'
                f" (due {escape(_utc(sla.due_at))}; {escape(age)})")
    return escape(f"due {_utc(sla.due_at)} ({sla.days_left:.1f} d left; {age})")


def _explanation(items: list[Any]) -> str:
    rows = [item for item in items if isinstance(item, dict)]
    if not rows:
        return '<p class="note">No explanation recorded.</p>'
    known = [k for k in ("feature", "value", "baseline", "threshold")
             if any(k in row for row in rows)]
    keys = known + sorted({k for row in rows for k in row} - set(known))
    return _table([escape(k) for k in keys],
                  [[escape(_plain(row.get(k, "")), 300) for k in keys] for row in rows],
                  escaped_headers=True)


def _evidence(evidence: Any) -> str:
    text = json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=True, default=str)
    if len(text) > MAX_EVIDENCE_CHARS:
        cut = len(text) - MAX_EVIDENCE_CHARS
        text = text[:MAX_EVIDENCE_CHARS] + f"\n\u2026 [{cut} more characters not shown]"
    return escape(text)


def _transactions(refs: list[Any]) -> str:
    if not refs:
        return '<p class="note">No transaction sample.</p>'
    shown = []
    for ref in refs[:MAX_TRANSACTION_REFS]:
        if isinstance(ref, list | tuple) and len(ref) == 2:
            shown.append(f"<code>{escape(ref[0], 80)}#{escape(ref[1], 12)}</code>")
        else:
            shown.append(f"<code>{escape(ref, 80)}</code>")
    extra = len(refs) - len(shown)
    return (f"<p>{', '.join(shown)}" + (f" and {extra} more" if extra > 0 else "")
            + ' <span class="note">(connection id # request number; see '
            "<code>mirrorscope transactions</code>)</span></p>")


def _time_chart(chart: TimeChart | None, title: str, colours: dict[str, str]) -> str:
    if chart is None:
        return time_series(0, 1, [], title=title)
    series = [Series(name, values, colours.get(name, "#9d755d"))
              for name, values in chart.series.items()]
    return time_series(chart.start, chart.width, series, title=title)


def _cards(cards: list[tuple[str, object]]) -> str:
    inner = "".join(
        f'<div class="card"><b>{_num(v) if isinstance(v, int) else escape(v)}</b>'
        f"<span>{escape(label)}</span></div>" for label, v in cards)
    return f'<div class="cards">{inner}</div>'


def _table(headers: list[str], rows: list[list[str]], *, numeric: set[int] | None = None,
           empty: str = "nothing", escaped_headers: bool = False) -> str:
    """A table from already escaped cells (headers are escaped here unless told)."""
    numeric = numeric or set()
    head = "".join(
        f'<th{" class=num" if i in numeric else ""}>{h if escaped_headers else escape(h)}</th>'
        for i, h in enumerate(headers))
    if not rows:
        return (f"<table><tr>{head}</tr><tr><td colspan=\"{len(headers)}\" class=\"note\">"
                f"{escape(empty)}</td></tr></table>")
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                         for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _badge(severity: str) -> str:
    level = severity if severity in SEVERITIES else "info"
    return f'<span class="badge sev-{level}">{escape(level)}</span>'


def _code(value: object, limit: int = PATH_CHARS) -> str:
    return f"<code>{escape(value, limit)}</code>"


def _num(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(f"{value:,.2f}")


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=True,
                                                           default=str)


def _endpoint_label(e: EndpointView) -> str:
    return f"{e.method} {e.host}{e.path}"


def _risk_colour(e: EndpointView) -> str:
    for level in reversed(SEVERITIES):
        if e.findings.get(level):
            return SEVERITY_COLOURS[level]
    return "#9d755d"  # sensitive data only


def _utc(ts: float | None) -> str:
    if ts is None:
        return "\u2013"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts)))
    except (OverflowError, OSError, ValueError):
        return f"{ts!r}"
