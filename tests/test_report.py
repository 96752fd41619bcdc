"""`mirrorscope report`: charts, escaping of hostile wire text, filters, SQL bucketing, CLI."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from pg_databases import postgres_database

from mirrorscope.cli import main
from mirrorscope.model import (
    ConnectionOpened,
    EndpointKey,
    EndpointSummary,
    Finding,
    HttpBody,
    HttpRequest,
    HttpResponse,
    HttpTransaction,
)
from mirrorscope.ownership import OwnershipRules
from mirrorscope.report import ReportError, _safe_url, gather, remediation_steps
from mirrorscope.report_charts import Series, bar_chart, empty_chart, hbar_chart, time_series
from mirrorscope.report_html import render
from mirrorscope.store import AnalysisStore, Store
from mirrorscope.store.report_repo import ReportRepo

T0 = 1_700_000_000.0  # packet time of the synthetic traffic (a round minute)
NOW = T0 + 3600.0
HMAC_KEY = b"report-tests-hmac-key-0123456789"
SCRIPT = "<script>alert(1)</script>"
ONERROR = '"onerror=alert(2)'
HOSTILE_PATH = f"/pay/{SCRIPT}/x{ONERROR}"
HOSTILE_HOST = 'evil"><img src=x onerror=alert(3)>'
PAY = EndpointKey("api.example.com", "POST", "/pay/charge")
USERS = EndpointKey("api.example.com", "GET", "/users/{id}")
HOSTILE = EndpointKey(HOSTILE_HOST, "GET", HOSTILE_PATH)
OWNERS = {"owners": [
    {"team": "payments", "contact": "pay@example.com", "match": {"path_prefix": "/pay"}},
    {"team": "identity", "match": {"path_prefix": "/users"}},
]}
# Markup the report itself uses; anything else in the parsed page came from the data.
REPORT_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "main", "footer",
               "h1", "h2", "h3", "h4", "p", "code", "nav", "a", "div", "b", "span", "section",
               "table", "tr", "th", "td", "svg", "text", "rect", "line", "polyline", "input",
               "label", "article", "dl", "dt", "dd", "pre", "ol", "li"}


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database on each available backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'report.db'}"
        Store(url).close()
        yield url
        return
    admin_url = os.environ.get("MIRRORSCOPE_TEST_PG_URL")
    if not admin_url:
        pytest.skip("MIRRORSCOPE_TEST_PG_URL is not set")
    for url in postgres_database(admin_url, "ms_report"):
        Store(url).close()
        yield url


def _txn(conn_id: str, depth: int, ts: float, target: str, status: int | None,
         method: str = "GET", headers: tuple[tuple[str, str], ...] = ()) -> HttpTransaction:
    body = HttpBody(length=0, wire_length=0, head=b"", sha256=None)
    request = HttpRequest(method, target, "HTTP/1.1", (("Host", "api.example.com"), *headers),
                          body, ts, ts + 0.001)
    response = None if status is None else HttpResponse(status, "X", "HTTP/1.1", (), body,
                                                        ts + 0.002, ts + 0.003)
    return HttpTransaction(conn_id, depth, ("10.0.0.1", 40000), ("10.0.0.2", 80), request,
                           response)


def _finding(kind: str, severity: str, endpoint: EndpointKey | None, *, owasp: str = "API8:2023",
             ts: float = T0 + 10, evidence: dict | None = None, remediation: str = "Fix it.",
             principal: str | None = "p0123", explanation: tuple = (),
             ts_last: float | None = None) -> Finding:
    return Finding(kind=kind, severity=severity, owasp=owasp, endpoint=endpoint,
                   client_ip="10.0.0.1", ts_first=ts, ts_last=ts + 1 if ts_last is None
                   else ts_last, count=2,
                   principal=principal, evidence=evidence or {"k": "v"},
                   explanation=explanation, remediation=remediation,
                   transactions=(("C1", 1),))


def _summary(key: EndpointKey, count: int, *, sensitive: tuple[str, ...] = (),
             auth: tuple[str, ...] = ("bearer-jwt",), last_seen: float = T0 + 60
             ) -> EndpointSummary:
    doc = {"host": key.host, "method": key.method, "path_template": key.path_template,
           "count": count, "first_seen": T0, "last_seen": last_seen, "kind": "api",
           "auth": list(auth), "exists": True,
           "sensitive": [{"type": t, "location": "response.body", "field": t, "count": 1}
                         for t in sensitive]}
    return EndpointSummary(key, count, T0, last_seen, doc)


def _populate(url: str, transactions: list[HttpTransaction], summaries: list[EndpointSummary],
              findings: list[Finding]) -> list[int]:
    """One complete run holding these transactions, endpoints and findings; finding ids."""
    with Store(url, hmac_key=HMAC_KEY) as store:
        run = store.begin_run(source="t.pcap", sha256="a" * 64, size=1, started_at=NOW - 60)
        opened = [ConnectionOpened(c, T0, ("10.0.0.1", 40000), ("10.0.0.2", 80), False)
                  for c in sorted({t.conn_id for t in transactions})]
        store.write_batch(run, [*opened, *transactions])
        store.finish_run(run, status="complete", stats={}, finished_at=NOW - 30)
    with AnalysisStore(url) as analysis:
        analysis.replace_endpoints(run, summaries)
        return analysis.upsert_findings(run, [(f, T0) for f in findings])


class _Page(HTMLParser):
    """Tags, attributes and text of a page, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [(tag, name, value) for name, value in attrs]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _assert_inert(page: str) -> _Page:
    """The page has only the report's own markup and nothing that could run or fetch."""
    parsed = _parse(page)
    assert parsed.tags <= REPORT_TAGS, parsed.tags - REPORT_TAGS
    for tag, name, value in parsed.attributes:
        assert not name.startswith("on"), (tag, name, value)
        assert name not in ("src", "srcset", "style", "action", "formaction"), (tag, name)
        if name == "href":
            assert value is not None and value.startswith("#"), value
        if name == "xmlns":
            assert value == "http://www.w3.org/2000/svg"
    return parsed


# --------------------------------------------------------------------------- charts


def _rects(svg: str) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in re.findall(r'(\w+)="([-\d.]+)"', attrs)}
            for attrs in re.findall(r"<rect ([^>]*)>", svg)]


def test_chart_labels_are_escaped() -> None:
    charts = [
        bar_chart([(SCRIPT, 3), (ONERROR, 1)], title=SCRIPT),
        hbar_chart([(SCRIPT, 3), (ONERROR, 1)], title=ONERROR),
        time_series(T0, 60, [Series(SCRIPT, [1, 2], "#123456"),
                             Series(ONERROR, [3, 0], "#654321")], title=SCRIPT),
        empty_chart(SCRIPT, message=ONERROR),
    ]
    for svg in charts:
        assert "<script" not in svg and '"onerror' not in svg
        parsed = _assert_inert(svg)
        text = "".join(parsed.text)
        assert SCRIPT in text or ONERROR in text  # shown, as text


def test_chart_refuses_a_colour_that_is_not_hex() -> None:
    with pytest.raises(ValueError):
        bar_chart([("a", 1)], title="t", colours=['red"/><script>x</script>'])
    with pytest.raises(ValueError):
        time_series(T0, 1, [Series("a", [1], "red")], title="t")


def test_empty_charts_say_so() -> None:
    assert "no data" in bar_chart([], title="t")
    assert "no data" in bar_chart([("a", 0), ("b", 0)], title="t")
    assert "no data" in hbar_chart([], title="t")
    assert "no data" in time_series(T0, 1, [Series("a", [0, 0], "#000000")], title="t")
    assert "no data" in time_series(T0, 1, [], title="t")
    assert _rects(bar_chart([], title="t")) == [_rects(bar_chart([], title="t"))[0]]  # frame


def test_bar_heights_are_proportional_to_values() -> None:
    bars = [r for r in _rects(bar_chart([("a", 1), ("b", 3)], title="t")) if "height" in r]
    assert len(bars) == 2
    assert bars[1]["height"] == pytest.approx(3 * bars[0]["height"], rel=0.01)
    rows = _rects(hbar_chart([("a", 4), ("b", 2)], title="t"))
    assert rows[1]["width"] == pytest.approx(rows[0]["width"] / 2, rel=0.01)


def test_time_series_stacks_series_per_bucket() -> None:
    svg = time_series(T0, 60, [Series("ok", [1, 0, 2], "#00aa00"),
                               Series("err", [2, 0, 0], "#aa0000")], title="t")
    bars = [r for r in _rects(svg) if r.get("height", 0) > 20 or r.get("width", 0) > 10]
    first = [r for r in bars if r["x"] < bars[0]["x"] + 1]
    assert len(first) == 2  # two segments in the first bucket, none in the empty one
    low, high = sorted(first, key=lambda r: -r["y"])
    assert high["height"] == pytest.approx(2 * low["height"], rel=0.01)
    assert high["y"] + high["height"] == pytest.approx(low["y"], abs=0.2)  # stacked
    assert "UTC" in svg and "22:14" in svg  # T0 is 2023-11-14 22:13:20 UTC; bucket labels
    line = time_series(T0, 60, [Series("ok", [1, 0, 2], "#00aa00")], title="t", style="line")
    assert "<polyline" in line


def test_remediation_becomes_steps() -> None:
    text = ("Use parameterised queries for id in GET /a.b; validate it at the boundary. "
            "Check the logs.")
    assert remediation_steps(text) == ["Use parameterised queries for id in GET /a.b",
                                       "Validate it at the boundary.", "Check the logs."]
    assert remediation_steps("") == []


def test_database_password_is_hidden() -> None:
    assert "hunter2" not in _safe_url("postgresql+psycopg://user:hunter2@db/x")
    assert "not a url" not in _safe_url("not a url")


# ------------------------------------------------------------------------ the store


def test_traffic_is_bucketed_in_sql(db_url: str) -> None:
    txns = [_txn("C1", 1, T0 + 0.5, "/a?x=1", 200), _txn("C1", 2, T0 + 1.5, "/a?x=2", 200),
            _txn("C1", 3, T0 + 1.6, "/b", 404), _txn("C1", 4, T0 + 3.2, "/b", None),
            _txn("C1", 5, T0 - 5, "/early", 200)]
    _populate(db_url, txns, [], [])
    with ReportRepo(db_url) as repo:
        assert repo.traffic_span() == {"count": 5, "first": T0 - 5, "last": T0 + 3.2}
        assert repo.traffic_span(since=T0)["count"] == 4
        rows = repo.traffic_buckets(start=T0, width=1.0)
        got = {(r["bucket"], r["status_class"]): r["count"] for r in rows}
        assert got == {(0, 2): 1, (1, 2): 1, (1, 4): 1, (3, 0): 1}
        by_path = repo.traffic_buckets(start=T0, width=10.0, by_endpoint=True)
        paths = {(r["path"], r["status_class"]): r["count"] for r in by_path}
        assert paths == {("/a", 2): 2, ("/b", 4): 1, ("/b", 0): 1}
        assert [r["source"] for r in repo.runs()] == ["t.pcap"]


def test_empty_database_renders_a_report(db_url: str) -> None:
    data = gather(db_url, now=NOW)
    assert data.findings == [] and data.endpoints == [] and data.traffic is None
    page = render(data)
    parsed = _assert_inert(page)
    text = " ".join(parsed.text)
    assert "No findings." in text and "no data" in text
    assert "0 capture run(s)" in text


def test_missing_database_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError):
        gather(f"sqlite:///{tmp_path / 'absent.db'}")


def test_hostile_text_appears_as_text(db_url: str) -> None:
    evidence = {"payload": SCRIPT, "header": ONERROR, "nested": {"</pre><script>": [SCRIPT]}}
    findings = [
        _finding("attack.xss", "medium", HOSTILE, evidence=evidence,
                 remediation=f"Encode {SCRIPT} in {HOSTILE_PATH}.", principal=ONERROR,
                 explanation=({"feature": SCRIPT, "value": ONERROR, "baseline": "\u202e!"},)),
        _finding("api.shadow_endpoint", "low", HOSTILE, owasp="API9:2023"),
    ]
    txns = [_txn("C1", 1, T0 + 1, HOSTILE_PATH, 200,
                 headers=(("Authorization", "Bearer sk_live_SECRETTOKEN1234567890"),))]
    ids = _populate(db_url, txns, [_summary(HOSTILE, 1, sensitive=(SCRIPT,))], findings)
    with AnalysisStore(db_url) as analysis:
        analysis.set_status([ids[0]], "acknowledged", actor=SCRIPT, reason=ONERROR, now=NOW)
    page = render(gather(db_url, now=NOW))
    assert "<script" not in page.lower().replace("&lt;script", "")
    assert "onerror=" not in page.replace("&quot;onerror=", "").replace("onerror=alert(3)&gt;", "")
    parsed = _assert_inert(page)
    text = "".join(parsed.text)
    for payload in (SCRIPT, ONERROR, HOSTILE_PATH, HOSTILE_HOST):
        assert payload in text, payload
    assert "\u202e" not in page and "\\u202e" in page  # direction override made visible
    assert "SECRETTOKEN" not in page
    assert "Shadow (undocumented) endpoint" in text


def test_summary_counts_risk_and_status(db_url: str) -> None:
    findings = [
        _finding("attack.sqli", "high", PAY),
        _finding("misconfig.version_banner", "low", PAY),
        _finding("attack.bola_enumeration", "high", USERS, owasp="API1:2023"),
        _finding("attack.scraping", "critical", USERS, owasp="API4:2023"),
        _finding("misconfig.missing_security_headers", "low", None),
    ]
    summaries = [_summary(PAY, 5, sensitive=("credit_card", "email"), auth=("none",)),
                 _summary(USERS, 7)]
    ids = _populate(db_url, [], summaries, findings)
    with AnalysisStore(db_url) as analysis:
        analysis.set_status([ids[3]], "resolved", actor="alice", reason="fixed", now=NOW)
    data = gather(db_url, now=NOW)
    assert data.by_severity == {"critical": 1, "high": 2, "medium": 0, "low": 2, "info": 0}
    assert data.by_owasp["API8:2023"] == {"info": 0, "low": 2, "medium": 0, "high": 1,
                                          "critical": 0}
    assert list(data.by_owasp) == ["API1:2023", "API4:2023", "API8:2023"]
    scores = {e.path: e.score for e in data.endpoints}
    # PAY: high 5 + low 1 + 2 sensitive types x 2 + 3 (sensitive without auth) = 13.
    # USERS: high 5; the critical one is resolved and no longer counts.
    assert scores == {"/pay/charge": 13, "/users/{id}": 5}
    assert [e.path for e in data.endpoints] == ["/pay/charge", "/users/{id}"]
    assert data.inventory.sensitive == {"credit_card": 1, "email": 1}
    assert data.inventory.shadow is None  # no spec, no verdict
    page = render(data)
    assert "resolved by alice" in page and "fixed" in page
    assert page.count('class="finding sev-') == 5


def test_owner_filter_keeps_the_teams_endpoints_findings_and_traffic(db_url: str) -> None:
    txns = [_txn("C1", 1, T0 + 1, "/pay/charge?amount=3", 200, method="POST"),
            _txn("C1", 2, T0 + 2, "/pay/charge", 500, method="POST"),
            _txn("C1", 3, T0 + 3, "/users/7", 200), _txn("C1", 4, T0 + 4, "/users/8", 200),
            _txn("C1", 5, T0 + 5, "/users/9", 200)]
    findings = [_finding("attack.sqli", "high", PAY), _finding("attack.xss", "medium", USERS),
                _finding("misconfig.missing_security_headers", "low", None)]
    _populate(db_url, txns, [_summary(PAY, 2), _summary(USERS, 3)], findings)
    rules = OwnershipRules.from_document(OWNERS)
    data = gather(db_url, rules=rules, owner="payments", now=NOW)
    assert [e.path for e in data.endpoints] == ["/pay/charge"]
    assert [f.data["kind"] for f in data.findings] == ["attack.sqli"]
    assert data.findings[0].owner == "payments"
    assert data.findings[0].owner_contact == "pay@example.com"
    assert data.traffic_total == 2
    assert data.traffic is not None and data.traffic.series.keys() == {"2xx", "5xx"}
    assert any("without an endpoint" in note for note in data.notes)
    page = render(data)
    assert "/users/" not in page and "team payments" in page
    everyone = gather(db_url, rules=rules, now=NOW)
    assert everyone.traffic_total == 5 and len(everyone.findings) == 3
    nobody = gather(db_url, rules=rules, owner="nobody", now=NOW)
    assert nobody.findings == [] and any("'nobody'" in note for note in nobody.notes)
    with pytest.raises(ReportError):
        gather(db_url, owner="payments", now=NOW)


def test_since_leaves_out_older_activity(db_url: str) -> None:
    old = EndpointKey("api.example.com", "GET", "/old")
    findings = [_finding("attack.sqli", "high", PAY, ts=NOW - 600),
                _finding("attack.xss", "medium", old, ts=NOW - 7200),
                # first seen long ago, seen again lately: in, but it must not widen the charts
                _finding("attack.ssrf", "high", PAY, ts=NOW - 8000, ts_last=NOW - 200)]
    txns = [_txn("C1", 1, NOW - 500, "/pay/charge", 200), _txn("C1", 2, NOW - 7000, "/old", 200)]
    _populate(db_url, txns, [_summary(PAY, 1, last_seen=NOW - 500),
                             _summary(old, 1, last_seen=NOW - 7000)], findings)
    data = gather(db_url, since_seconds=3600, now=NOW)
    assert sorted(f.data["kind"] for f in data.findings) == ["attack.sqli", "attack.ssrf"]
    assert [e.path for e in data.endpoints] == ["/pay/charge"]
    assert data.traffic_total == 1
    assert sum(sum(v) for v in data.traffic.series.values()) == 1
    assert data.traffic.start >= NOW - 3600 - data.traffic.width
    assert sum(sum(v) for v in data.findings_over_time.series.values()) == 2


# ---------------------------------------------------------------------------- the CLI


def test_cli_writes_the_report_atomically(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url).close()
    _populate(url, [_txn("C1", 1, T0, "/pay/charge", 200)], [_summary(PAY, 1)],
              [_finding("attack.sqli", "high", PAY)])
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("old")
    owners = tmp_path / "owners.yaml"
    owners.write_text("owners:\n  - team: payments\n    match: {path_prefix: /pay}\n")
    result = CliRunner().invoke(main, ["report", "--db", url, "--owners", str(owners),
                                       "--owner", "payments", "--since", "100000000d",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "attack.sqli" in page
    assert os.listdir(out.parent) == ["report.html"]  # no temporary file left behind


@pytest.mark.parametrize("args, message", [
    (["--owner", "payments"], "--owners"),
    (["--since", "soon"], "not a duration"),
    (["--since", "-5"], "not a duration"),
    (["--owners", "MISSING"], "owners"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url).close()
    args = [str(tmp_path / "nope.yaml") if a == "MISSING" else a for a in args]
    result = CliRunner().invoke(main, ["report", "--db", url, *args,
                                       "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_cli_unusable_database_or_output_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--db", f"sqlite:///{tmp_path / 'no.db'}",
                                       "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "error" in result.output
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url).close()
    result = CliRunner().invoke(main, ["report", "--db", url,
                                       "-o", str(tmp_path / "no-such-dir" / "r.html")])
    assert result.exit_code == 2 and "cannot write" in result.output
