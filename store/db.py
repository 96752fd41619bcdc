"""Engine construction: safe SQLite files (0600, no symlinks, WAL) and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

# How long a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE: a writer
# takes the write lock up front (waiting via busy_timeout) instead of failing with
# SQLITE_BUSY when it upgrades a read snapshot that another writer made stale.
WRITE_OPTION = "mirrorscope_write"

# Mode bits that must not be set on an existing database file: group write/execute and
# anything for others.  0600 and 0640 are accepted; anything wider is tightened to 0600.
_TOO_OPEN = stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO


class StoreError(Exception):
    """The store was misused or the database cannot be used safely."""


def make_engine(url: str, *, create: bool = True) -> Engine:
    """Build an Engine for a SQLite file (created 0600, symlinks refused) or PostgreSQL.

    create=False: a missing SQLite file is an error instead of being created (readers).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, create)
    if backend == "postgresql":
        return _postgresql_engine(parsed)
    raise StoreError(
        f"unsupported database {backend!r}: use sqlite:///path or postgresql+psycopg://"
    )


def _postgresql_engine(url: URL) -> Engine:
    """PostgreSQL through psycopg 3 (a bare postgresql:// would pick psycopg2)."""
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # hide_parameters: statement parameters are wire data; keep them out of exception
    # messages and logs, where redaction cannot reach.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _sqlite_engine(url: URL, create: bool) -> Engine:
    """A SQLite engine in WAL mode with foreign keys on and SQLAlchemy-controlled BEGIN."""
    database = url.database or ""
    if database in ("", ":memory:"):
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(
                ":memory:", check_same_thread=False, isolation_level=None
            ),
            poolclass=StaticPool,
            hide_parameters=True,
        )
    else:
        path = Path(database)
        prepare_sqlite_file(path, create=create)

        def connect() -> sqlite3.Connection:
            # Re-check on every new connection: the path may have been swapped since.
            _refuse_symlinks(path)
            # mode=rw: SQLite must open the file we created, never create one itself.
            uri = f"file:{quote(str(path.absolute()))}?mode=rw"
            return sqlite3.connect(
                uri,
                uri=True,
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,  # autocommit at the driver: SQLAlchemy emits BEGIN
            )

        engine = create_engine("sqlite://", creator=connect, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection PRAGMAs (they cannot run inside a transaction)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode; only a power loss can
        # drop the last commits, which a replay recovers.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA trusted_schema = OFF")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    """Emit BEGIN ourselves so DDL and SELECTs are transactional (pysqlite skips them)."""
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def prepare_sqlite_file(path: Path, *, create: bool = True) -> None:
    """Create the database file 0600 (or vet an existing one); refuse symlinks."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise StoreError(f"database directory does not exist: {parent}")
    parent_mode = parent.stat().st_mode
    if parent_mode & stat.S_IWOTH and not parent_mode & stat.S_ISVTX:
        raise StoreError(
            f"refusing database in world-writable directory without sticky bit: {parent}"
        )
    _refuse_symlinks(path)
    if not create and not path.exists():
        raise StoreError(
            f"database file does not exist: {path} (create it with `mirrorscope db upgrade`)"
        )
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        _vet_existing_file(path)
    except OSError as exc:
        raise StoreError(f"cannot create database file {path}: {exc.strerror}") from exc
    else:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            _vet_existing_file(companion)


def _refuse_symlinks(path: Path) -> None:
    """Refuse a symlinked database path or symlinked -wal/-shm/-journal companions."""
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        if candidate.is_symlink():
            raise StoreError(
                f"refusing database path {candidate}: it is a symbolic link "
                "(give the real path of the file instead)"
            )


def _vet_existing_file(path: Path) -> None:
    """An existing database must be a regular file we own; tighten a too-open mode."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot open database file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"database path is not a regular file: {path}")
        if info.st_uid != os.geteuid():
            raise StoreError(
                f"database file {path} is owned by uid {info.st_uid}, not by this user "
                f"(uid {os.geteuid()}): refusing to use it"
            )
        if info.st_mode & _TOO_OPEN:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
