"""Automated responses: rules validation, recurrence, planning, writers, and end to end over a
replayed attack capture (one webhook delivery and one blocklist entry per attacker, not one
per occurrence; re-runs and re-replays add nothing; --dry-run fires nothing)."""

from __future__ import annotations

import http.server
import ipaddress
import json
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mirrorscope.cli import main
from mirrorscope.response_actions import (
    atomic_write,
    blocklist_entries,
    render_json,
    render_nftables,
    render_nginx,
)
from mirrorscope.responses import (
    DEDUPLICATED,
    FAILED,
    FIRED,
    NEVER_BLOCK,
    RATE_LIMITED,
    WOULD_FIRE,
    RulesError,
    evaluate,
    parse_duration,
    parse_rules,
    peak_occurrences,
    plan,
    run_responses,
)
from mirrorscope.store.response_repo import ResponseLedger, fire_key

REPO = Path(__file__).resolve().parents[1]
ATTACK = REPO / "pcaps" / "attack" / "attack.pcap"
ATTACKER = "127.0.0.8"  # the injection attacker of pcaps/attack/make_attack.py
INJECTION_KINDS = ["attack.sqli", "attack.*_injection", "attack.path_traversal", "attack.ssrf",
                   "attack.xss"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------- rules validation


def _rule(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": "r1",
        "match": {"kind": "attack.*", "min_severity": "high"},
        "recurrence": {"count": 3, "window": "5m"},
        "actions": [{"type": "nginx_deny", "file": "deny.conf"}],
    }
    rule.update(overrides)
    return rule


def test_valid_rules_parse_with_defaults() -> None:
    ruleset = parse_rules({"rules": [_rule()]})
    rule = ruleset.rules[0]
    assert rule.match.kinds == ("attack.*",)
    assert rule.recurrence.window == 300.0 and rule.recurrence.target == "client_ip"
    assert rule.max_per_run >= 1 and rule.max_per_hour >= rule.max_per_run
    assert ruleset.protected("127.0.0.5") and ruleset.protected("::1")
    assert not ruleset.protected("192.0.2.1")


def test_example_rules_file_is_valid() -> None:
    ruleset = parse_rules(yaml.safe_load((REPO / "contrib" / "responses.example.yaml")
                                         .read_text()))
    assert {a.type for r in ruleset.rules for a in r.actions} == {
        "webhook", "nginx_deny", "nftables_set", "json_blocklist", "ticket"}


@pytest.mark.parametrize(("document", "needles"), [
    ({"rules": [_rule()], "extra": 1}, ["unknown field", "extra"]),
    ({"rules": [_rule(colour="red")]}, ["rule 'r1'", "colour"]),
    ({"rules": [_rule(match={"kind": "x", "min_severity": "severe"})]},
     ["rule 'r1'", "min_severity", "severe"]),
    ({"rules": [_rule(recurrence={"count": 3, "window": "5 fortnights"})]},
     ["rule 'r1'", "recurrence.window"]),
    ({"rules": [_rule(recurrence={"count": 0})]}, ["rule 'r1'", "recurrence.count"]),
    ({"rules": [_rule(match=None)]}, ["rule 'r1'", "`match` is required"]),
    ({"rules": [_rule(actions=[{"type": "webhook"}])]}, ["rule 'r1'", "`url` is required"]),
    ({"rules": [_rule(actions=[{"type": "email", "to": "x"}])]}, ["rule 'r1'", "type", "email"]),
    ({"rules": [_rule(actions=[{"type": "ticket", "dir": "t", "url": "x"}])]},
     ["rule 'r1'", "unknown field", "url"]),
    ({"rules": [_rule(actions=[{"type": "nftables_set", "file": "f", "set": "bad name"}])]},
     ["rule 'r1'", ".set"]),
    ({"rules": [_rule(recurrence={"target": "principal"})]},
     ["rule 'r1'", "client_ip"]),
    ({"rules": [_rule(), _rule()]}, ["duplicate rule name", "r1"]),
    ({"rules": [_rule(name="bad name!")]}, ["rule #1", "name"]),
    ({"rules": [_rule()], "never_block": ["10.0.0.0/33"]}, ["never_block", "10.0.0.0/33"]),
    ({"rules": [_rule(rate_limit={"max_per_run": -1})]}, ["rule 'r1'", "max_per_run"]),
    ({"rules": []}, ["non-empty"]),
])
def test_bad_rules_name_the_rule_and_field(document: object, needles: list[str]) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(document, source="rules.yaml")
    for needle in needles:
        assert needle in str(caught.value)


def test_durations() -> None:
    assert parse_duration("90s", "w") == 90
    assert parse_duration("5m", "w") == 300
    assert parse_duration("2h", "w") == 7200
    assert parse_duration("1d", "w") == 86400
    assert parse_duration(42, "w") == 42
    for bad in ("0s", "-5m", "5x", "", True, None):
        with pytest.raises(RulesError):
            parse_duration(bad, "w")


def test_cli_bad_rules_exit_2_with_message(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [_rule(match={"kind": "x",
                                                             "min_severity": "urgent"})]}))
    code, _, err = _run("respond", "--rules", str(rules), "--db",
                        f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2
    assert "r1" in err and "min_severity" in err and "Traceback" not in err
    rules.write_text("rules: [unclosed")
    code, _, err = _run("respond", "--rules", str(rules))
    assert code == 2 and "not valid YAML" in err


# ----------------------------------------------------------------------- recurrence


def test_peak_occurrences_counts_within_the_window() -> None:
    # Three single hits 10 s apart and one 100 s later: 3 within 30 s, 4 within 120 s.
    spans = [(0, 0, 1), (10, 10, 1), (20, 20, 1), (120, 120, 1)]
    assert peak_occurrences(spans, 30) == 3
    assert peak_occurrences(spans, 120) == 4
    assert peak_occurrences(spans, 5) == 1
    # 100 occurrences spread evenly over 1000 s: any 100 s window holds 10.
    assert peak_occurrences([(0, 1000, 100)], 100) == pytest.approx(10)
    # A burst of 5 inside one second counts fully.
    assert peak_occurrences([(50, 50.5, 5), (0, 0, 1)], 10) == 5


def _finding(id: int, *, kind: str = "attack.sqli", severity: str = "high",
             client: str | None = "192.0.2.7", principal: str | None = None,
             first: float = 1000.0, last: float | None = None, count: int = 1,
             status: str = "open", path: str = "/api/items") -> dict[str, Any]:
    return {"id": id, "kind": kind, "owasp": "API8:2023", "severity": severity,
            "confidence": 0.9, "endpoint": {"host": "api.test", "method": "GET",
                                             "path_template": path},
            "client_ip": client, "principal": principal, "first_seen": first,
            "last_seen": first if last is None else last, "count": count,
            "transactions": [], "evidence": {}, "explanation": [], "remediation": "fix it",
            "status": status}


def test_evaluate_thresholds_status_and_targets() -> None:
    ruleset = parse_rules({"rules": [_rule()]})
    findings = [_finding(1, first=1000), _finding(2, first=1010),
                _finding(3, first=1020, client="192.0.2.9"),  # another client
                _finding(4, first=1030, severity="low")]  # below min severity
    assert evaluate(ruleset, findings, now=2000) == []  # 2 for 192.0.2.7 < 3
    findings.append(_finding(5, first=1040, count=2, last=1045))
    triggers = evaluate(ruleset, findings, now=2000)
    assert [(t.target, t.finding_ids) for t in triggers] == [("192.0.2.7", [1, 2, 5])]
    assert triggers[0].occurrences == 4
    # Triaged away: a false positive or an accepted risk never counts.
    findings[4]["status"] = "false_positive"
    assert evaluate(ruleset, findings, now=2000) == []
    findings[4]["status"] = "risk_accepted"
    assert evaluate(ruleset, findings, now=2000) == []
    # Too far apart for the window.
    spread = [_finding(1, first=0), _finding(2, first=400), _finding(3, first=800)]
    assert evaluate(ruleset, spread, now=2000) == []
    # max_age drops findings last seen too long ago.
    aged = parse_rules({"rules": [_rule()], "max_age": "1h"})
    burst = [_finding(i, first=1000 + i) for i in range(1, 4)]
    assert len(evaluate(aged, burst, now=1000 + 3000)) == 1
    assert evaluate(aged, burst, now=1000 + 7200) == []


def test_principal_target_and_path_glob() -> None:
    ruleset = parse_rules({"rules": [_rule(
        match={"kind": "attack.*", "path": "/api/*"},
        recurrence={"count": 2, "window": "1m", "target": "principal"},
        actions=[{"type": "json_blocklist", "file": "p.json"}])]})
    findings = [_finding(1, principal="abc"), _finding(2, principal="abc", first=1001),
                _finding(3, principal="abc", first=1002, path="/static/x"),
                _finding(4, principal=None, first=1003)]
    triggers = evaluate(ruleset, findings, now=2000)
    assert [(t.target, t.finding_ids) for t in triggers] == [("abc", [1, 2])]


# ------------------------------------------------------------------------- planning


def _ledger_row(rule: str, action: str, target: str, outcome: str, fired: float,
                ids: list[int]) -> dict[str, Any]:
    return {"fire_key": fire_key(rule, action, target), "rule": rule, "action": action,
            "target": target, "outcome": outcome, "first_fired": fired, "last_fired": fired,
            "fired_count": 1, "finding_ids": ids, "payload": {}}


def test_plan_dedup_retry_never_block_and_rate_limit() -> None:
    ruleset = parse_rules({
        "never_block": ["192.0.2.0/30"],
        "rules": [_rule(recurrence={"count": 1},
                        actions=[{"type": "webhook", "url": "http://127.0.0.1:1/h"},
                                 {"type": "nginx_deny", "file": "d.conf"}],
                        rate_limit={"max_per_run": 2, "max_per_hour": 3})]})
    clients = ["192.0.2.1", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
    findings = [_finding(i + 1, client=c) for i, c in enumerate(clients)]
    triggers = evaluate(ruleset, findings, now=5000)
    assert len(triggers) == 5
    ledger = {row["fire_key"]: row for row in [
        _ledger_row("r1", "webhook", "198.51.100.1", FIRED, 4000, [2]),
        _ledger_row("r1", "nginx_deny", "198.51.100.1", FIRED, 4000, [2]),
        _ledger_row("r1", "webhook", "198.51.100.2", FAILED, 4000, [3]),
        _ledger_row("r1", "nginx_deny", "198.51.100.2", FIRED, 4000, [3]),
    ]}
    planned = {(p.action.name, p.trigger.target): p.status
               for p in plan(triggers, ledger, ruleset, now=5000)}
    assert planned[("webhook", "198.51.100.1")] == DEDUPLICATED
    assert planned[("nginx_deny", "198.51.100.1")] == DEDUPLICATED
    assert planned[("webhook", "198.51.100.2")] == WOULD_FIRE  # a failed one is retried
    assert planned[("nginx_deny", "198.51.100.2")] == DEDUPLICATED
    assert planned[("nginx_deny", "192.0.2.1")] == NEVER_BLOCK
    # Budget, in target order (same severity and size): the hour already holds .1 and .2
    # (max 3), the run allows 2 targets.  192.0.2.1 (its webhook) takes the third hourly
    # slot and the first run slot; .2's retry is already in the hour and takes the second
    # run slot; .3 and .4 are held back, both of their actions.
    assert planned[("webhook", "192.0.2.1")] == WOULD_FIRE
    held = sorted(key for key, status in planned.items() if status == RATE_LIMITED)
    assert held == [("nginx_deny", "198.51.100.3"), ("nginx_deny", "198.51.100.4"),
                    ("webhook", "198.51.100.3"), ("webhook", "198.51.100.4")]
    # With a roomy per-run limit the hourly one (3 targets) is what holds .3 and .4 back.
    roomy = parse_rules({"never_block": ["192.0.2.0/30"], "rules": [_rule(
        recurrence={"count": 1}, actions=[{"type": "webhook", "url": "http://127.0.0.1:1/h"}],
        rate_limit={"max_per_run": 50, "max_per_hour": 3})]})
    planned_roomy = plan(evaluate(roomy, findings, now=5000), ledger, roomy, now=5000)
    reasons = {p.trigger.target: p.why for p in planned_roomy if p.status == RATE_LIMITED}
    assert sorted(reasons) == ["198.51.100.3", "198.51.100.4"]
    assert all("max_per_hour 3" in why for why in reasons.values())
    # An hour later the old firings no longer count.
    later = plan(evaluate(roomy, findings, now=9000), ledger, roomy, now=9000)
    assert [p.trigger.target for p in later if p.status == RATE_LIMITED] == ["198.51.100.4"]


# -------------------------------------------------------------------------- writers


def test_blocklist_renderers_one_entry_per_target(tmp_path: Path) -> None:
    ruleset = parse_rules({"rules": [_rule()], "never_block": ["10.0.0.0/8"]})
    rows = [
        {"rule": "a", "action": "n", "target": "192.0.2.1", "outcome": FIRED,
         "first_fired": 1.0, "finding_ids": [1], "payload": {"first_seen": 10, "last_seen": 20,
                                                              "expires": None, "reason": "x"}},
        {"rule": "b", "action": "n", "target": "192.0.2.1", "outcome": FIRED,
         "first_fired": 2.0, "finding_ids": [2], "payload": {"first_seen": 5, "last_seen": 30,
                                                              "expires": 900, "reason": "y"}},
        {"rule": "a", "action": "n", "target": "2001:db8::1", "outcome": FIRED,
         "first_fired": 3.0, "finding_ids": [3], "payload": {"expires": 700, "reason": "z"}},
        {"rule": "a", "action": "n", "target": "192.0.2.2", "outcome": FIRED,
         "first_fired": 3.0, "finding_ids": [4], "payload": {"expires": 400}},  # expired
        {"rule": "a", "action": "n", "target": "192.0.2.3", "outcome": FAILED,
         "first_fired": 3.0, "finding_ids": [5], "payload": {}},
        {"rule": "a", "action": "n", "target": "10.1.2.3", "outcome": FIRED,
         "first_fired": 3.0, "finding_ids": [6], "payload": {}},  # now never_block
        {"rule": "a", "action": "n", "target": "not-an-ip;", "outcome": FIRED,
         "first_fired": 3.0, "finding_ids": [7], "payload": {}},
    ]
    entries = blocklist_entries(rows, now=500, ruleset=ruleset, addresses_only=True)
    assert [e.target for e in entries] == ["192.0.2.1", "2001:db8::1"]
    first = entries[0]
    assert first.rules == ["a", "b"] and first.findings == {1, 2}
    assert first.expires is None and (first.first_seen, first.last_seen) == (5, 30)

    nginx = render_nginx(entries)
    assert [line for line in nginx.splitlines() if not line.startswith("#")] == [
        "deny 192.0.2.1;  # rules=a,b expires=never",
        "deny 2001:db8::1;  # rules=a expires=1970-01-01T00:11:40Z"]
    doc = json.loads(render_json(entries))
    assert [d["ip"] for d in doc] == ["192.0.2.1", "2001:db8::1"]
    assert doc[0]["findings"] == [1, 2] and doc[0]["rule"] == "a" and doc[0]["expires"] is None
    assert set(doc[0]) == {"ip", "reason", "rule", "rules", "first_seen", "last_seen",
                           "expires", "findings"}
    action = ruleset.rules[0].actions[0]
    nft = render_nftables(entries, action, now=500)
    assert "add element inet mirrorscope blocklist { 192.0.2.1 }" in nft
    assert "add element inet mirrorscope blocklist6 { 2001:db8::1 timeout 200s }" in nft
    assert nft.count("flush set inet mirrorscope") == 2


def _tool_entries() -> list:
    ruleset = parse_rules({"rules": [_rule()], "never_block": []})
    rows = [{"rule": "a", "action": "n", "target": target, "outcome": FIRED, "first_fired": 1.0,
             "finding_ids": [1], "payload": {"expires": expires, "reason": "r"}}
            for target, expires in (("192.0.2.1", None), ("192.0.2.9", 900.0),
                                    ("2001:db8::1", 700.0))]
    return blocklist_entries(rows, now=500, ruleset=ruleset, addresses_only=True)


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed")
def test_nftables_file_passes_nft_check(tmp_path: Path) -> None:
    action = parse_rules({"rules": [_rule(actions=[
        {"type": "nftables_set", "file": "f.nft", "table": "ms", "set": "bad_guys"}])]}) \
        .rules[0].actions[0]
    for entries in (_tool_entries(), []):
        path = tmp_path / "block.nft"
        path.write_text(render_nftables(entries, action, now=500))
        result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_file_passes_nginx_t(tmp_path: Path) -> None:
    deny = tmp_path / "deny.conf"
    deny.write_text(render_nginx(_tool_entries()))
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
                    "events {}\nhttp { access_log off; server { listen 127.0.0.1:1; "
                    f"location / {{ include {deny}; return 204; }} }} }}\n")
    result = subprocess.run(["nginx", "-t", "-q", "-p", str(tmp_path), "-e",
                             str(tmp_path / "logs" / "error.log"), "-c", str(conf)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_atomic_write_replaces_whole_file_and_skips_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.txt"
    assert atomic_write(path, "one\n", 0o644)
    assert not atomic_write(path, "one\n", 0o644)  # unchanged: left alone
    assert atomic_write(path, "two\n", 0o644)
    assert path.read_text() == "two\n" and (path.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]  # no temp left


# ---------------------------------------------------------------- end to end (pipeline)


class _Hook:
    """A webhook receiver on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook.bodies.append(json.loads(body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    receiver = _Hook()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """attack.pcap replayed once through the real pipeline (copied per test)."""
    base = tmp_path_factory.mktemp("replayed")
    key_dir = tmp_path_factory.getbasetemp() / "hmac"
    key_dir.mkdir(exist_ok=True, mode=0o700)
    with pytest.MonkeyPatch.context() as patch:  # the suite's throwaway key, as in conftest
        patch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(key_dir / "hmac.key"))
        code, _, err = _run("replay", str(ATTACK), "--db", f"sqlite:///{base / 'ms.db'}",
                            "--no-progress")
    assert code == 0, err
    return base / "ms.db"


def _copy_db(replayed: Path, tmp_path: Path) -> tuple[Path, str]:
    target = tmp_path / "ms.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{replayed}{suffix}")
        if source.exists():
            shutil.copy(source, Path(f"{target}{suffix}"))
    return target, f"sqlite:///{target}"


def _write_rules(tmp_path: Path, url: str, **extra: Any) -> Path:
    document = {
        "never_block": ["127.0.0.1/32"],  # the capture is loopback: only spare the server
        "rules": [{
            "name": "injection-attackers",
            "match": {"kind": INJECTION_KINDS, "min_severity": "medium"},
            "recurrence": {"count": 5, "window": "5m"},
            "actions": [
                {"type": "webhook", "url": url, "timeout": 2, "retries": 1},
                {"type": "nginx_deny", "file": "deny.conf"},
                {"type": "nftables_set", "file": "block.nft", "ttl": "1h"},
                {"type": "json_blocklist", "file": "block.json"},
                {"type": "ticket", "dir": "tickets"},
            ],
        }],
        **extra,
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _firings(db: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(
            "SELECT rule, action, target, fired_count FROM response_firings WHERE outcome = ?",
            (FIRED,)).fetchall())


def _blocked(out: Path) -> dict[str, list[str]]:
    """Addresses in each blocklist format, parsed independently of the writers."""
    nginx = [line.split()[1].rstrip(";") for line in (out / "deny.conf").read_text().splitlines()
             if line.startswith("deny ")]
    nft = []
    for line in (out / "block.nft").read_text().splitlines():
        if line.startswith("add element"):
            inside = line[line.index("{") + 1:line.rindex("}")]
            nft += [item.split()[0] for item in inside.split(",")]
    json_ips = [entry["ip"] for entry in json.loads((out / "block.json").read_text())]
    return {"nginx": nginx, "nft": nft, "json": json_ips}


def _attacker_occurrences(db: Path) -> int:
    """How many times the attacker triggered a matching finding (read straight from SQL)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, count FROM findings WHERE client_ip = ?",
                            (ATTACKER,)).fetchall()
    import fnmatch

    return sum(count for kind, count in rows
               if any(fnmatch.fnmatchcase(kind, glob) for glob in INJECTION_KINDS))


def test_recurring_attack_fires_once(replayed: Path, tmp_path: Path, hook: _Hook) -> None:
    db, url = _copy_db(replayed, tmp_path)
    assert _attacker_occurrences(db) >= 5  # the attack recurs: several findings, counts > 1
    out = tmp_path / "out"
    rules = _write_rules(tmp_path, hook.url)

    code, stdout, err = _run("respond", "--rules", str(rules), "--db", url,
                             "--out-dir", str(out))
    assert code == 0, err
    assert "fired" in stdout
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["target"] == ATTACKER and body["rule"] == "injection-attackers"
    assert body["occurrences"] >= 5 and len(body["finding_ids"]) >= 2
    assert _blocked(out) == {"nginx": [ATTACKER], "nft": [ATTACKER], "json": [ATTACKER]}
    tickets = list((out / "tickets").iterdir())
    assert len(tickets) == 1
    ticket = json.loads(tickets[0].read_text())
    assert ticket["severity"] == "critical" and ticket["target"]["value"] == ATTACKER
    assert set(ticket) >= {"title", "owasp", "description", "evidence", "remediation", "links"}
    assert sorted(ticket["links"]["finding_ids"]) == sorted(body["finding_ids"])
    first_ledger = _firings(db)
    assert [(a, t, n) for _, a, t, n in first_ledger] == [
        ("json_blocklist", ATTACKER, 1), ("nftables_set", ATTACKER, 1),
        ("nginx_deny", ATTACKER, 1), ("ticket", ATTACKER, 1), ("webhook", ATTACKER, 1)]
    files = {p: p.read_bytes() for p in (out / "deny.conf", out / "block.json")}

    # Run again: everything deduplicated, nothing sent, the files unchanged.
    code, stdout, _ = _run("respond", "--rules", str(rules), "--db", url, "--out-dir", str(out))
    assert code == 0 and "5 deduplicated" in stdout
    assert len(hook.bodies) == 1 and _firings(db) == first_ledger
    assert {p: p.read_bytes() for p in files} == files

    # Replay the same capture again (forced: its rows are rewritten), then respond again.
    code, _, err = _run("replay", str(ATTACK), "--db", url, "--no-progress", "--force")
    assert code == 0, err
    assert _run("respond", "--rules", str(rules), "--db", url, "--out-dir", str(out))[0] == 0
    assert len(hook.bodies) == 1 and _firings(db) == first_ledger
    assert _blocked(out) == {"nginx": [ATTACKER], "nft": [ATTACKER], "json": [ATTACKER]}
    assert len(list((out / "tickets").iterdir())) == 1


def test_dry_run_fires_nothing(replayed: Path, tmp_path: Path, hook: _Hook) -> None:
    db, url = _copy_db(replayed, tmp_path)
    out = tmp_path / "out"
    rules = _write_rules(tmp_path, hook.url)
    code, stdout, _ = _run("respond", "--rules", str(rules), "--db", url, "--out-dir", str(out),
                           "--dry-run")
    assert code == 0
    assert "would_fire" in stdout and ATTACKER in stdout
    assert hook.bodies == []
    assert not out.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM response_firings").fetchone()[0] == 0


def test_failing_webhook_is_retried_next_run(replayed: Path, tmp_path: Path) -> None:
    db, url = _copy_db(replayed, tmp_path)
    broken = _Hook(status=500)
    try:
        rules = _write_rules(tmp_path, broken.url)
        report = run_responses(url, rules, out_dir=tmp_path / "out")
        assert [p.status for p in report.planned if p.action.type == "webhook"] == [FAILED]
        assert len(broken.bodies) == 2  # first try + 1 retry, then given up (never raised)
        assert report.errors
        broken.status = 200
        report = run_responses(url, rules, out_dir=tmp_path / "out")
        statuses = {p.action.type: p.status for p in report.planned}
        assert statuses["webhook"] == FIRED and statuses["nginx_deny"] == DEDUPLICATED
        assert len(broken.bodies) == 3
        webhook_row = [row for row in _firings(db) if row[1] == "webhook"]
        assert webhook_row == [("injection-attackers", "webhook", ATTACKER, 2)]
    finally:
        broken.close()


def test_never_block_keeps_loopback_out_of_blocklists(replayed: Path, tmp_path: Path,
                                                       hook: _Hook) -> None:
    _, url = _copy_db(replayed, tmp_path)
    rules = _write_rules(tmp_path, hook.url)
    document = yaml.safe_load(rules.read_text())
    del document["never_block"]  # the default: loopback
    rules.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    code, stdout, _ = _run("respond", "--rules", str(rules), "--db", url, "--out-dir", str(out))
    assert code == 0
    assert "never_block" in stdout and ATTACKER in stdout
    assert len(hook.bodies) == 1  # notifying is fine; blocking is not
    assert _blocked(out) == {"nginx": [], "nft": [], "json": []}
    for text in _blocked(out).values():
        assert all(not ipaddress.ip_address(ip).is_loopback for ip in text)


def test_rate_limited_targets_fire_later(replayed: Path, tmp_path: Path, hook: _Hook) -> None:
    _, url = _copy_db(replayed, tmp_path)
    document = {"never_block": [], "rules": [{
        "name": "any-attacker",
        "match": {"kind": "attack.*", "min_severity": "medium"},
        "recurrence": {"count": 1, "window": "1h"},
        "rate_limit": {"max_per_run": 1},
        "actions": [{"type": "webhook", "url": hook.url, "retries": 0}],
    }]}
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document))
    attackers = {"127.0.0.8", "127.0.0.9", "127.0.0.10", "127.0.0.11"}  # make_attack.py's
    seen: list[str] = []
    for run in range(len(attackers)):
        report = run_responses(url, rules, now=1e9 + run)
        assert sum(1 for p in report.planned if p.status == FIRED) == 1
        assert sum(1 for p in report.planned if p.status == RATE_LIMITED) == \
            len(attackers) - run - 1
        seen = [body["target"] for body in hook.bodies]
    assert sorted(seen) == sorted(attackers) and len(seen) == len(attackers)
    report = run_responses(url, rules, now=1e9 + 10)
    assert {p.status for p in report.planned} == {DEDUPLICATED}
    with ResponseLedger(url) as ledger:
        assert {row["outcome"] for row in ledger.firings()} == {FIRED}
