"""Programmatic Alembic: upgrade to head, and tell where a database's schema stands."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from mirrorscope.store.db import WRITE_OPTION, StoreError, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrades
# (several sensors starting at once against one fresh database).
_PG_UPGRADE_LOCK = 0x6D736D69  # "msmi"


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migrations, independent of the cwd."""
    config = Config()
    # ConfigParser interpolates '%': escape it in the path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


@functools.cache  # the scripts ship with the code; a live sensor may not read them after its
def head_revision() -> str:  # privilege drop (a 0700 checkout), so they are read once, early
    """The revision the code expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migration scripts found")
    return head


def known_revisions() -> frozenset[str]:
    """Every revision this code's migration scripts know about."""
    return _known_revisions()


@functools.cache
def _known_revisions() -> frozenset[str]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None when it has never been migrated."""
    with engine.connect() as conn:
        return _current_revision(conn)


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def has_user_tables(conn: Connection) -> bool:
    """True when the database holds any table at all (ours or someone else's)."""
    return bool(inspect(conn).get_table_names())


def upgrade(engine_or_url: Engine | str) -> str:
    """Run `alembic upgrade head` in one transaction; return the resulting revision."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
            current = _current_revision(conn)
            if current is not None and current not in known_revisions():
                raise StoreError(
                    f"database schema revision {current!r} is newer than this mirrorscope "
                    "knows: upgrade mirrorscope"
                )
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            return _current_revision(conn) or ""
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
