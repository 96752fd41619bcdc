"""Plumbing both repositories share: write transactions with retries, schema verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

from sqlalchemy import Engine, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mirrorscope.store import migrate
from mirrorscope.store.db import WRITE_OPTION, StoreError, make_engine

T = TypeVar("T")

WRITE_ATTEMPTS = 4
RETRY_BASE_DELAY = 0.05  # seconds, doubled per attempt


def describe(exc: SQLAlchemyError) -> str:
    """A one-line description of a database error (statement parameters stay hidden)."""
    original = getattr(exc, "orig", None) or exc
    message = str(original).strip().splitlines()
    return f"{type(original).__name__}: {message[0] if message else ''}"


@contextmanager
def read_errors() -> Iterator[None]:
    """Database failures while reading surface as StoreError."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(f"database read failed: {describe(exc)}") from exc


def run_write(engine: Engine, operation: Callable[[DbConnection], T]) -> T:
    """Run operation in one write transaction, retrying transient lock failures."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            options = {WRITE_OPTION: True}
            with engine.connect().execution_options(**options) as conn, conn.begin():
                return operation(conn)
        except OperationalError as exc:
            if attempt == WRITE_ATTEMPTS - 1:
                raise StoreError(
                    f"database write failed after {WRITE_ATTEMPTS} attempts: {describe(exc)}"
                ) from exc
            time.sleep(RETRY_BASE_DELAY * 2**attempt)
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {describe(exc)}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def dialect_insert(postgres: bool, table: type[Any]) -> Insert:
    """The dialect's INSERT, which offers ON CONFLICT."""
    return postgresql.insert(table) if postgres else sqlite.insert(table)


def schema_error(current: str | None, head: str) -> StoreError:
    """Why a database at revision ``current`` (not head, not brand new) cannot be used."""
    if current is None:
        return StoreError("database holds tables but no mirrorscope schema revision: "
                          "refusing to write to a database that is not mirrorscope's")
    if current not in migrate.known_revisions():
        return StoreError(f"database schema revision {current!r} is newer than this mirrorscope "
                          f"(which knows up to {head!r}): upgrade mirrorscope")
    return StoreError(f"database schema is behind (at {current!r}, needs {head!r}): "
                      "run `mirrorscope db upgrade`")


def require_schema_at_head(engine: Engine) -> None:
    """Refuse (StoreError) a database that is unreachable, empty, behind or newer than us.

    For readers and side tables that never create or migrate a database themselves.
    """
    try:
        current = migrate.current_revision(engine)
        with engine.connect() as conn:
            empty = not migrate.has_user_tables(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open database: {describe(exc)}") from exc
    head = migrate.head_revision()
    if current == head:
        return
    if current is None and empty:
        raise StoreError("database has no mirrorscope schema: run `mirrorscope db upgrade`")
    raise schema_error(current, head)


class ExistingDatabase:
    """An engine over a database that exists, with its schema at head (readers' base)."""

    def __init__(self, url: str) -> None:
        """Open an existing database (never create one); refuse a schema not at head."""
        self._engine: Engine = make_engine(url, create=False)
        self._postgres = self._engine.dialect.name == "postgresql"
        try:
            require_schema_at_head(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        """Release every pooled database connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
