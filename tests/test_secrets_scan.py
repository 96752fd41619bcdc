"""D2 end to end: secrets carried by pcaps/demo.pcap never reach the database or outputs.

The secrets are taken from the capture bytes themselves (Bearer JWTs, session cookies,
login passwords, the test card number), the capture is replayed through the CLI, then the
database file, its WAL and the CLI's exports are scanned for the raw values.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pcaps" / "demo.pcap"
CLI = Path(sys.executable).with_name("mirrorscope")


def _secrets(capture: bytes) -> set[bytes]:
    found: set[bytes] = set()
    found |= set(re.findall(rb"Bearer (eyJ[A-Za-z0-9_.-]{20,})", capture))
    found |= set(re.findall(rb"session=([A-Za-z0-9]{16,})", capture))
    found |= {m for m in re.findall(rb'"password": ?"([^"]{6,})"', capture)}
    found |= set(re.findall(rb"4111 1111 1111 1111", capture))
    return found


def test_no_raw_secret_in_database_wal_or_exports(tmp_path: Path) -> None:
    if not CLI.exists() or not DEMO.exists():
        pytest.skip("console script or pcaps/demo.pcap missing")
    capture = DEMO.read_bytes()
    secrets = _secrets(capture)
    kinds = [b"eyJ", b"4111"]
    assert all(any(s.startswith(k) for s in secrets) for k in kinds), "demo lacks secrets"
    assert len(secrets) > 10
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    env = dict(os.environ)
    outputs: list[bytes] = []

    def cli(*args: str) -> None:
        done = subprocess.run([str(CLI), *args, "--db", url], cwd="/", env=env,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        outputs.extend([done.stdout, done.stderr])

    # Keep the WAL: a second process holds the database open while we read it.
    cli("replay", str(DEMO), "--no-progress")
    cli("transactions", "--format", "jsonl", "--bodies")
    cli("findings", "--format", "json")
    cli("inventory", "--format", "json")
    files = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db")]
    blobs = files + outputs
    assert any(b"conn_id" in out for out in outputs)
    leaks = {s for s in secrets for blob in blobs if s in blob}
    assert leaks == set()
    # Redaction left fingerprints behind instead (correlation stays possible).
    assert b"Bearer" in b"".join(files)
