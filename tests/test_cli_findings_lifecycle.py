"""`mirrorscope findings` triage end to end (status, history, regressions, owners, SLA) and
`mirrorscope owners`, on the demo capture."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorscope.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pcaps" / "demo.pcap"
EXAMPLE_OWNERS = REPO / "contrib" / "owners.example.yaml"
DAY = 86400


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    return result.exit_code, result.stdout, result.stderr


def _shifted_copy(source: Path, target: Path, seconds: int) -> Path:
    """A classic little-endian pcap with every packet `seconds` later: the same traffic,
    recurring on another day (another file, so another run)."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # the demo is microsecond pcap, little endian
    offset = 24
    while offset < len(data):
        ts_sec, _usec, incl_len, _orig = struct.unpack_from("<IIII", data, offset)
        struct.pack_into("<I", data, offset, ts_sec + seconds)
        offset += 16 + incl_len
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo capture replayed once; tests copy the file rather than replay again."""
    folder = tmp_path_factory.mktemp("lifecycle")
    db = folder / "demo.db"
    # Module scope runs before conftest's per-test key fixture: use the key file it will
    # set, or principals (HMAC fingerprints) would differ between this replay and the tests'.
    key_dir = tmp_path_factory.getbasetemp() / "hmac"
    key_dir.mkdir(exist_ok=True, mode=0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(key_dir / "hmac.key"))
        code, _, err = _run("replay", str(DEMO), "--db", f"sqlite:///{db}", "--no-progress")
    assert code == 0, err
    return db


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> str:
    copy = tmp_path / "ms.db"
    copy.write_bytes(demo_db.read_bytes())
    return f"sqlite:///{copy}"


def _findings(db: str, *extra: str) -> list[dict]:
    code, out, err = _run("findings", "--db", db, "--format", "json", *extra)
    assert code == 0, err
    return json.loads(out)["findings"]


def _one(findings: list[dict], kind: str, path: str | None = None) -> dict:
    (found,) = [f for f in findings if f["kind"] == kind
                and (path is None or (f["endpoint"] or {}).get("path_template") == path)]
    return found


def test_resolve_replay_again_then_recurrence_is_a_regression(db: str, tmp_path: Path) -> None:
    before = _findings(db)
    sqli = _one(before, "attack.sqli")
    traversal = _one(before, "attack.path_traversal", "/static/../../../etc/passwd")
    pii = _one(before, "api.pii_exposure", "/api/v1/users/me")  # a whole-run finding
    assert {f["status"] for f in before} == {"open"}

    code, out, _ = _run("findings", "set-status", str(sqli["id"]), str(pii["id"]), "--db", db,
                        "--status", "resolved", "--by", "alice", "--reason", "fixed in 2.1")
    assert code == 0
    assert f"finding #{sqli['id']}: open -> resolved" in out
    code, _, err = _run("findings", "set-status", str(traversal["id"]), "--db", db,
                        "--status", "false_positive", "--by", "bob")
    assert code == 2 and "--reason is required" in err
    code, _, _ = _run("findings", "--db", db, "set-status", str(traversal["id"]),
                      "--status", "false_positive", "--by", "bob", "--reason", "pentest")
    assert code == 0

    # The same capture again (forced): nothing re-opens, nothing new.
    assert _run("replay", str(DEMO), "--db", db, "--no-progress", "--force")[0] == 0
    again = _findings(db)
    assert sorted(f["id"] for f in again) == sorted(f["id"] for f in before)
    assert all(f["regression_of"] is None for f in again)
    by_id = {f["id"]: f for f in again}
    assert by_id[sqli["id"]]["status"] == "resolved"
    assert by_id[pii["id"]]["status"] == "resolved"
    assert by_id[traversal["id"]]["status"] == "false_positive"

    # Two days later the same attacks recur.
    later = _shifted_copy(DEMO, tmp_path / "later.pcap", 2 * DAY)
    assert _run("replay", str(later), "--db", db, "--no-progress")[0] == 0
    after = _findings(db)
    regressions = [f for f in after if f["regression_of"] == sqli["id"]]
    assert [(f["kind"], f["status"], f["first_seen"]) for f in regressions] == \
        [("attack.sqli", "open", pytest.approx(sqli["first_seen"] + 2 * DAY))]
    by_id = {f["id"]: f for f in after}
    assert by_id[sqli["id"]]["status"] == "resolved"
    # The whole-run finding is one row: it re-opens itself.
    assert (by_id[pii["id"]]["status"], by_id[pii["id"]]["regression_of"]) == \
        ("open", pii["id"])
    # The false positive's new window inherits the verdict.
    new_traversal = [f for f in after if f["kind"] == "attack.path_traversal"
                     and f["endpoint"]["path_template"] == "/static/../../../etc/passwd"
                     and f["id"] != traversal["id"]]
    assert [f["status"] for f in new_traversal] == ["false_positive"]

    code, out, _ = _run("findings", "history", str(regressions[0]["id"]), "--db", db,
                        "--format", "json")
    assert code == 0
    history = json.loads(out)
    assert history["regression_of"] == sqli["id"]
    assert [(h["actor"], h["new_status"], h["reason"]) for h in history["history"]] == \
        [("mirrorscope", "open", "regression: seen again after resolution")]
    code, out, _ = _run("findings", "history", str(pii["id"]), "--db", db)
    assert code == 0
    assert "alice" in out and "fixed in 2.1" in out and "mirrorscope" in out
    assert f"regression of #{pii['id']}" in out

    code, out, _ = _run("findings", "--db", db, "--status", "open")
    assert code == 0 and f"regression of #{sqli['id']}" in out
    resolved = _findings(db, "--status", "resolved")
    assert [f["id"] for f in resolved] == [sqli["id"]]


def test_set_status_errors_are_one_line_exit_2(db: str) -> None:
    code, _, err = _run("findings", "set-status", "999999", "--db", db, "--status", "resolved",
                        "--by", "alice")
    assert code == 2 and "no finding with id 999999" in err
    code, _, err = _run("findings", "set-status", "1", "--db", db, "--status", "fixed")
    assert code == 2 and "Invalid value" in err
    code, _, err = _run("findings", "history", "999999", "--db", db)
    assert code == 2 and "no finding with id 999999" in err
    code, _, err = _run("findings", "--db", db, "--owner", "identity")
    assert code == 2 and "--owner needs an ownership file" in err
    code, _, err = _run("findings", "--db", db, "--sla", "urgent=1")
    assert code == 2 and "--sla" in err


def test_set_status_defaults_the_actor_to_user(db: str) -> None:
    fid = _findings(db)[0]["id"]
    code, _, _ = _run("findings", "set-status", str(fid), "--db", db, "--status",
                      "acknowledged", env={"USER": "carol"})
    assert code == 0
    (row,) = [f for f in _findings(db) if f["id"] == fid]
    assert (row["status"], row["status_actor"]) == ("acknowledged", "carol")


def test_findings_with_owners_and_sla(db: str) -> None:
    code, out, _ = _run("findings", "--db", db, "--owners", str(EXAMPLE_OWNERS))
    assert code == 0
    assert "owner" in out and "identity" in out and "due in" in out
    owned = _findings(db, "--owners", str(EXAMPLE_OWNERS), "--owner", "BILLING")
    assert [(f["kind"], f["owner"]["team"]) for f in owned] == [("api.pii_exposure", "billing")]
    assert owned[0]["owner"]["tags"] == ["pci"]
    code, out, _ = _run("findings", "--db", db, "--format", "json", "--owner", "-",
                        env={"MIRRORSCOPE_OWNERS": str(EXAMPLE_OWNERS)})
    unowned = json.loads(out)["findings"]
    assert unowned and all(f["owner"] is None for f in unowned)
    assert {"attack.path_traversal", "api.jwt_weak"} <= {f["kind"] for f in unowned}
    # A zero-day SLA for high findings: every open high finding is past due.
    every = _findings(db, "--sla", "high=0")
    highs = [f for f in every if f["severity"] == "high"]
    assert highs and all(f["sla"]["breached"] for f in highs)
    code, out, _ = _run("findings", "--db", db, "--sla", "high=0")
    assert "BREACHED" in out and "past their SLA" in out


def test_owners_command(db: str, tmp_path: Path) -> None:
    code, out, _ = _run("owners", "--db", db, "--owners", str(EXAMPLE_OWNERS), "--format",
                        "json")
    assert code == 0
    doc = json.loads(out)
    owners = {(e["method"], e["path_template"]): (e["owner"] or {}).get("team")
              for e in doc["endpoints"]}
    assert owners[("POST", "/api/v1/login")] == "identity"
    assert owners[("GET", "/api/v1/users/me")] == "identity"
    assert owners[("GET", "/api/v1/account/billing")] == "billing"
    assert owners[("GET", "/api/v1/products")] is None  # the catalog rule is for *.example.com
    assert doc["unowned"] == sum(1 for team in owners.values() if team is None)
    assert doc["total"] == len(owners)

    code, out, _ = _run("owners", "--db", db, "--unowned",
                        env={"MIRRORSCOPE_OWNERS": str(EXAMPLE_OWNERS)})
    assert code == 0
    assert f"{doc['unowned']} of {doc['total']} endpoints unowned" in out
    assert "/api/v1/products" in out and "/api/v1/login" not in out

    code, out, err = _run("owners", "--db", db, "--unowned")
    assert code == 0 and f"{doc['total']} of {doc['total']} endpoints unowned" in out
    assert "no ownership file" in err

    bad = tmp_path / "bad.yaml"
    bad.write_text("owners:\n  - team: x\n    match: {path_prefix: nope}\n")
    code, _, err = _run("owners", "--db", db, "--owners", str(bad))
    assert code == 2
    assert "bad.yaml" in err and "owners[0].match.path_prefix" in err
    code, _, err = _run("findings", "--db", db, "--owners", str(tmp_path / "none.yaml"))
    assert code == 2 and "cannot read" in err
