"""Retention (prune), the BI views of migration 0003, and anomaly flood sampling."""

from __future__ import annotations

from sqlalchemy import text
from store_builders import request, transaction

from mirrorscope.model import Anomaly, EndpointKey, Finding
from mirrorscope.store import AnalysisStore, Store, make_engine
from mirrorscope.store.repository import ANOMALY_ROWS_KEPT, ANOMALY_SAMPLE_EVERY

DAY = 86400.0
NOW = 1_700_000_000.0


def _run(store: Store, sha: str, conn_id: str, finished_at: float) -> int:
    run_id = store.begin_run(source=f"{sha[:4]}.pcap", sha256=sha, size=1, started_at=0.0)
    store.write_batch(run_id, [transaction(conn_id, 1, req=request()), Anomaly("tcp.gap", 1.0)])
    store.finish_run(run_id, status="complete", stats={}, finished_at=finished_at)
    return run_id


def _finding(kind: str) -> Finding:
    endpoint = EndpointKey("api.example.com", "GET", "/api/items")
    return Finding(kind=kind, severity="high", owasp="API1:2023", confidence=0.9,
                   endpoint=endpoint, client_ip="10.0.0.1", principal=None, ts_first=5.0,
                   ts_last=6.0, count=2, evidence={}, explanation=(), remediation="",
                   transactions=())


def test_prune_deletes_old_runs_their_rows_and_orphan_findings(store: Store, db_url: str) -> None:
    old = _run(store, "1" * 64, "OLD", NOW - 40 * DAY)
    new = _run(store, "2" * 64, "NEW", NOW - 1 * DAY)
    with AnalysisStore(db_url) as analysis:
        analysis.upsert_findings(old, [(_finding("only.old"), 0.0), (_finding("both"), 0.0)])
        analysis.upsert_findings(new, [(_finding("both"), 0.0)])
    assert store.prune(older_than=30 * DAY, now=NOW) == {"runs": 1, "findings": 1}
    assert [run["id"] for run in store.runs()] == [new]
    assert [row["conn_id"] for row in store.iter_transactions()] == ["NEW"]
    assert store.anomaly_counts() == {"tcp.gap": 1}
    with AnalysisStore(db_url) as analysis:
        (both,) = analysis.findings()
    assert (both["kind"], both["count"]) == ("both", 2)  # only the new run's occurrence
    assert store.prune(older_than=30 * DAY, now=NOW) == {"runs": 0, "findings": 0}


def test_prune_keeps_running_runs(store: Store) -> None:
    store.begin_run(source="live", sha256="3" * 64, size=0, started_at=0.0)
    assert store.prune(older_than=0.0, now=NOW) == {"runs": 0, "findings": 0}
    assert len(store.runs()) == 1


def test_views_answer_the_documented_queries(store: Store, db_url: str) -> None:
    run_id = _run(store, "1" * 64, "C1", NOW)
    with AnalysisStore(db_url) as analysis:
        analysis.upsert_findings(run_id, [(_finding("auth.bola"), 0.0)])
    engine = make_engine(db_url, create=False)
    try:
        with engine.connect() as conn:
            txns = conn.execute(
                text("SELECT conn_id, method, uri, client_ip, source FROM v_transactions")
            ).all()
            findings = conn.execute(
                text("SELECT kind, severity, count, runs FROM v_findings")
            ).all()
            endpoints = conn.execute(text("SELECT count(*) FROM v_endpoints")).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in txns] == [
        ("C1", "GET", "/api/items?id=1", "10.0.0.1", "1111.pcap")
    ]
    assert [(k, s, int(c), int(r)) for k, s, c, r in findings] == [("auth.bola", "high", 2, 1)]
    assert endpoints == 0


def test_anomaly_flood_counts_exactly_and_stores_a_bounded_sample(store: Store) -> None:
    run_id = store.begin_run(source="flood", sha256="4" * 64, size=1, started_at=0.0)
    total = 100_000
    for start in range(0, total, 10_000):
        batch = [Anomaly("http.bad_request", float(n), f"C{n}", None, "x")
                 for n in range(start, start + 10_000)]
        store.write_batch(run_id, batch)
    assert store.anomaly_counts(run_id) == {"http.bad_request": total}
    with store._engine.connect() as conn:  # white-box: the sampled rows themselves
        rows = conn.execute(text("SELECT ts FROM anomalies ORDER BY ts")).scalars().all()
    # The first 25 of the kind, then numbers 1000, 2000, ... 99000 (0-based).
    expected = [float(n) for n in range(ANOMALY_ROWS_KEPT)] + [
        float(n) for n in range(ANOMALY_SAMPLE_EVERY, total, ANOMALY_SAMPLE_EVERY)
    ]
    assert rows == expected


def test_rewriting_a_flood_batch_counts_nothing(store: Store) -> None:
    run_id = store.begin_run(source="flood", sha256="5" * 64, size=1, started_at=0.0)
    batch = [Anomaly("tcp.gap", float(n)) for n in range(3000)]
    store.write_batch(run_id, batch)
    store.write_batch(run_id, batch)
    assert store.anomaly_counts(run_id) == {"tcp.gap": 3000}
