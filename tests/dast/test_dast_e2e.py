"""DAST end to end: record the vulnerable app, replay the capture, attack the app for real.

The app (tests/dast/vulnerable_app.py) runs on 127.0.0.1 with a safe twin for each weakness;
its traffic is recorded byte for byte into a pcap (scapy), replayed into a temporary
database, then `mirrorscope test` attacks it with the recorded inventory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from dast_support import CountingServer, bearer, json_bytes, record_pcap
from vulnerable_app import VulnerableApp

from mirrorscope.cli import main
from mirrorscope.keys import load_or_create_key
from mirrorscope.pipeline import ReplayOptions, replay
from mirrorscope.store.dast_repo import DastStore

pytestmark = pytest.mark.network


def _calls(app: VulnerableApp, decoy: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """What the recording holds: each principal using its own objects, on both twins."""
    alice, bob, root = (bearer(app.tokens[name]) for name in ("alice", "bob", "root"))
    calls = []
    for who, ids in ((alice, (1, 2)), (bob, (3, 4))):
        for note in ids:
            for flavour in ("vuln", "safe"):
                calls.append(("GET", f"/api/{flavour}/notes/{note}", who, b""))
    for who, title in ((alice, "groceries"), (alice, "holiday"), (bob, "travel"),
                       (bob, "budget")):
        for flavour in ("vuln", "safe"):
            calls.append(("GET", f"/api/{flavour}/search?q={title}", who, b""))
    calls += [("GET", "/api/vuln/search?q=groceries", alice, b"")] * 2  # the busiest GET
    calls += [("GET", "/api/vuln/blind-search?q=groceries", alice, b""),
              ("GET", "/api/vuln/blind-search?q=travel", bob, b"")]
    for flavour in ("vuln", "safe"):
        calls.append(("GET", f"/api/{flavour}/admin/users", root, b""))
        calls.append(("POST", f"/api/{flavour}/profile", alice,
                      json_bytes({"display_name": "Al"})))
    calls += [
        ("GET", "/api/vuln/go", alice, b""),  # answers a redirect to the decoy
        ("GET", f"{decoy}/api/vuln/notes/2", alice, b""),  # absolute-form naming the decoy
        ("GET", "/api/vuln/notes/1", {**alice, "Host": "other.example"}, b""),  # another host
    ]
    return calls


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app and decoy running, the recording replayed into a database, credentials written."""
    tmp = tmp_path_factory.mktemp("dast")
    # The same key file the suite's autouse fixture points MIRRORSCOPE_HMAC_KEY_FILE at.
    key_file = tmp_path_factory.getbasetemp() / "hmac" / "hmac.key"
    key_file.parent.mkdir(exist_ok=True, mode=0o700)
    key = load_or_create_key(key_file)
    decoy = CountingServer()
    app = VulnerableApp(redirect_to=decoy.origin + "/stolen").start()
    try:
        pcap = tmp / "recorded.pcap"
        statuses = record_pcap(pcap, app.port, _calls(app, decoy.origin))
        assert statuses.count(200) == len(statuses) - 1 and 302 in statuses
        db = f"sqlite:///{tmp / 'dast.db'}"
        stats = replay([pcap], ReplayOptions(db_url=db, hmac_key=key))
        assert not stats.errors and stats.transactions == len(statuses)
        credentials = tmp / "creds.yaml"
        credentials.write_text(yaml.safe_dump({"principals": {
            name: {"headers": bearer(token), "role": app.roles[name]}
            for name, token in app.tokens.items()}}))
        app.methods.clear()
        app.paths.clear()
        app.hosts.clear()
        decoy.requests = 0
        yield {"app": app, "decoy": decoy, "db": db, "credentials": credentials, "tmp": tmp,
               "env": {"MIRRORSCOPE_HMAC_KEY_FILE": str(key_file)}}
    finally:
        app.stop()
        decoy.stop()


def _test(lab: dict[str, Any], *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["test", "--target", lab["app"].origin,
                                       "--i-own-this-target", "--db", lab["db"],
                                       "--credentials", str(lab["credentials"]),
                                       "--rate", "1000/s", "--format", "json", *extra],
                                env=lab["env"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def session(lab: dict[str, Any]) -> dict[str, Any]:
    """One read-only DAST session over the lab (every check, GET only), with what the app saw."""
    app = lab["app"]
    app.methods.clear()
    app.paths.clear()
    app.hosts.clear()
    report = _test(lab)
    report["app_saw"] = {"methods": dict(app.methods), "paths": list(app.paths),
                         "hosts": set(app.hosts), "decoy": lab["decoy"].requests}
    return report


def _by_endpoint(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in report["findings"]:
        found.setdefault(row["endpoint"]["path_template"], set()).add(row["kind"])
    return found


def test_refuses_without_the_opt_in_flag(lab: dict[str, Any]) -> None:
    """No --i-own-this-target: exit 2, a clear message, and not one request sent."""
    before = sum(lab["app"].methods.values())
    result = CliRunner().invoke(main, ["test", "--target", lab["app"].origin, "--db", lab["db"]],
                                env=lab["env"])
    assert result.exit_code == 2
    assert "--i-own-this-target" in result.output
    assert sum(lab["app"].methods.values()) == before


def test_finds_bola_sqli_and_missing_auth_on_the_vulnerable_endpoints(
        session: dict[str, Any]) -> None:
    """Each deliberate weakness is found where it is."""
    found = _by_endpoint(session)
    assert "dast.bola" in found["/api/vuln/notes/{note_id}"]
    assert "dast.sqli" in found["/api/vuln/search"]
    assert "dast.sqli" in found["/api/vuln/blind-search"]
    assert "dast.missing_auth" in found["/api/vuln/admin/users"]
    assert "dast.bfla" in found["/api/vuln/admin/users"]
    assert "dast.rate_limit" in found["/api/vuln/search"]


def test_blind_injection_is_proven_by_boolean_conditions(session: dict[str, Any],
                                                         lab: dict[str, Any]) -> None:
    """Without an error message to see, the true/false pair is the proof."""
    from mirrorscope.store.analysis_repo import AnalysisStore

    with AnalysisStore(lab["db"]) as store:
        rows = store.findings(kind="dast.sqli")
    blind = [r for r in rows if r["endpoint"]["path_template"] == "/api/vuln/blind-search"]
    assert blind[0]["evidence"]["details"]["technique"] == "boolean-based"
    loud = [r for r in rows if r["endpoint"]["path_template"] == "/api/vuln/search"]
    assert loud[0]["evidence"]["details"]["technique"] == "error-based"
    assert "sqlite3.OperationalError" in loud[0]["evidence"]["response"]["body"]


def test_nothing_on_the_safe_twins(session: dict[str, Any]) -> None:
    """The twins that check ownership, bind parameters and require an admin token are clean."""
    found = _by_endpoint(session)
    assert not [path for path in found if path.startswith("/api/safe/")], found
    assert session["tested"] >= 8


def test_only_the_target_was_contacted_and_only_with_get(session: dict[str, Any],
                                                         lab: dict[str, Any]) -> None:
    """Redirects and absolute-form recordings never lead anywhere else; no write was sent."""
    saw = session["app_saw"]
    assert saw["decoy"] == 0
    assert saw["hosts"] == {f"127.0.0.1:{lab['app'].port}"}
    assert set(saw["methods"]) == {"GET"}
    assert saw["methods"]["GET"] == session["requests"] == session["methods"]["GET"]
    assert not any("other.example" in path or path.startswith("http") for path in saw["paths"])
    assert any(path.startswith("/api/vuln/notes/") for path in saw["paths"])


def test_findings_are_verified_with_proof_and_no_credential_in_the_clear(
        session: dict[str, Any], lab: dict[str, Any]) -> None:
    """verified=True, the request and response as evidence, the test tokens nowhere stored."""
    from mirrorscope.store.analysis_repo import AnalysisStore

    ids = [row["id"] for row in session["findings"]]
    with DastStore(lab["db"]) as store:
        flags = store.verified()
    assert ids and all(flags[i] for i in ids)
    assert not [i for i, flag in flags.items() if flag and i not in ids]
    with AnalysisStore(lab["db"]) as store:
        rows = {row["id"]: row for row in store.findings(kind="dast")}
    bola = next(rows[i] for i in ids if rows[i]["kind"] == "dast.bola")
    evidence = bola["evidence"]
    assert evidence["request"]["url"].endswith("/api/vuln/notes/1")
    assert evidence["response"]["status"] == 200
    assert '"owner": "alice"' in evidence["response"]["body"]
    assert evidence["details"] == {"owner": "alice", "accessed_by": "bob", "similarity": 1.0}
    assert bola["owasp"] == "API1:2023" and bola["remediation"]
    stored = b"".join(p.read_bytes() for p in lab["tmp"].glob("dast.db*"))
    for token in lab["app"].tokens.values():
        assert token.encode() not in stored


def test_budget_stops_the_session(lab: dict[str, Any]) -> None:
    """--max-requests is a hard cap; the session says it stopped early."""
    before = sum(lab["app"].methods.values())
    report = _test(lab, "--max-requests", "5", "--checks", "auth,injection")
    assert report["truncated"] and report["requests"] == 5
    assert sum(lab["app"].methods.values()) - before == 5


def test_allow_write_adds_mass_assignment(lab: dict[str, Any]) -> None:
    """With --allow-write the recorded POSTs are replayed with privileged fields."""
    report = _test(lab, "--allow-write", "--checks", "mass-assignment")
    found = _by_endpoint(report)
    assert found.get("/api/vuln/profile") == {"dast.mass_assignment"}
    assert "/api/safe/profile" not in found
    assert lab["app"].methods["POST"] >= 2


def test_without_credentials_the_recording_is_the_baseline(lab: dict[str, Any]) -> None:
    """No credentials file: an anonymous 2xx equal to the recorded (authenticated) answer."""
    result = CliRunner().invoke(main, ["test", "--target", lab["app"].origin,
                                       "--i-own-this-target", "--db", lab["db"],
                                       "--rate", "1000/s", "--format", "json"], env=lab["env"])
    assert result.exit_code == 0, result.output
    found = _by_endpoint(json.loads(result.stdout))
    assert "dast.missing_auth" in found["/api/vuln/admin/users"]
    assert not [path for path in found if path.startswith("/api/safe/")], found
    assert "dast.bola" not in set().union(*found.values())  # needs two principals


def test_declared_ownership_drives_bola_when_attribution_is_impossible(
        lab: dict[str, Any], tmp_path: Path) -> None:
    """Another installation key: recorded requests cannot be attributed, 'owns:' still works."""
    env = {"MIRRORSCOPE_HMAC_KEY_FILE": str(tmp_path / "other.key")}
    tokens = lab["app"].tokens
    creds = {"alice": {"headers": bearer(tokens["alice"]),
                       "owns": ["/api/vuln/notes/2", "/api/safe/notes/2"]},
             "bob": {"headers": bearer(tokens["bob"])}}
    path = tmp_path / "creds.yaml"

    def bola_paths(principals: dict[str, Any]) -> set[str]:
        path.write_text(yaml.safe_dump({"principals": principals}))
        result = CliRunner().invoke(main, ["test", "--target", lab["app"].origin,
                                           "--i-own-this-target", "--db", lab["db"],
                                           "--credentials", str(path), "--checks", "bola",
                                           "--rate", "1000/s", "--format", "json"], env=env)
        assert result.exit_code == 0, result.output
        return {row["endpoint"]["path_template"] for row in json.loads(result.stdout)["findings"]}

    assert bola_paths(creds) == {"/api/vuln/notes/{note_id}"}
    creds["alice"].pop("owns")
    assert bola_paths(creds) == set()


@pytest.mark.parametrize("args, message", [
    (["--target", "http://127.0.0.1:1/api"], "origin"),
    (["--target", "ftp://127.0.0.1:1"], "http://"),
    (["--rate", "fast"], "--rate"),
    (["--rate", "0/s"], "--rate"),
    (["--checks", "bola,xss"], "xss"),
    (["--host", "nope.example"], "recorded hosts"),
    (["--target", "http://127.0.0.1:1"], "several hosts"),
    (["--credentials", "/nonexistent/creds.yaml"], "cannot read"),
    (["--db", "sqlite:////nonexistent/dir/x.db"], ""),
])
def test_bad_input_is_a_one_line_error(lab: dict[str, Any], args: list[str],
                                       message: str) -> None:
    """Exit 2 with a reason, and the app hears nothing."""
    before = sum(lab["app"].methods.values())
    base = {"--target": lab["app"].origin, "--db": lab["db"]}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["test", "--i-own-this-target"] + [x for pair in base.items() for x in pair]
    result = CliRunner().invoke(main, argv, env=lab["env"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert sum(lab["app"].methods.values()) == before


def test_findings_table_marks_verified_findings(session: dict[str, Any],
                                                lab: dict[str, Any]) -> None:
    """`mirrorscope findings` tells a proven finding from an observed one."""
    from click.testing import CliRunner

    from mirrorscope.cli import main

    result = CliRunner().invoke(main, ["findings", "--db", lab["db"], "--kind", "dast.bola"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert "(verified)" in result.output
    observed = CliRunner().invoke(main, ["findings", "--db", lab["db"], "--kind", "attack"],
                                  catch_exceptions=False)
    assert "(verified)" not in observed.output
