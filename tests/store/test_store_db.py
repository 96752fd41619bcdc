"""SQLite file safety: 0600, symlinks refused, WAL and foreign keys on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from store_builders import opened

from mirrorscope.store import Store, StoreError, make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_database_and_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with Store(f"sqlite:///{path}") as store:
        run_id = store.begin_run(source="x.pcap", sha256="a" * 64, size=1, started_at=1.0)
        store.write_batch(run_id, [opened("C1")])
        assert _mode(path) == 0o600
        wal = Path(f"{path}-wal")
        assert wal.exists()
        assert _mode(wal) == 0o600


def test_pragmas_are_set(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    finally:
        engine.dispose()


def test_symlinked_database_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    link = tmp_path / "link.db"
    link.symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        make_engine(f"sqlite:///{link}")
    assert target.read_bytes() == b"precious"


def test_dangling_symlink_is_refused_and_not_followed(tmp_path: Path) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(StoreError, match="symbolic link"):
        make_engine(f"sqlite:///{link}")
    assert not (tmp_path / "would-be-created").exists()


def test_symlinked_wal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    Path(f"{path}-wal").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="symbolic link"):
        make_engine(f"sqlite:///{path}")


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'absent' / 'db.sqlite'}")
    assert not (tmp_path / "absent").exists()


def test_world_writable_directory_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match="world-writable"):
        make_engine(f"sqlite:///{shared / 'db.sqlite'}")


def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch()
    path.chmod(0o666)
    make_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o600


def test_existing_0640_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    make_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o640


def test_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"not a regular file|cannot open"):
        make_engine(f"sqlite:///{tmp_path / 'dir.db'}")


def test_unsupported_backends_are_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        make_engine("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        make_engine("not a url")


def test_relative_path_is_created_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_engine("sqlite:///relative.db").dispose()
    assert _mode(tmp_path / "relative.db") == 0o600


def test_umask_cannot_widen_the_mode(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        make_engine(f"sqlite:///{tmp_path / 'u.db'}").dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "u.db") == 0o600


def test_readers_do_not_create_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StoreError, match="does not exist"):
        make_engine(f"sqlite:///{path}", create=False)
    with pytest.raises(StoreError, match="does not exist"):
        Store(f"sqlite:///{path}", upgrade=False)
    assert not path.exists()
