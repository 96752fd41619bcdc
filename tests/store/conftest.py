"""Fixtures for the store tests: a fresh database per test on SQLite and, when
MIRRORSCOPE_TEST_PG_URL names a PostgreSQL server, on PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_databases import postgres_database
from store_builders import HMAC_KEY

from mirrorscope.store import Store

PG_ENV = "MIRRORSCOPE_TEST_PG_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database on each available backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set")
    yield from postgres_database(admin_url)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated Store on a fresh database, with a fixed HMAC key."""
    with Store(db_url, hmac_key=HMAC_KEY) as opened:
        yield opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file in a private temporary directory."""
    return f"sqlite:///{tmp_path / 'store.db'}"
