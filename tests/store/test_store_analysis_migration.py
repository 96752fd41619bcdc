"""Migration 0002 on a database holding 0001 data, schema checks, and run deletion."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from mirrorscope.model import EndpointKey, EndpointSummary, Finding
from mirrorscope.store import AnalysisStore, Store, StoreError, make_engine, migrate
from mirrorscope.store.db import WRITE_OPTION

NEW_TABLES = {"endpoint_observations", "findings", "finding_occurrences", "detector_models"}
USERS = EndpointKey("api.example.com", "GET", "/users/{id}")


def _migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade (or downgrade) the database to one revision, as `alembic` would."""
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def _execute(url: str, *statements: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _finding(count: int, ts_first: float = 10.0, ts_last: float = 20.0) -> Finding:
    return Finding(
        "attack.sqli", "high", "API8:2023", USERS, "10.0.0.7", ts_first, ts_last, count
    )


# 0001 rows written as the 0001 code wrote them, without today's models.
_RUN_0001 = (
    "INSERT INTO capture_runs (id, source, source_sha256, size, started_at, finished_at, "
    "status, error, packets, bytes, flows, transactions, stats, ts_first, ts_last) VALUES "
    "(7, 'old.pcap', 'cafe', 99, 1.0, 2.0, 'complete', NULL, 10, 1000, 1, 1, '{}', 100.0, 101.0)"
)
_CONNECTION_0001 = (
    "INSERT INTO connections (conn_id, run_id, client_ip, client_port, server_ip, server_port, "
    "ts_start, ts_end, partial, close_reason) VALUES "
    "('C1', 7, '10.0.0.1', 40000, '10.0.0.2', 80, 100.0, 101.0, false, 'fin')"
)
_TRANSACTION_0001 = (
    "INSERT INTO transactions (conn_id, trans_depth, run_id, ts, method, host, uri, version, "
    "status, anomalies, partial) VALUES "
    "('C1', 1, 7, 100.5, 'GET', 'api.example.com', '/users/1', 'HTTP/1.1', 200, '[]', false)"
)


def test_upgrade_from_0001_keeps_data_and_adds_tables(db_url: str) -> None:
    _migrate_to(db_url, "0001")
    _execute(db_url, _RUN_0001, _CONNECTION_0001, _TRANSACTION_0001)
    with pytest.raises(StoreError, match="behind"):
        AnalysisStore(db_url)
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= NEW_TABLES
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    with Store(db_url, upgrade=False) as store:
        (run,) = store.runs()
        assert (run["id"], run["source"], run["status"]) == (7, "old.pcap", "complete")
        (txn,) = store.iter_transactions()
        assert (txn["conn_id"], txn["uri"], txn["client_ip"]) == ("C1", "/users/1", "10.0.0.1")
    with AnalysisStore(db_url) as analysis:
        analysis.replace_endpoints(7, [EndpointSummary(USERS, 1, 100.5, 100.5)])
        analysis.upsert_findings(7, [(_finding(1), 0.0)])
        assert [r["run_id"] for r in analysis.endpoint_observations()] == [7]
        assert [f["count"] for f in analysis.findings()] == [1]


def test_downgrade_to_0001_drops_only_the_new_tables(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = store.begin_run(source="a.pcap", sha256="a" * 64, size=1, started_at=1.0)
    with AnalysisStore(db_url) as analysis:
        analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 1, 1.0, 1.0)])
        analysis.upsert_findings(run_id, [(_finding(1), 0.0)])
        analysis.save_model("m", "detection", {"x": 1})
    _migrate_to(db_url, "0001", down=True)
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert not tables & NEW_TABLES
        assert "capture_runs" in tables
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="behind"):
        AnalysisStore(db_url)
    migrate.upgrade(db_url)
    with Store(db_url, upgrade=False) as store:
        assert [run["id"] for run in store.runs()] == [run_id]
    with AnalysisStore(db_url) as analysis:
        assert analysis.findings() == []
        assert analysis.load_model("m") is None


def test_refuses_a_missing_sqlite_file(sqlite_url: str) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        AnalysisStore(sqlite_url)


def test_refuses_an_empty_database(db_url: str) -> None:
    make_engine(db_url).dispose()  # an existing, empty database (file)
    with pytest.raises(StoreError, match="mirrorscope db upgrade"):
        AnalysisStore(db_url)


def test_refuses_a_foreign_database(db_url: str) -> None:
    _execute(db_url, "CREATE TABLE somebody_elses (id INTEGER PRIMARY KEY)")
    with pytest.raises(StoreError, match="not mirrorscope"):
        AnalysisStore(db_url)


def test_refuses_a_newer_schema(db_url: str) -> None:
    migrate.upgrade(db_url)
    _execute(db_url, "UPDATE alembic_version SET version_num = 'zzzz'")
    with pytest.raises(StoreError, match="newer"):
        AnalysisStore(db_url)


# ------------------------------------------------------------------- run deletion


def test_deleting_a_run_cascades_to_its_results(db_url: str) -> None:
    with Store(db_url) as store:
        run_a = store.begin_run(source="a.pcap", sha256="a" * 64, size=1, started_at=1.0)
        run_b = store.begin_run(source="b.pcap", sha256="b" * 64, size=1, started_at=1.0)
    with AnalysisStore(db_url) as analysis:
        for run_id, count, ts_last in ((run_a, 3, 50.0), (run_b, 5, 20.0)):
            analysis.replace_endpoints(run_id, [EndpointSummary(USERS, count, 1.0, ts_last)])
            analysis.upsert_findings(run_id, [(_finding(count, ts_last=ts_last), 0.0)])
        _execute(db_url, f"DELETE FROM capture_runs WHERE id = {run_a}")
        assert [r["run_id"] for r in analysis.endpoint_observations()] == [run_b]
        (finding,) = analysis.findings()
        assert (finding["count"], finding["last_seen"]) == (5, 20.0)
        _execute(db_url, f"DELETE FROM capture_runs WHERE id = {run_b}")
        # A finding whose every occurrence is gone is not reported.
        assert analysis.findings() == []
        assert analysis.endpoint_observations() == []


def test_begin_run_deletes_older_duplicate_runs_with_their_results(db_url: str) -> None:
    """begin_run deletes every older run of the same capture: the cascade must allow it."""
    sha = "d" * 64
    with Store(db_url) as store:
        older = store.begin_run(source="d.pcap", sha256=sha, size=1, started_at=1.0)
        _execute(
            db_url,
            "INSERT INTO capture_runs (source, source_sha256, size, started_at, status, "
            f"packets, bytes, flows, transactions, stats) VALUES ('d.pcap', '{sha}', 1, 2.0, "
            "'failed', 0, 0, 0, 0, '{}')",
        )
        newer = max(run["id"] for run in store.runs())
        with AnalysisStore(db_url) as analysis:
            for run_id in (older, newer):
                analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 1, 1.0, 1.0)])
                analysis.upsert_findings(run_id, [(_finding(1), 0.0)])
            assert store.begin_run(source="d.pcap", sha256=sha, size=1, started_at=3.0) == newer
            assert {r["run_id"] for r in analysis.endpoint_observations()} <= {newer}
            assert [f["count"] for f in analysis.findings()] in ([], [1])


def test_begin_run_clears_the_reused_runs_results(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = store.begin_run(source="r.pcap", sha256="f" * 64, size=1, started_at=1.0)
        with AnalysisStore(db_url) as analysis:
            analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 1, 1.0, 1.0)])
            analysis.upsert_findings(run_id, [(_finding(1), 0.0)])
            # The capture crashed half way: processing it again reuses the run id ...
            again = store.begin_run(source="r.pcap", sha256="f" * 64, size=1, started_at=2.0)
            assert again == run_id
            # ... and must start from nothing, as a clean run would.
            assert analysis.endpoint_observations() == []
            assert analysis.findings() == []
