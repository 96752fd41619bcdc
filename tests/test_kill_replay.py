"""SIGKILL mid-replay, then replay again: the database ends equal to an uninterrupted run.

RELIABILITY.md section 8 scenario 6.  The replay runs as the installed console script in a
subprocess.  Two kinds of kill points:

* exact ones: a sitecustomize.py (put on PYTHONPATH for that subprocess only) counts the
  process's database commits and SIGKILLs the process itself just before, or just after, the
  n-th one; it also shrinks the pipeline's store batch so a replay of pcaps/demo.pcap takes
  several write transactions;
* timed ones: the test sends SIGKILL after a delay, wherever the process happens to be.

After each kill a plain replay runs to completion, and the database is compared with the
one of a clean run: transactions, connections, anomaly counts and rows, endpoint
observations and findings (with counts), the run ledger, PRAGMA integrity_check, no
duplicate rows.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_databases import postgres_database
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pcaps" / "demo.pcap"
CLI = Path(sys.executable).with_name("mirrorscope")

HOOK = '''
import os, signal
_spec = os.environ.get("MS_TEST_KILL_AT", "")
if _spec:
    _when, _, _nth = _spec.partition(":")
    _nth = int(_nth)
    _commits = [0]
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    import mirrorscope.pipeline as _pipeline
    _pipeline.STORE_BATCH = int(os.environ.get("MS_TEST_BATCH", "2000"))

    def _kill():
        os.kill(os.getpid(), signal.SIGKILL)

    @event.listens_for(Engine, "commit")
    def _before_commit(conn):
        # Fires before COMMIT is sent: everything of this transaction is written, uncommitted.
        _commits[0] += 1
        if _when == "before" and _commits[0] == _nth:
            _kill()

    @event.listens_for(Engine, "begin")
    def _on_begin(conn):
        # The n-th commit completed and the process moves on to its next transaction.
        if _when == "after" and _commits[0] == _nth:
            _kill()

    import atexit
    if _when == "after":
        atexit.register(lambda: _commits[0] == _nth and _kill())
'''

# Commits of a fresh replay with MS_TEST_BATCH=150: 1 schema, 2 begin_run, 3.. write
# batches, then endpoints, findings, finish_run (the last three are counted from the end).
EXACT_POINTS = [
    "before:3",  # first batch written, not committed
    "after:4",  # two batches committed
    "end-before:2",  # findings written, not committed
    "end-after:2",  # findings committed, run still 'running'
]
# Killed one after another on one database, then replayed to completion.
CHAINED_POINTS = [
    "before:1",  # inside the schema migration
    "after:2",  # run registered as running, nothing written
    "end-after:3",  # endpoints committed, findings not started
    "end-before:1",  # finish_run not committed
]
TIMED_DELAYS = [0.3, 0.9]
BATCH = 150
# Every replay of this module uses one installation key: the fingerprints in redacted
# values must match the clean run's.  Module fixtures run before the suite's autouse key
# fixture, so the path is pinned here explicitly.
_KEY_FILE: list[Path] = []


def _env(tmp_path: Path, kill_at: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MS_TEST_KILL_AT", None)
    env["MIRRORSCOPE_HMAC_KEY_FILE"] = str(_KEY_FILE[0])
    if kill_at is not None:
        hook_dir = tmp_path / "hook"
        hook_dir.mkdir(exist_ok=True)
        (hook_dir / "sitecustomize.py").write_text(HOOK)
        env["PYTHONPATH"] = str(hook_dir)
        env["MS_TEST_KILL_AT"] = kill_at
        env["MS_TEST_BATCH"] = str(BATCH)
    return env


def _replay(url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(CLI), "replay", str(DEMO), "--db", url, "--no-progress"],
        cwd="/",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _run_to_completion(url: str, env: dict[str, str]) -> None:
    proc = _replay(url, env)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode(errors="replace")


def _commit_count(tmp_path: Path) -> int:
    """Commits a complete replay makes with the small batch (to name points from the end)."""
    url = f"sqlite:///{tmp_path / 'count.db'}"
    env = _env(tmp_path, "before:0")  # hook loaded, never fires
    env["MS_TEST_COUNT_FILE"] = str(tmp_path / "commits")
    hook = (tmp_path / "hook" / "sitecustomize.py")
    hook.write_text(HOOK + '\n    atexit.register(lambda: open(os.environ["MS_TEST_COUNT_FILE"],'
                    ' "w").write(str(_commits[0])))\n')
    _run_to_completion(url, env)
    return int((tmp_path / "commits").read_text())


def snapshot(url: str) -> dict[str, Any]:
    """Everything a replay stores, minus surrogate ids and wall-clock times."""
    engine = create_engine(url)
    out: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            def rows(sql: str) -> list[tuple]:
                # bool -> int and Decimal -> int: SQLite and PostgreSQL compare alike.
                return [tuple(_plain(v) for v in r) for r in conn.execute(text(sql))]

            txn_columns = [
                c for c in _columns(conn, "transactions") if c not in ("id", "run_id")
            ]
            out["transactions"] = sorted(
                rows(f"SELECT {', '.join(txn_columns)} FROM transactions"), key=repr
            )
            out["connections"] = sorted(
                rows("SELECT conn_id, client_ip, client_port, server_ip, server_port, ts_start,"
                     " ts_end, partial, close_reason, orig_bytes, resp_bytes, orig_missed,"
                     " resp_missed, packets FROM connections"), key=repr)
            out["anomaly_counts"] = sorted(rows("SELECT kind, count FROM anomaly_counts"))
            out["anomalies"] = sorted(
                rows("SELECT anomaly_key, kind, ts, conn_id, direction, detail FROM anomalies"),
                key=repr)
            out["endpoints"] = sorted(
                rows("SELECT endpoint_key, host, method, path_template, count, first_seen,"
                     " last_seen, doc FROM endpoint_observations"), key=repr)
            out["findings"] = sorted(
                rows("SELECT f.finding_key, f.kind, f.host, f.method, f.path_template,"
                     " f.client_ip, f.principal, f.window_start, f.severity, f.owasp,"
                     " f.confidence, f.ts_first, f.ts_last, f.count, f.evidence,"
                     " f.explanation, f.remediation, f.transactions, f.status,"
                     " o.count, o.ts_first, o.ts_last"
                     " FROM findings f JOIN finding_occurrences o ON o.finding_id = f.id"),
                key=repr)
            out["orphan_findings"] = rows(
                "SELECT count(*) FROM findings f WHERE NOT EXISTS"
                " (SELECT 1 FROM finding_occurrences o WHERE o.finding_id = f.id)")
            out["runs"] = rows(
                "SELECT source, source_sha256, size, status, error, packets, bytes, flows,"
                " transactions, stats, ts_first, ts_last FROM capture_runs")
            out["finished"] = rows(
                "SELECT count(*) FROM capture_runs WHERE finished_at IS NULL")
    finally:
        engine.dispose()
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if type(value).__name__ == "Decimal":
        return int(value)
    return value


def _columns(conn: Any, table: str) -> list[str]:
    from sqlalchemy import inspect

    return [column["name"] for column in inspect(conn).get_columns(table)]


def assert_sound_sqlite(path: Path) -> None:
    """integrity_check ok and no natural key held twice."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        for table, key in (
            ("transactions", "conn_id, trans_depth"),
            ("connections", "conn_id"),
            ("anomalies", "anomaly_key"),
            ("findings", "finding_key"),
            ("endpoint_observations", "run_id, endpoint_key"),
            ("finding_occurrences", "finding_id, run_id"),
            ("capture_runs", "source_sha256"),
        ):
            if table not in tables:  # killed inside the migration: nothing was created
                continue
            dupes = conn.execute(
                f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1"
            ).fetchall()
            assert dupes == [], f"duplicate rows in {table}: {dupes[:3]}"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The snapshot of one uninterrupted replay (default batch size, no hook)."""
    if not CLI.exists() or not DEMO.exists():
        pytest.skip("console script or pcaps/demo.pcap missing")
    tmp = tmp_path_factory.mktemp("clean")
    key_dir = tmp_path_factory.mktemp("kill-replay-key")
    key_dir.chmod(0o700)
    _KEY_FILE[:] = [key_dir / "hmac.key"]
    url = f"sqlite:///{tmp / 'clean.db'}"
    _run_to_completion(url, _env(tmp, None))
    assert_sound_sqlite(tmp / "clean.db")
    result = snapshot(url)
    assert len(result["transactions"]) > 100 and result["findings"], "demo replay is empty"
    return result


@pytest.fixture(scope="module")
def commits(tmp_path_factory: pytest.TempPathFactory, clean: dict[str, Any]) -> int:
    return _commit_count(tmp_path_factory.mktemp("count"))


def _resolve(point: str, commits: int, *, migrated: bool = False) -> str:
    """An absolute commit number; a database already migrated skips the schema commit."""
    skip = 1 if migrated else 0
    if point.startswith("end-"):
        when, _, back = point[4:].partition(":")
        return f"{when}:{commits - skip + 1 - int(back)}"
    when, _, nth = point.partition(":")
    return f"{when}:{int(nth) - skip}"


def _migrated(db: Path) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        return bool(conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'").fetchone()[0])


def test_the_small_batch_makes_several_write_transactions(commits: int) -> None:
    # schema + begin_run + >= 3 batches + endpoints + findings + finish_run
    assert commits >= 8


@pytest.mark.parametrize("point", EXACT_POINTS)
def test_kill_at_exact_point_then_replay_equals_clean_run(
    point: str, tmp_path: Path, clean: dict[str, Any], commits: int
) -> None:
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    proc = _replay(url, _env(tmp_path, _resolve(point, commits)))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode(errors="replace")
    if db.exists():
        assert_sound_sqlite(db)
    _run_to_completion(url, _env(tmp_path, None))
    assert_sound_sqlite(db)
    assert snapshot(url) == clean
    if point == "end-after:2":
        # A third replay sees a complete run of the same content and changes nothing.
        _run_to_completion(url, _env(tmp_path, None))
        assert snapshot(url) == clean


def test_chained_kills_at_exact_points_then_replay_equals_clean_run(
    tmp_path: Path, clean: dict[str, Any], commits: int
) -> None:
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    for point in CHAINED_POINTS:
        absolute = _resolve(point, commits, migrated=_migrated(db))
        proc = _replay(url, _env(tmp_path, absolute))
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (point, stderr.decode(errors="replace"))
        assert_sound_sqlite(db)
    _run_to_completion(url, _env(tmp_path, None))
    assert_sound_sqlite(db)
    assert snapshot(url) == clean


def test_kills_after_delays_then_replay_equals_clean_run(
    tmp_path: Path, clean: dict[str, Any]
) -> None:
    """Blind SIGKILLs from outside, chained on one database, then a full replay."""
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    env = _env(tmp_path, None)
    for delay in TIMED_DELAYS:
        proc = _replay(url, env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if db.exists():
            assert_sound_sqlite(db)
    _run_to_completion(url, env)
    assert_sound_sqlite(db)
    assert snapshot(url) == clean


def _pg_database() -> Iterator[str]:
    admin_url = os.environ.get("MIRRORSCOPE_TEST_PG_URL")
    if not admin_url:
        pytest.skip("MIRRORSCOPE_TEST_PG_URL is not set")
    yield from postgres_database(admin_url, prefix="ms_kill")


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.mark.postgres
@pytest.mark.parametrize("point", ["after:3", "end-before:2"])
def test_kill_then_replay_on_postgresql_equals_clean_run(
    point: str, pg_url: str, tmp_path: Path, clean: dict[str, Any], commits: int
) -> None:
    proc = _replay(pg_url, _env(tmp_path, _resolve(point, commits)))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode(errors="replace")
    _run_to_completion(pg_url, _env(tmp_path, None))
    assert snapshot(pg_url) == clean
