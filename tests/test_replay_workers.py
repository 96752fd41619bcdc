"""`replay --workers N` stores exactly what a one-process replay stores.

Each capture is replayed with 1, 2 and 3 workers into separate SQLite databases (same
installation key), and everything stored is compared: transactions (every column but
ids and run ids, in id order, so the store batches match too), connections, anomalies
and their counts, endpoints, findings with occurrences, and the run ledger (statistics
compared as parsed JSON).  Then the failure paths: a worker that dies, and a damaged
capture, end with exit code 2 and a one-line message, never a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("mirrorscope")
CAPTURES = [
    "pcaps/demo.pcap",
    "pcaps/attack/attack.pcap",
    "pcaps/crafted/ip_fragmented.pcap",  # fragments: decoded by every worker
    "pcaps/crafted/ipv6.pcap",
    "pcaps/crafted/vlan.pcap",
    "pcaps/crafted/midstream.pcap",
    "pcaps/crafted/out_of_order_dup.pcap",
    "pcaps/crafted/pipelined.pcap",
    "pcaps/crafted/smuggling_te_cl.pcap",
    "pcaps/crafted/retransmit_mismatch.pcap",
]


def _replay(pcap: Path, url: str, workers: int, key_file: Path, *extra: str
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MIRRORSCOPE_HMAC_KEY_FILE=str(key_file))
    return subprocess.run(
        [str(CLI), "replay", str(pcap), "--db", url, "--no-progress", "--workers",
         str(workers), *extra],
        cwd="/", env=env, capture_output=True, text=True, timeout=120, check=False)


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def stored(url: str) -> dict[str, Any]:
    """Everything a replay stores, minus surrogate ids and wall-clock times."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            def rows(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(_plain(v) for v in r) for r in conn.execute(text(sql))]

            columns = [c["name"] for c in inspect(conn).get_columns("transactions")
                       if c["name"] not in ("id", "run_id")]
            out: dict[str, Any] = {
                # In id order: the same records in the same store batches.
                "transactions": rows(f"SELECT {', '.join(columns)} FROM transactions "
                                     "ORDER BY id"),
                "connections": sorted(rows(
                    "SELECT conn_id, client_ip, client_port, server_ip, server_port, ts_start,"
                    " ts_end, partial, close_reason, orig_bytes, resp_bytes, orig_missed,"
                    " resp_missed, packets FROM connections"), key=repr),
                "anomaly_counts": sorted(rows("SELECT kind, count FROM anomaly_counts")),
                "anomalies": sorted(rows(
                    "SELECT anomaly_key, kind, ts, conn_id, direction, detail FROM anomalies"),
                    key=repr),
                "endpoints": sorted(rows(
                    "SELECT endpoint_key, host, method, path_template, count, first_seen,"
                    " last_seen, doc FROM endpoint_observations"), key=repr),
                "findings": sorted(rows(
                    "SELECT f.finding_key, f.kind, f.host, f.method, f.path_template,"
                    " f.client_ip, f.principal, f.window_start, f.severity, f.confidence,"
                    " f.ts_first, f.ts_last, f.count, f.evidence, f.explanation,"
                    " f.transactions, o.count, o.ts_first, o.ts_last"
                    " FROM findings f JOIN finding_occurrences o ON o.finding_id = f.id"),
                    key=repr),
            }
            runs = rows("SELECT source, source_sha256, size, status, error, packets, bytes,"
                        " flows, transactions, ts_first, ts_last, stats FROM capture_runs")
            out["runs"] = [(*r[:-1], json.loads(r[-1]) if r[-1] else None) for r in runs]
    finally:
        engine.dispose()
    return out


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One installation key for every replay: redacted fingerprints must match."""
    directory = tmp_path_factory.mktemp("replay-workers-key")
    directory.chmod(0o700)
    return directory / "hmac.key"


@pytest.mark.parametrize("capture", CAPTURES)
def test_workers_store_exactly_what_one_process_stores(capture: str, tmp_path: Path) -> None:
    from mirrorscope.pipeline import ReplayOptions, replay

    pcap = REPO / capture
    if not pcap.exists():
        pytest.skip("capture missing")
    results = {}
    for workers in (1, 2, 3):
        url = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        stats = replay([pcap], ReplayOptions(db_url=url, hmac_key=b"k" * 32, workers=workers))
        assert not stats.errors
        results[workers] = stored(url)
    single = results[1]
    assert single["transactions"], "the capture yielded no transactions"
    assert single["runs"][0][3] == "complete"
    for workers in (2, 3):
        for table, expected in single.items():
            assert results[workers][table] == expected, f"{table} differ with {workers} workers"


def test_demo_has_findings_and_anomalies_to_compare(tmp_path: Path, key_file: Path) -> None:
    """The comparison above is not vacuous: the demo yields findings and anomalies."""
    pcap = REPO / "pcaps/demo.pcap"
    if not CLI.exists() or not pcap.exists():
        pytest.skip("console script or capture missing")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert _replay(pcap, url, 2, key_file).returncode == 0
    result = stored(url)
    assert len(result["transactions"]) == 373
    assert result["findings"] and result["anomaly_counts"]
    assert result["runs"][0][-1]["decode"]["frames"] == result["runs"][0][5]


def test_a_worker_that_dies_ends_the_replay_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL inside a worker: a one-line error naming it, exit code 2, no hang."""
    from mirrorscope import replay_workers
    from mirrorscope.cli import main

    real_parse = replay_workers._parse

    def dying_parse(path: str, index: int, workers: int, setup: dict[str, Any],
                    conn: Any) -> None:
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        real_parse(path, index, workers, setup, conn)

    monkeypatch.setattr(replay_workers, "_parse", dying_parse)  # inherited by the fork
    monkeypatch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(tmp_path / "key"))
    url = f"sqlite:///{tmp_path / 'died.db'}"
    result = CliRunner().invoke(
        main, ["replay", str(REPO / "pcaps/demo.pcap"), "--db", url, "--no-progress",
               "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "replay worker 2 of 2 died (killed by SIGKILL)" in result.output
    assert "Traceback" not in result.output
    runs = stored(url)["runs"]
    assert runs[0][3] == "failed" and "worker 2 of 2 died" in runs[0][4]


def test_a_worker_that_raises_ends_the_replay_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside a worker is reported (type and message), exit code 2."""
    from mirrorscope import replay_workers
    from mirrorscope.cli import main

    def failing_parse(*_args: Any) -> None:
        raise MemoryError("out of memory in the test")

    monkeypatch.setattr(replay_workers, "_parse", failing_parse)
    monkeypatch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(tmp_path / "key"))
    result = CliRunner().invoke(
        main, ["replay", str(REPO / "pcaps/demo.pcap"), "--db",
               f"sqlite:///{tmp_path / 'raised.db'}", "--no-progress", "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "failed: MemoryError: out of memory in the test" in result.output


def test_a_damaged_capture_gives_the_same_error_with_workers(
        tmp_path: Path, key_file: Path) -> None:
    """Damage mid-file: same message, same stored records, as one process."""
    pcap = REPO / "pcaps/demo.pcap"
    if not CLI.exists() or not pcap.exists():
        pytest.skip("console script or capture missing")
    data = pcap.read_bytes()
    damaged = tmp_path / "damaged.pcap"
    cut = len(data) * 2 // 3
    # A record header claiming a 1 GiB frame, two thirds of the way in.
    offset = _record_offset(data, cut)
    order = _byte_order(data)
    damaged.write_bytes(data[:offset + 8] + (1 << 30).to_bytes(4, order) * 2
                        + data[offset + 16:])
    outcomes = []
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'd{workers}.db'}"
        proc = _replay(damaged, url, workers, key_file)
        assert proc.returncode == 2
        outcomes.append((proc.stderr.split("error:")[-1].strip(), stored(url)))
    assert "at byte offset" in outcomes[0][0]
    assert outcomes[1] == outcomes[0]


def test_workers_need_a_stage_with_flows(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(CLI), "replay", str(REPO / "pcaps/demo.pcap"), "--until", "decode",
         "--workers", "2", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--no-progress"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--workers needs --until tcp" in proc.stderr


def _byte_order(data: bytes) -> str:
    """A classic pcap file's byte order, from its magic number."""
    return "little" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"


def _record_offset(data: bytes, near: int) -> int:
    """Offset of the classic-pcap record header at or after ``near``."""
    order = _byte_order(data)
    offset = 24
    while offset < near:
        caplen = int.from_bytes(data[offset + 8:offset + 12], order)
        offset += 16 + caplen
    return offset


def test_workers_prepare_every_stored_row_and_yield_the_cpu(tmp_path: Path,
                                                            monkeypatch) -> None:
    """Rows come built from the workers (none left to the merge process), and the workers
    run at WORKER_NICE below it, so the merge process keeps its core."""
    from mirrorscope import replay_workers
    from mirrorscope.pipeline import ReplayOptions, replay
    from mirrorscope.store import Store
    from mirrorscope.store.rows import PreparedRows

    seen = {"transactions": 0, "prepared": 0, "missing": 0}
    niceness: list[int] = []
    write_batch = Store.write_batch

    def counting(self: Store, run_id: int, items: list[Any]) -> None:
        for item in items:
            if type(item) is PreparedRows:
                seen["prepared"] += sum(row is not None for row in item.rows)
                seen["missing"] += sum(row is None for row in item.rows)
            elif type(item).__name__ == "HttpTransaction":
                seen["transactions"] += 1
        write_batch(self, run_id, items)

    enter = replay_workers.ShardedParse.__enter__

    def entering(self: replay_workers.ShardedParse) -> replay_workers.ShardedParse:
        parse = enter(self)
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        for proc in self._procs:  # the worker renices itself first thing: wait for it
            deadline = time.monotonic() + 10
            while True:
                value = os.getpriority(os.PRIO_PROCESS, proc.pid)
                if value != mine or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            niceness.append(value - mine)
        return parse

    monkeypatch.setattr(Store, "write_batch", counting)
    monkeypatch.setattr(replay_workers.ShardedParse, "__enter__", entering)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    stats = replay([REPO / "pcaps/demo.pcap"],
                   ReplayOptions(db_url=url, hmac_key=b"k" * 32, workers=2))
    assert not stats.errors
    assert seen["transactions"] == stats.transactions > 0
    assert seen["prepared"] == seen["transactions"] and seen["missing"] == 0
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + replay_workers.WORKER_NICE)
    assert niceness == [expected - os.getpriority(os.PRIO_PROCESS, 0)] * 2
