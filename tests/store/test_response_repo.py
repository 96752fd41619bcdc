"""The response ledger: one row per (rule, action, target), upserts overwrite, values checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mirrorscope.store import Store, StoreError
from mirrorscope.store.db import make_engine
from mirrorscope.store.response_repo import ResponseLedger, fire_key


def _record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "rule": "r1", "action": "webhook", "target": "192.0.2.7", "kind": "attack.sqli",
        "first_fired": 100.0, "last_fired": 100.0, "fired_count": 1,
        "finding_ids": [3, 1, 3], "payload": {"reason": "x", "n": 1}, "outcome": "fired",
    }
    record.update(overrides)
    return record


def test_fire_key_is_sha256_of_the_json_triple() -> None:
    expected = hashlib.sha256(b'["r1","webhook","192.0.2.7"]').hexdigest()
    assert fire_key("r1", "webhook", "192.0.2.7") == expected
    assert fire_key("a,b", "c", "d") != fire_key("a", "b,c", "d")


def test_upsert_and_read_back(store: Store, db_url: str) -> None:
    with ResponseLedger(db_url) as ledger:
        assert ledger.firings() == []
        keys = ledger.upsert([_record(), _record(action="nginx_deny", outcome="failed")])
        assert sorted(keys) == sorted([fire_key("r1", "webhook", "192.0.2.7"),
                                       fire_key("r1", "nginx_deny", "192.0.2.7")])
        rows = sorted(ledger.firings(), key=lambda r: r["action"], reverse=True)
        assert [(r["action"], r["outcome"]) for r in rows] == [("webhook", "fired"),
                                                              ("nginx_deny", "failed")]
        assert rows[0]["finding_ids"] == [1, 3]  # deduplicated, sorted
        assert rows[0]["payload"] == {"reason": "x", "n": 1}
        assert rows[0]["fire_key"] == fire_key("r1", "webhook", "192.0.2.7")

        # Same key again: the row is overwritten, never duplicated.
        ledger.upsert([_record(action="nginx_deny", outcome="fired", fired_count=2,
                               last_fired=200.0, finding_ids=[1, 3, 4])])
        rows = ledger.firings()
        assert len(rows) == 2
        nginx = next(r for r in rows if r["action"] == "nginx_deny")
        assert (nginx["outcome"], nginx["fired_count"], nginx["last_fired"],
                nginx["finding_ids"]) == ("fired", 2, 200.0, [1, 3, 4])
        assert sorted(r["action"] for r in ledger.firings(rule="r1")) == ["nginx_deny",
                                                                          "webhook"]
        assert ledger.firings(rule="other") == []


def test_shared_engine_is_not_disposed(store: Store, db_url: str) -> None:
    engine = make_engine(db_url, create=False)
    try:
        with ResponseLedger(engine) as ledger:
            ledger.upsert([_record()])
        with engine.connect() as conn:  # still usable after the ledger closed
            assert conn.execute(text("SELECT count(*) FROM response_firings")).scalar() == 1
    finally:
        engine.dispose()


def test_wire_text_is_stored_safely(store: Store, db_url: str) -> None:
    with ResponseLedger(db_url) as ledger:
        ledger.upsert([_record(target="evil\x00\udcff", payload={"k": "v\x00"})])
        (row,) = ledger.firings()
    assert "\x00" not in row["target"] and "\\x00" in row["target"]
    assert json.dumps(row["payload"])  # a JSON object again


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"fired_count": -1}, "fired_count"),
    ({"fired_count": True}, "fired_count"),
    ({"first_fired": float("nan")}, "finite"),
    ({"finding_ids": ["1"]}, "finding_ids"),
    ({"payload": [1, 2]}, "payload"),
    ({"payload": {"x": float("inf")}}, "JSON"),
])
def test_bad_records_are_refused(store: Store, db_url: str, overrides: dict[str, object],
                                 needle: str) -> None:
    with ResponseLedger(db_url) as ledger:
        with pytest.raises(StoreError, match=needle):
            ledger.upsert([_record(**overrides)])
        assert ledger.firings() == []


def test_missing_field_is_refused(store: Store, db_url: str) -> None:
    record = _record()
    del record["outcome"]
    with ResponseLedger(db_url) as ledger, pytest.raises(StoreError, match="outcome"):
        ledger.upsert([record])


def test_refuses_a_database_without_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    create_engine(url).connect().close()  # an empty SQLite file
    with pytest.raises(StoreError, match="db upgrade"):
        ResponseLedger(url)
    with pytest.raises(StoreError):
        ResponseLedger(f"sqlite:///{tmp_path / 'missing.db'}")
