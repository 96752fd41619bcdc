"""The CLI on good and bad input: one-line errors, exit code 2, data before damage kept."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorscope.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pcaps" / "demo.pcap"
DEMO_EXPECTED = REPO / "pcaps" / "demo.pcap.expected.json"


def _run(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ms.db'}"


def _count(tmp_path: Path, table: str) -> int:
    with sqlite3.connect(tmp_path / "ms.db") as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _jsonl(tmp_path: Path) -> list[dict]:
    code, out, _ = _run("transactions", "--db", _db(tmp_path), "--format", "jsonl")
    assert code == 0
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _demo_requests() -> int:
    expected = json.loads(DEMO_EXPECTED.read_text())
    items = expected["transactions"] if isinstance(expected, dict) else expected
    return len(items)


def test_replay_demo_then_list_jsonl(tmp_path: Path) -> None:
    """The demo capture lands in SQLite and the JSONL contract has every promised key."""
    code, out, err = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress")
    assert code == 0, err
    assert "http transactions" in out
    rows = _jsonl(tmp_path)
    assert len(rows) == _demo_requests()
    required = {"conn_id", "trans_depth", "source", "ts", "client_ip", "client_port", "server_ip",
                "server_port", "method", "host", "uri", "version", "status", "reason",
                "request_body_len", "response_body_len", "request_body_sha256",
                "response_body_sha256", "user_agent", "request_content_type",
                "response_content_type", "anomalies", "partial"}
    for row in rows:
        assert required <= row.keys()
        assert row["source"] == str(DEMO)
        assert row["trans_depth"] >= 1


def test_replay_twice_changes_nothing(tmp_path: Path) -> None:
    """Replaying the same capture again (even with --force) does not duplicate rows."""
    assert _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress")[0] == 0
    before = (_count(tmp_path, "transactions"), _count(tmp_path, "connections"))
    code, out, _ = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress")
    assert code == 0 and "skipped" in out
    assert _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress", "--force")[0] == 0
    assert (_count(tmp_path, "transactions"), _count(tmp_path, "connections")) == before
    assert before[0] == _demo_requests()


def test_jsonl_bodies_are_base64(tmp_path: Path) -> None:
    """--bodies adds the kept decoded heads."""
    _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress")
    code, out, _ = _run("transactions", "--db", _db(tmp_path), "--format", "jsonl", "--bodies",
                        "--limit", "3")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3
    assert all("response_body_b64" in r and "request_body_b64" in r for r in rows)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("content", [b"", b"this is not a capture file at all\n" * 10],
                         ids=["empty", "not-a-capture"])
def test_bad_files_give_one_line_and_exit_2(tmp_path: Path, content: bytes) -> None:
    """Empty or foreign files: a one-line error naming the file, exit code 2."""
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    code, _, err = _run("replay", str(bad), "--db", _db(tmp_path), "--no-progress")
    assert code == 2
    assert str(bad) in _error_line(err)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    """A directory or a missing path is refused with exit code 2, naming it."""
    for target in (tmp_path, tmp_path / "nope.pcap"):
        code, _, err = _run("replay", str(target), "--db", _db(tmp_path), "--no-progress")
        assert code == 2
        assert str(target) in _error_line(err)


def test_unreadable_file(tmp_path: Path) -> None:
    """A file we may not read is refused with exit code 2 (as root: checked as 'nobody')."""
    bad = tmp_path / "secret.pcap"
    shutil.copy(DEMO, bad)
    bad.chmod(0)
    if os.geteuid() != 0:
        code, _, err = _run("replay", str(bad), "--db", _db(tmp_path), "--no-progress")
        assert code == 2 and str(bad) in _error_line(err)
        return
    # Root reads files whatever their mode: drop to 'nobody' in a forked child (the real
    # kernel check, not a mock) and run the CLI there.
    import mirrorscope.keys
    import mirrorscope.pipeline
    import mirrorscope.store.db  # noqa: F401 - the child may not reach site-packages

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        try:
            os.setgid(65534)
            os.setuid(65534)
            code, _, err = _run("replay", str(bad), "--until", "http", "--no-progress")
            payload = json.dumps({"code": code, "err": err})
        except BaseException as exc:  # report anything to the parent, never run its tests
            payload = json.dumps({"code": -1, "err": repr(exc)})
        os.write(write_end, payload.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read() or '{"code": -1, "err": "no answer"}')
    os.waitpid(pid, 0)
    assert result["code"] == 2, result["err"]
    assert str(bad) in _error_line(result["err"])


def _record_offsets(data: bytes) -> list[int]:
    """Byte offsets of each record header in a classic little-endian pcap."""
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
    return offsets


def test_truncated_capture_keeps_what_came_before(tmp_path: Path) -> None:
    """A capture cut mid-record: exit 2, the offset named, earlier transactions stored."""
    data = DEMO.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "the demo capture is little-endian classic pcap"
    offsets = _record_offsets(data)
    cut_record = offsets[len(offsets) * 3 // 4]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: cut_record + 10])  # inside the record header
    code, _, err = _run("replay", str(cut), "--db", _db(tmp_path), "--no-progress")
    assert code == 2
    line = _error_line(err)
    assert str(cut) in line and str(cut_record) in line
    kept = _jsonl(tmp_path)
    assert 0 < len(kept) < _demo_requests()
    # Everything kept is a real transaction of the full capture.
    full_dir = tmp_path / "full"
    full_dir.mkdir()
    _run("replay", str(DEMO), "--db", _db(full_dir), "--no-progress")
    full = {(r["conn_id"], r["trans_depth"], r["uri"], r["status"]) for r in _jsonl(full_dir)}
    assert {(r["conn_id"], r["trans_depth"], r["uri"], r["status"]) for r in kept} <= full


def test_inventory_findings_openapi_and_diff(tmp_path: Path) -> None:
    """After a replay: the inventory and findings JSON contracts, and OpenAPI round trip."""
    assert _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress")[0] == 0
    code, out, _ = _run("inventory", "--db", _db(tmp_path), "--format", "json")
    assert code == 0
    endpoints = json.loads(out)["endpoints"]
    keys = {"host", "method", "path_template", "count", "first_seen", "last_seen",
            "status_codes", "auth", "sensitive", "parameters", "clients"}
    assert endpoints and all(keys <= e.keys() for e in endpoints)
    templates = {(e["method"], e["path_template"]) for e in endpoints}
    # The lab server's routes (pcaps/lab.py): ids become parameters, /me stays literal.
    assert ("GET", "/api/v1/users/me") in templates
    assert any(m == "GET" and t.startswith("/api/v1/users/{") for m, t in templates)
    assert sum(e["count"] for e in endpoints) == _demo_requests()

    code, out, _ = _run("findings", "--db", _db(tmp_path), "--format", "json")
    assert code == 0
    findings = json.loads(out)["findings"]
    contract = {"id", "kind", "owasp", "severity", "confidence", "endpoint", "client_ip",
                "principal", "first_seen", "last_seen", "count", "transactions", "evidence",
                "explanation", "remediation"}
    assert findings and all(contract <= f.keys() for f in findings)
    kinds = {f["kind"] for f in findings}
    # The demo's attacker (pcaps/lab.py attacker_session) walks user ids and sends SQLi.
    assert {"attack.bola_enumeration", "attack.sqli"} <= kinds
    assert all(f["remediation"] and f["owasp"].endswith(":2023") for f in findings)

    spec = tmp_path / "observed.json"
    assert _run("openapi", "--db", _db(tmp_path), "-o", str(spec))[0] == 0
    assert json.loads(spec.read_text())["openapi"].startswith("3.1")
    code, out, _ = _run("diff", "--db", _db(tmp_path), "--spec", str(spec), "--format", "json")
    assert code == 0 and json.loads(out)["shadow"] == []

    # A replay of the same capture again leaves the findings as they were.
    _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress", "--force")
    again = json.loads(_run("findings", "--db", _db(tmp_path), "--format", "json")[1])
    assert sorted((f["kind"], f["count"]) for f in again["findings"]) == \
        sorted((f["kind"], f["count"]) for f in findings)


def test_replay_with_a_spec_reports_shadow_endpoints(tmp_path: Path) -> None:
    """Endpoints in traffic but not in the user's spec become api.shadow_endpoint findings."""
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "documented part of the lab API", "version": "1"},
        "paths": {"/api/v1/login": {"post": {"responses": {"200": {"description": "ok"}}}}},
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    code, _, err = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress",
                        "--spec", str(spec_path))
    assert code == 0, err
    found = json.loads(_run("findings", "--db", _db(tmp_path), "--kind", "api.shadow_endpoint",
                            "--format", "json")[1])["findings"]
    shadowed = {(f["endpoint"]["method"], f["endpoint"]["path_template"]) for f in found}
    assert ("GET", "/api/v1/users/me") in shadowed
    assert ("POST", "/api/v1/login") not in shadowed


def test_bad_spec_is_a_one_line_error(tmp_path: Path) -> None:
    """An unreadable spec: exit 2 with the file named."""
    bad = tmp_path / "spec.yaml"
    bad.write_text("{ this is: [not valid")
    code, _, err = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress",
                        "--spec", str(bad))
    assert code == 2 and str(bad) in _error_line(err)


ATTACK = REPO / "pcaps" / "attack" / "attack.pcap"


def test_baseline_then_replay_scores_with_the_model(tmp_path: Path) -> None:
    """'baseline' stores a JSON model; a later replay loads it and still runs the rules."""
    code, out, err = _run("baseline", str(DEMO), "--db", _db(tmp_path))
    assert code == 0, err
    assert f"learned from {_demo_requests()} transaction(s)" in " ".join(out.split())
    with sqlite3.connect(tmp_path / "ms.db") as conn:
        (params,) = conn.execute("SELECT params FROM detector_models").fetchone()
    assert json.loads(params)["format"]  # plain JSON, never a pickle
    assert _run("replay", str(ATTACK), "--db", _db(tmp_path), "--no-progress")[0] == 0
    found = json.loads(_run("findings", "--db", _db(tmp_path), "--format", "json")[1])
    by_client = {(f["kind"], f["client_ip"]) for f in found["findings"]}
    # pcaps/attack/make_attack.py: 127.0.0.8 is the injection attacker.
    assert ("attack.sqli", "127.0.0.8") in by_client


def test_replay_sends_findings_to_a_jsonl_alert_file(tmp_path: Path) -> None:
    """--alerts-jsonl: one JSON line per finding, ids equal to the stored findings' ids."""
    alerts = tmp_path / "alerts.jsonl"
    code, _, err = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress",
                        "--alerts-jsonl", str(alerts))
    assert code == 0, err
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    stored = json.loads(_run("findings", "--db", _db(tmp_path), "--format", "json")[1])
    assert sorted(d["id"] for d in sent) == sorted(f["id"] for f in stored["findings"])
    assert alerts.stat().st_mode & 0o777 == 0o600
    # A second replay of the same capture is skipped: nothing is sent again.
    _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress", "--alerts-jsonl",
         str(alerts))
    assert len(alerts.read_text().splitlines()) == len(sent)


def test_bad_alert_target_is_a_one_line_error(tmp_path: Path) -> None:
    """A webhook URL that is not http(s): exit 2 before any work."""
    code, _, err = _run("replay", str(DEMO), "--db", _db(tmp_path), "--no-progress",
                        "--webhook", "ftp://example.invalid/x")
    assert code == 2 and "webhook" in _error_line(err).lower()


def test_learn_first_seconds_then_score(tmp_path: Path) -> None:
    """--learn-first: the benign phase of the attack capture is the baseline; attackers found."""
    sidecar = json.loads((REPO / "pcaps" / "attack" / "attack.pcap.expected.json").read_text())
    first_ts = min(json.loads(line)["ts"] for line in _jsonl_of(tmp_path, ATTACK))
    learn = sidecar["baseline_until"] - first_ts
    db = tmp_path / "learn"
    db.mkdir()
    code, _, err = _run("replay", str(ATTACK), "--db", _db(db), "--no-progress",
                        "--learn-first", f"{learn:.3f}")
    assert code == 0, err
    found = json.loads(_run("findings", "--db", _db(db), "--format", "json")[1])["findings"]
    clients = {(f["kind"], f["client_ip"]) for f in found}
    for ip, kind in (("127.0.0.8", "attack.sqli"), ("127.0.0.9", "attack.bola_enumeration"),
                     ("127.0.0.10", "attack.credential_stuffing"),
                     ("127.0.0.11", "attack.scraping")):
        assert (kind, ip) in clients, (kind, ip)
    benign = set(sidecar["benign"])
    assert not [f for f in found if f["client_ip"] in benign]


def _jsonl_of(tmp_path: Path, pcap: Path) -> list[str]:
    folder = tmp_path / "probe"
    folder.mkdir(exist_ok=True)
    _run("replay", str(pcap), "--db", _db(folder), "--no-progress", "--until", "store")
    return _run("transactions", "--db", _db(folder), "--format", "jsonl")[1].splitlines()
