"""replay --checksum and --respond, end to end on the bundled attack capture."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mirrorscope.cli import main

ROOT = Path(__file__).resolve().parent.parent
ATTACK = ROOT / "pcaps" / "attack" / "attack.pcap"
RULES = """
never_block: [192.0.2.0/24]   # the capture's clients are on loopback: let them be blocked
rules:
  - name: block-bola
    match: {kind: ["attack.bola_enumeration"], min_severity: medium}
    recurrence: {count: 3, window: 10m}
    actions:
      - {type: nginx_deny, file: deny.conf}
"""


def _replay(*args: str) -> str:
    result = CliRunner().invoke(main, ["replay", *args, "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_strict_checksums_drop_an_offloaded_loopback_capture(tmp_path: Path) -> None:
    # tcpdump on lo records checksums the kernel never filled in: strict drops every
    # segment (and says so), auto keeps them.
    strict = _replay(str(ATTACK), "--db", f"sqlite:///{tmp_path / 's.db'}", "--checksum", "strict")
    assert "tcp.bad_checksum" in strict
    rows = CliRunner().invoke(main, ["transactions", "--db", f"sqlite:///{tmp_path / 's.db'}",
                                     "--format", "jsonl"], catch_exceptions=False).output
    assert rows.strip() == ""
    auto = _replay(str(ATTACK), "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert "tcp.bad_checksum" not in auto
    rows = CliRunner().invoke(main, ["transactions", "--db", f"sqlite:///{tmp_path / 'a.db'}",
                                     "--format", "jsonl"], catch_exceptions=False).output
    assert len(rows.splitlines()) > 100


def test_replay_respond_blocks_the_enumerating_client_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.yaml").write_text(RULES)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    _replay(str(ATTACK), "--db", db, "--respond", "rules.yaml")
    _replay(str(ATTACK), "--db", db, "--force", "--respond", "rules.yaml")
    denies = [line for line in (tmp_path / "deny.conf").read_text().splitlines()
              if line.startswith("deny ")]
    findings = json.loads(CliRunner().invoke(
        main, ["findings", "--db", db, "--kind", "attack.bola_enumeration", "--format", "json"],
        catch_exceptions=False).output)["findings"]
    attackers = {f["client_ip"] for f in findings}
    assert attackers, "the capture's BOLA enumeration must be detected"
    assert sorted(line.split()[1].rstrip(";") for line in denies) == sorted(attackers)


def test_replay_refuses_bad_rules_before_replaying(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [{name: x}]\n")
    result = CliRunner().invoke(main, ["replay", str(ATTACK), "--db",
                                       f"sqlite:///{tmp_path / 'b.db'}", "--respond",
                                       str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "x" in result.output and not (tmp_path / "b.db").exists()
