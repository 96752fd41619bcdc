"""Rows built ahead by replay workers (store.rows.prepare_rows) are what write_batch stores."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from store_builders import request, response, transaction

from mirrorscope.store import Store, StoreError
from mirrorscope.store.rows import PreparedRows, prepare_rows

KEY = b"k" * 32


def _begin(store: Store) -> int:
    return store.begin_run(source="t.pcap", sha256="ab" * 32, size=1, started_at=0.0)


def test_prepared_rows_are_stored_as_given_and_equal_the_stores_own(tmp_path: Path) -> None:
    txns = [transaction(f"C{n}", 1, req=request(target=f"/a?token=t{n}"), resp=response())
            for n in range(3)]
    with Store(f"sqlite:///{tmp_path / 'own.db'}", hmac_key=KEY) as own:
        run = _begin(own)
        own.write_batch(run, txns)
        expected = [t["uri"] for t in own.iter_transactions(run_id=run)]
    with Store(f"sqlite:///{tmp_path / 'prep.db'}", hmac_key=KEY) as store:
        run = _begin(store)
        prepared = prepare_rows(store.row_builder(), run, txns)
        assert [row[prepared.keys.index("uri")] for row in prepared.rows] == expected
        # Mark the middle row: the store must insert what it was given, not rebuild it.
        marked = list(prepared.rows[1])
        marked[prepared.keys.index("uri")] = "/prepared"
        rows = [prepared.rows[0], tuple(marked), None]  # the last one: built by the store
        store.write_batch(run, [*txns, PreparedRows(prepared.keys, rows)])
        got = [t["uri"] for t in store.iter_transactions(run_id=run)]
    assert got == [expected[0], "/prepared", expected[2]]
    assert "t1" not in expected[1]  # redacted in the worker as in the store


def test_a_transaction_without_messages_is_left_to_the_store_which_refuses_it(
        tmp_path: Path) -> None:
    empty = transaction("E1", 1)
    with Store(f"sqlite:///{tmp_path / 'e.db'}", hmac_key=KEY) as store:
        run = _begin(store)
        prepared = prepare_rows(store.row_builder(), run, [empty])
        assert prepared.rows == [None]
        with pytest.raises(StoreError, match="no message"):
            store.write_batch(run, [empty, prepared])


def test_prepared_rows_that_do_not_match_their_transactions_are_refused(tmp_path: Path) -> None:
    txn = transaction("C1", 1, req=request(), resp=response())
    with Store(f"sqlite:///{tmp_path / 'm.db'}", hmac_key=KEY) as store:
        run = _begin(store)
        prepared = prepare_rows(store.row_builder(), run, [txn])
        twice = dataclasses.replace(prepared, rows=prepared.rows * 2)
        with pytest.raises(StoreError, match="2 prepared rows for 1 transactions"):
            store.write_batch(run, [txn, twice])
