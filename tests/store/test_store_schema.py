"""Migrations: they create the schema the models describe, and the version checks."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from mirrorscope.store import (
    Store,
    StoreError,
    current_revision,
    head_revision,
    make_engine,
    migrate,
)
from mirrorscope.store.models import Base

EXPECTED_TABLES = {
    "alembic_version",
    "capture_runs",
    "connections",
    "transactions",
    "anomalies",
    "anomaly_counts",
    "endpoint_observations",
    "findings",
    "finding_status_history",
    "response_firings",
    "finding_occurrences",
    "detector_models",
    "anomaly_batches",
    "sensor_health",
}


def test_upgrade_creates_every_table(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert migrate.upgrade(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrated_schema_equals_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_accepts_a_url(db_url: str) -> None:
    assert migrate.upgrade(db_url) == head_revision()


def test_store_migrates_a_new_database(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.runs() == []
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_store_without_upgrade_refuses_an_empty_database(db_url: str) -> None:
    make_engine(db_url).dispose()  # an existing, empty database (file)
    with pytest.raises(StoreError, match="mirrorscope db upgrade"):
        Store(db_url, upgrade=False)


def test_store_refuses_a_schema_that_is_behind(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(db_url)
    # Pretend the code has moved on by one revision the database does not have yet.
    known = migrate.known_revisions()
    monkeypatch.setattr(migrate, "head_revision", lambda: "9999")
    monkeypatch.setattr(migrate, "known_revisions", lambda: known | {"9999"})
    with pytest.raises(StoreError, match=r"behind.*run `mirrorscope db upgrade`"):
        Store(db_url)


def test_store_refuses_a_schema_from_a_newer_version(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz'"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="newer"):
        Store(db_url)


def test_store_refuses_a_foreign_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE somebody_elses (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="not mirrorscope"):
        Store(db_url)
