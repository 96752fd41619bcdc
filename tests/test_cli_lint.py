"""`mirrorscope lint`: exit codes for CI, bad input, SARIF 2.1.0 against the official schema,
and the traffic annotation on a database filled from pcaps/demo.pcap."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import dpkt
import jsonschema
import pytest
from click.testing import CliRunner

from mirrorscope.analysis.speclint_traffic import BUSY_MIN_RATE, BUSY_MIN_REQUESTS
from mirrorscope.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SPECS = DATA / "specs"
VULNERABLE = SPECS / "vulnerable.yaml"
CLEAN = SPECS / "clean.yaml"
DEMO = REPO / "pcaps" / "demo.pcap"
DEMO_EXPECTED = REPO / "pcaps" / "demo.pcap.expected.json"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["lint", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _planted() -> list[tuple[str, str]]:
    pattern = re.compile(r"#\s*planted:\s*(MSL\d{3})\s+(\S+)")
    return [m.groups() for m in pattern.finditer(VULNERABLE.read_text(encoding="utf-8"))]


# ------------------------------------------------------------------ exit codes


def test_exit_codes_follow_fail_on(tmp_path: Path) -> None:
    """1 when a result reaches --fail-on (default error), 0 otherwise or with 'none'."""
    assert _run(str(VULNERABLE))[0] == 1
    assert _run(str(VULNERABLE), "--fail-on", "none")[0] == 0
    assert _run(str(CLEAN), "--fail-on", "note")[0] == 0
    # Only a note (MSL012): below the default, at 'note'.
    only_note = tmp_path / "note.json"
    only_note.write_text(json.dumps({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "security": [{"b": []}],
        "components": {"securitySchemes": {"b": {"type": "http", "scheme": "bearer"}}},
        "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"},
                                               "429": {"description": "slow"}}}}}}))
    assert _run(str(only_note))[0] == 0
    assert _run(str(only_note), "--fail-on", "warning")[0] == 0
    code, out, _ = _run(str(only_note), "--fail-on", "note")
    assert code == 1 and "MSL012" in out


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("openapi: [unclosed", "cannot parse"),
    ('{"swagger": "2.0", "paths": {}}', "Swagger 2.0"),
    ('{"openapi": "2.5.0", "paths": {}}', "unsupported OpenAPI version"),
    ('{"title": "not a spec"}', "not an OpenAPI document"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: object, message: str) -> None:
    """Unreadable or unsupported specs: exit 2, a one-line error naming the file."""
    spec = tmp_path / "spec.yaml"
    if isinstance(content, str):
        spec.write_text(content)
    elif isinstance(content, bytes):
        spec.write_bytes(content)
    code, out, err = _run(str(spec))
    assert code == 2 and out == ""
    assert message in err and "spec.yaml" in err and "Traceback" not in err


def test_bad_database_is_exit_2(tmp_path: Path) -> None:
    """--db naming no database fails cleanly, without creating one."""
    missing = tmp_path / "nope" / "x.db"
    code, _, err = _run(str(CLEAN), "--db", f"sqlite:///{missing}")
    assert code == 2 and "does not exist" in err and not missing.exists()


# ------------------------------------------------------------------ output formats


def test_table_and_json_list_every_planted_flaw() -> None:
    """The table names each rule; JSON carries rule, pointer and line for each result."""
    code, out, _ = _run(str(VULNERABLE))
    assert code == 1
    for rule, _ in _planted():
        assert rule in out
    code, out, _ = _run(str(VULNERABLE), "--format", "json")
    data = json.loads(out)
    assert data["traffic_checked"] is False
    assert sorted((r["rule_id"], r["pointer"]) for r in data["results"]) == sorted(_planted())
    assert all(isinstance(r["line"], int) and r["line"] > 0 for r in data["results"])


def test_sarif_is_valid_against_the_official_schema(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SARIF 2.1.0 output validates against the OASIS schema and carries what CI needs."""
    monkeypatch.chdir(REPO)
    target = tmp_path / "lint.sarif"
    code, out, _ = _run("tests/data/specs/vulnerable.yaml", "--format", "sarif",
                        "--output", str(target))
    assert code == 1 and out == ""
    log = json.loads(target.read_text(encoding="utf-8"))
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(log)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    for rule in rules:
        assert rule["id"].startswith("MSL") and rule["name"]
        assert rule["helpUri"].startswith("https://")
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert "Remediation:" in rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    lines = VULNERABLE.read_text(encoding="utf-8").splitlines()
    seen = []
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "tests/data/specs/vulnerable.yaml"
        pointer = result["properties"]["jsonPointer"]
        assert location["logicalLocations"][0]["fullyQualifiedName"] == pointer
        assert result["properties"]["observedInTraffic"] is False
        # The region's line holds this result's planted comment.
        line = lines[physical["region"]["startLine"] - 1]
        assert f"planted: {result['ruleId']} {pointer}" in line
        seen.append((result["ruleId"], pointer))
    assert sorted(seen) == sorted(_planted())


def test_sarif_schema_rejects_a_broken_log() -> None:
    """The vendored schema really constrains: a result without a message is invalid."""
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    broken = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                            "results": [{"ruleId": "MSL001"}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


# ------------------------------------------------------------------ traffic


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """pcaps/demo.pcap replayed once into a throwaway database."""
    db = tmp_path_factory.mktemp("lint") / "demo.db"
    key = tmp_path_factory.getbasetemp() / "hmac"
    key.mkdir(exist_ok=True, mode=0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(key / "hmac.key"))
        result = CliRunner().invoke(main, ["replay", str(DEMO), "--db", f"sqlite:///{db}",
                                           "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return f"sqlite:///{db}"


def _demo_counts() -> collections.Counter:
    """(method, route, status) counts from the lab client's own log (the pcap's sidecar)."""
    counts: collections.Counter = collections.Counter()
    for t in json.loads(DEMO_EXPECTED.read_text())["transactions"]:
        path = t["uri"].split("?")[0]
        route = re.sub(r"^/api/v1/orders/[^/]+$", "/api/v1/orders/{order_id}", path)
        route = re.sub(r"^/api/v1/users/\d+$", "/api/v1/users/{user_id}", route)
        counts[(t["method"], route, t["status"])] += 1
    return counts


def _capture_span() -> float:
    with DEMO.open("rb") as handle:
        stamps = [ts for ts, _ in dpkt.pcap.Reader(handle)]
    return max(stamps) - min(stamps)


def test_db_annotates_results_the_demo_traffic_confirms(demo_db: str) -> None:
    """Expectations come from the lab's log and code (pcaps/lab.py), not from the lint."""
    code, out, err = _run(str(SPECS / "demo-subset.yaml"), "--db", demo_db, "--format", "json")
    assert code == 1, err
    data = json.loads(out)
    assert data["traffic_checked"] is True
    results = {(r["rule_id"], r["operations"][0]): r for r in data["results"]}
    counts = _demo_counts()

    # lab.py: login() never sends credentials, and the session cookie only arrives with the
    # 200 answer, so every successful login was an unauthenticated 2xx.
    login = results[("MSL001", "POST /api/v1/login")]
    assert login["observed_in_traffic"] and login["confirmed_by_traffic"]
    ok_logins = counts[("POST", "/api/v1/login", 200)]
    assert ok_logins > 0
    assert f"{ok_logins} request(s) without credentials were answered 2xx" in \
        login["traffic_evidence"][0]

    # lab.py answers billing with a test card number (4111 1111 1111 1111) and an IBAN.
    billing_ok = counts[("GET", "/api/v1/account/billing", 200)]
    exposed = [r for r in data["results"] if r["rule_id"] == "MSL011"]
    assert {r["field"] for r in exposed} == {"card_number", "iban"}
    for r in exposed:
        assert r["operations"] == ["GET /api/v1/account/billing"]
        assert r["confirmed_by_traffic"]
        assert f"'{r['field']}' ({billing_ok} time(s))" in r["traffic_evidence"][0]

    # The deprecated DELETE is still called: as often as the log says.
    deletes = counts[("DELETE", "/api/v1/orders/{order_id}", 204)]
    zombie = results[("MSL014", "DELETE /api/v1/orders/{order_id}")]
    assert f"still called {deletes} time(s)" in zombie["traffic_evidence"][0]

    # Products: no 429 anywhere in the log; busy enough over the capture's whole span.
    products = sum(n for (m, route, _), n in counts.items()
                   if (m, route) == ("GET", "/api/v1/products"))
    assert not any(status == 429 for (_, _, status) in counts)
    busy = products >= BUSY_MIN_REQUESTS and products / max(_capture_span(), 1.0) >= BUSY_MIN_RATE
    assert busy  # the demo is a sub-second burst: the check below must confirm
    rate_limit = results[("MSL013", "GET /api/v1/products")]
    assert f"{products} requests within" in rate_limit["traffic_evidence"][0]

    # limit has no maximum, and the inventory keeps no parameter values: observed only.
    paging = results[("MSL008", "GET /api/v1/products")]
    assert paging["observed_in_traffic"] and paging["traffic_evidence"] == []

    # /users/{id} never answered 401/403 in the log, so the missing 401/403 is not confirmed.
    assert not any(route == "/api/v1/users/{user_id}" and status in (401, 403)
                   for (_, route, status) in counts)
    users = results[("MSL012", "GET /api/v1/users/{user_id}")]
    assert users["observed_in_traffic"] and not users["confirmed_by_traffic"]

    # Documented, never called.
    reports = results[("MSL013", "GET /api/v1/reports")]
    assert not reports["observed_in_traffic"] and reports["observed_requests"] == 0


def test_db_sarif_and_table_show_the_traffic(demo_db: str) -> None:
    """SARIF properties and the table column carry the traffic verdict."""
    code, out, _ = _run(str(SPECS / "demo-subset.yaml"), "--db", demo_db, "--format", "sarif")
    assert code == 1
    (run,) = json.loads(out)["runs"]
    assert run["properties"]["trafficChecked"] is True
    confirmed = [r for r in run["results"] if r["properties"]["confirmedByTraffic"]]
    assert confirmed and all(r["properties"]["observedInTraffic"] for r in confirmed)
    assert all("Confirmed by traffic:" in r["message"]["text"] for r in confirmed)
    code, out, _ = _run(str(SPECS / "demo-subset.yaml"), "--db", demo_db)
    assert "confirmed:" in out and "not observed" in out and "confirmed by traffic" in out


def test_malformed_shapes_are_linted_or_refused_never_a_traceback(tmp_path: Path,
                                                                  demo_db: str) -> None:
    """Wrong JSON types inside a spec: the lint and the traffic matching carry on."""
    spec = tmp_path / "odd.json"
    spec.write_text(json.dumps({
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"parameters": 7, "get": {"responses": 5, "requestBody": [],
                                                   "security": "all"}}}}))
    code, out, err = _run(str(spec), "--format", "json")
    assert code == 1 and err == ""
    assert {r["rule_id"] for r in json.loads(out)["results"]} == {"MSL001", "MSL013"}
    code, out, err = _run(str(spec), "--db", demo_db, "--format", "json")
    assert code == 1 and "Traceback" not in err
    assert {r["rule_id"] for r in json.loads(out)["results"]} == {"MSL001", "MSL013"}


def test_table_output_to_file(tmp_path: Path) -> None:
    """--output with the table format writes plain text (no colour codes) and nothing else."""
    target = tmp_path / "lint.txt"
    code, out, _ = _run(str(VULNERABLE), "--output", str(target), "--fail-on", "none")
    text = target.read_text(encoding="utf-8")
    assert code == 0 and out == ""
    assert "MSL014" in text and "\x1b[" not in text and f"{len(_planted())} result(s)" in text
