"""Store round trips on every backend: write model objects, read public dicts."""

from __future__ import annotations

import base64
import threading

import pytest
from sqlalchemy import select
from store_builders import CLIENT, SERVER, closed, opened, request, response, transaction

from mirrorscope.model import Anomaly, Direction, StreamData
from mirrorscope.store import Store, StoreError
from mirrorscope.store.models import Connection

SHA = "5" * 64
CONTRACT_KEYS = {
    "conn_id",
    "trans_depth",
    "source",
    "ts",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "method",
    "host",
    "uri",
    "version",
    "status",
    "reason",
    "request_body_len",
    "response_body_len",
    "request_body_sha256",
    "response_body_sha256",
    "user_agent",
    "request_content_type",
    "response_content_type",
    "anomalies",
    "partial",
}


def _begin(store: Store, sha: str = SHA, source: str = "capture.pcap") -> int:
    return store.begin_run(source=source, sha256=sha, size=1234, started_at=1_700_000_000.0)


def _batch() -> list:
    """Two connections, three transactions, three anomalies (two identical)."""
    return [
        opened("C1", 100.0),
        opened("C2", 100.1, partial=True),
        transaction(
            "C1",
            1,
            req=request(
                method="POST",
                target="/api/orders",
                headers=(
                    ("Host", "shop.example"),
                    ("User-Agent", "tester/1"),
                    ("Content-Type", "application/json"),
                ),
                body=b'{"qty":2}',
                ts=100.2,
            ),
            resp=response(status=201, reason="Created", body=b'{"id":7}', ts=100.3),
            anomalies=("http.obs_fold",),
        ),
        transaction("C1", 2, req=request(ts=100.4), resp=None),  # unanswered
        transaction("C2", 1, req=None, resp=response(status=404, reason="Not Found", ts=100.15)),
        Anomaly("http.obs_fold", 100.2, "C1", Direction.ORIG, "folded header"),
        Anomaly("tcp.gap", 100.5, "C2", Direction.RESP, "lost 10 bytes"),
        Anomaly("tcp.gap", 100.5, "C2", Direction.RESP, "lost 10 bytes"),
        closed("C1", 101.0),
    ]


def test_round_trip(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, _batch())
    store.finish_run(
        run_id,
        status="complete",
        stats={"packets": 42, "bytes": 4242, "flows": 2},
        ts_first=100.0,
        ts_last=101.0,
        finished_at=1_700_000_010.0,
    )
    rows = list(store.iter_transactions())
    assert [(r["conn_id"], r["trans_depth"]) for r in rows] == [("C2", 1), ("C1", 1), ("C1", 2)]
    for row in rows:
        assert set(row) == CONTRACT_KEYS
    orphan, post, unanswered = rows
    assert post == {
        "conn_id": "C1",
        "trans_depth": 1,
        "source": "capture.pcap",
        "ts": 100.2,
        "client_ip": CLIENT[0],
        "client_port": CLIENT[1],
        "server_ip": SERVER[0],
        "server_port": SERVER[1],
        "method": "POST",
        "host": "shop.example",
        "uri": "/api/orders",
        "version": "HTTP/1.1",
        "status": 201,
        "reason": "Created",
        "request_body_len": 9,
        "response_body_len": 8,
        "request_body_sha256": None,
        "response_body_sha256": "ab" * 32,
        "user_agent": "tester/1",
        "request_content_type": "application/json",
        "response_content_type": "application/json",
        "anomalies": ["http.obs_fold"],
        "partial": False,
    }
    # Orphan response: ts and status from the response, nothing from a request.
    assert orphan["ts"] == 100.15
    assert (orphan["method"], orphan["uri"], orphan["version"]) == (None, None, None)
    assert (orphan["status"], orphan["request_body_len"]) == (404, None)
    # Unanswered request: no response fields.
    assert unanswered["method"] == "GET"
    assert unanswered["uri"] == "/api/items?id=1"
    assert (unanswered["status"], unanswered["reason"], unanswered["response_body_len"]) == (
        None,
        None,
        None,
    )

    (run,) = store.runs()
    assert run["id"] == run_id
    assert run["status"] == "complete"
    assert (run["packets"], run["bytes"], run["flows"], run["transactions"]) == (42, 4242, 2, 3)
    assert run["stats"] == {"packets": 42, "bytes": 4242, "flows": 2}
    assert (run["ts_first"], run["ts_last"], run["finished_at"]) == (
        100.0,
        101.0,
        1_700_000_010.0,
    )
    assert (run["source"], run["source_sha256"], run["size"]) == ("capture.pcap", SHA, 1234)
    assert store.anomaly_counts(run_id) == {"http.obs_fold": 1, "tcp.gap": 2}
    assert store.find_completed_run(SHA)["id"] == run_id
    assert store.find_completed_run("6" * 64) is None


def test_bodies_are_returned_as_base64(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, _batch())
    rows = {(r["conn_id"], r["trans_depth"]): r for r in store.iter_transactions(with_bodies=True)}
    post = rows[("C1", 1)]
    assert post["request_body_b64"] == base64.b64encode(b'{"qty":2}').decode()
    assert post["response_body_b64"] == base64.b64encode(b'{"id":7}').decode()
    assert rows[("C1", 2)]["request_body_b64"] is None  # empty body
    assert rows[("C1", 2)]["response_body_b64"] is None  # no response
    assert set(post) == CONTRACT_KEYS | {"request_body_b64", "response_body_b64"}


def test_limit_and_run_filter(store: Store) -> None:
    first = _begin(store, "1" * 64, "one.pcap")
    store.write_batch(first, [transaction("A", 1, req=request(ts=5.0))])
    store.finish_run(first, status="complete", stats={}, finished_at=1.0)
    second = _begin(store, "2" * 64, "two.pcap")
    store.write_batch(
        second,
        [transaction("B", 1, req=request(ts=1.0)), transaction("B", 2, req=request(ts=9.0))],
    )
    assert [r["conn_id"] for r in store.iter_transactions()] == ["B", "A", "B"]
    assert [r["trans_depth"] for r in store.iter_transactions(run_id=second)] == [1, 2]
    assert [r["source"] for r in store.iter_transactions(run_id=first)] == ["one.pcap"]
    assert len(list(store.iter_transactions(limit=2))) == 2
    assert list(store.iter_transactions(limit=0)) == []
    assert store.anomaly_counts() == {}


def test_ties_are_ordered_by_conn_id_then_depth(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(
        run_id,
        [
            transaction("Cb", 2, req=request(ts=7.0)),
            transaction("Cb", 1, req=request(ts=7.0)),
            transaction("Ca", 3, req=request(ts=7.0)),
        ],
    )
    keys = [(r["conn_id"], r["trans_depth"]) for r in store.iter_transactions()]
    assert keys == [("Ca", 3), ("Cb", 1), ("Cb", 2)]


def _snapshot(store: Store, run_id: int) -> tuple:
    rows = list(store.iter_transactions(with_bodies=True))
    return rows, store.anomaly_counts(run_id), store.anomaly_counts()


def test_writing_the_same_batch_twice_changes_nothing(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, _batch())
    before = _snapshot(store, run_id)
    store.write_batch(run_id, _batch())
    assert _snapshot(store, run_id) == before
    assert len(before[0]) == 3
    assert before[1] == {"http.obs_fold": 1, "tcp.gap": 2}


def test_duplicates_within_a_batch_are_stored_once(store: Store) -> None:
    run_id = _begin(store)
    txn = transaction("C1", 1, req=request())
    store.write_batch(run_id, [opened("C1"), opened("C1"), txn, txn, closed("C1"), closed("C1")])
    assert len(list(store.iter_transactions())) == 1


def test_transaction_may_follow_its_connection_in_a_later_batch(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, [opened("C9", 50.0)])
    store.write_batch(run_id, [transaction("C9", 1, req=request(ts=51.0))])
    store.write_batch(run_id, [closed("C9", 52.0)])
    (row,) = store.iter_transactions()
    assert (row["client_ip"], row["server_port"]) == (CLIENT[0], SERVER[1])


def _connection_row(store: Store, conn_id: str) -> dict:
    with store._engine.connect() as conn:  # test-only peek at the table
        return dict(
            conn.execute(select(Connection.__table__).where(Connection.conn_id == conn_id))
            .one()
            ._mapping
        )


def test_connection_closed_updates_the_connection(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, [opened("C1", 10.0, partial=True)])
    store.write_batch(run_id, [closed("C1", 20.0)])
    row = _connection_row(store, "C1")
    assert row["ts_start"] == 10.0
    assert row["ts_end"] == 20.0
    assert row["partial"] is True
    assert row["close_reason"] == "fin"
    assert (row["orig_bytes"], row["resp_bytes"], row["orig_missed"], row["resp_missed"]) == (
        111,
        222,
        3,
        4,
    )
    assert row["packets"] == 55
    assert (row["client_ip"], row["client_port"]) == CLIENT


def test_connection_opened_after_its_transaction_fixes_the_row(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, [transaction("C1", 1, req=request(ts=12.0))])
    store.write_batch(run_id, [opened("C1", 10.0, partial=True)])
    row = _connection_row(store, "C1")
    assert (row["ts_start"], row["partial"]) == (10.0, True)


def test_rerun_of_an_incomplete_run_replaces_it(store: Store) -> None:
    crashed = _begin(store)
    store.write_batch(crashed, _batch())
    store.write_batch(
        crashed,
        [transaction("C7", 1, req=request(ts=300.0)), Anomaly("tcp.gap", 300.0, "C7")],
    )
    # The process died: no finish_run.  The same capture is processed again.
    rerun = _begin(store)
    assert rerun == crashed
    assert list(store.iter_transactions()) == []
    assert store.anomaly_counts() == {}
    assert store.runs()[0]["status"] == "running"
    store.write_batch(rerun, _batch())
    store.finish_run(rerun, status="complete", stats={}, finished_at=2.0)
    after_rerun = _snapshot(store, rerun)
    assert [run["id"] for run in store.runs()] == [rerun]
    assert store.runs()[0]["transactions"] == 3
    assert after_rerun[1] == {"http.obs_fold": 1, "tcp.gap": 2}
    assert {(r["conn_id"], r["trans_depth"]) for r in after_rerun[0]} == {
        ("C1", 1),
        ("C1", 2),
        ("C2", 1),
    }


def test_rerun_of_a_failed_run_replaces_it(store: Store) -> None:
    failed = _begin(store)
    store.write_batch(failed, [transaction("C1", 1, req=request())])
    store.finish_run(failed, status="failed", stats={}, error="boom", finished_at=3.0)
    assert store.runs()[0]["error"] == "boom"
    assert store.find_completed_run(SHA) is None
    again = _begin(store, source="renamed.pcap")
    assert again == failed
    (run,) = store.runs()
    assert (run["status"], run["error"], run["source"]) == ("running", None, "renamed.pcap")
    assert list(store.iter_transactions()) == []


def test_forced_rerun_of_a_completed_run_replaces_it(store: Store) -> None:
    done = _begin(store)
    store.write_batch(done, _batch())
    store.finish_run(done, status="complete", stats={}, finished_at=1.0)
    again = _begin(store)
    assert again == done
    assert [run["status"] for run in store.runs()] == ["running"]
    assert list(store.iter_transactions()) == []
    store.write_batch(again, _batch())
    assert len(list(store.iter_transactions(run_id=again))) == 3
    assert store.anomaly_counts(again) == {"http.obs_fold": 1, "tcp.gap": 2}


def test_other_captures_are_untouched_by_a_rerun(store: Store) -> None:
    keep = _begin(store, "1" * 64)
    store.write_batch(keep, [transaction("K", 1, req=request()), Anomaly("tcp.gap", 1.0)])
    store.finish_run(keep, status="complete", stats={}, finished_at=1.0)
    crashed = _begin(store, "2" * 64)
    store.write_batch(crashed, [transaction("X", 1, req=request())])
    _begin(store, "2" * 64)
    assert [row["conn_id"] for row in store.iter_transactions()] == ["K"]
    assert store.anomaly_counts() == {"tcp.gap": 1}


def test_finish_counts_flows_when_stats_lack_them(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, [opened("C1"), opened("C2"), opened("C3")])
    store.finish_run(run_id, status="complete", stats={"packets": 9}, finished_at=1.0)
    (run,) = store.runs()
    assert (run["flows"], run["packets"], run["bytes"], run["transactions"]) == (3, 9, 0, 0)


def test_misuse_raises_store_error(store: Store) -> None:
    run_id = _begin(store)
    with pytest.raises(StoreError, match="cannot store a StreamData"):
        store.write_batch(run_id, [StreamData("C1", Direction.ORIG, 1.0, b"x")])
    with pytest.raises(StoreError, match="no capture run"):
        store.write_batch(run_id + 100, [opened("C1")])
    with pytest.raises(StoreError, match="status"):
        store.finish_run(run_id, status="running", stats={}, finished_at=1.0)
    with pytest.raises(StoreError, match="no message"):
        store.write_batch(run_id, [transaction("C1", 1)])
    with pytest.raises(StoreError, match="limit"):
        store.iter_transactions(limit=-1)
    store.finish_run(run_id, status="complete", stats={}, finished_at=1.0)
    with pytest.raises(StoreError, match="complete"):
        store.write_batch(run_id, [opened("C1")])
    with pytest.raises(StoreError, match="no capture run"):
        store.finish_run(run_id + 100, status="complete", stats={}, finished_at=1.0)


def test_an_invalid_item_rejects_the_whole_batch(store: Store) -> None:
    run_id = _begin(store)
    with pytest.raises(StoreError):
        store.write_batch(run_id, [opened("C1"), transaction("C1", 1)])  # second is invalid
    assert list(store.iter_transactions()) == []


def test_empty_batch_is_accepted(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, [])
    assert list(store.iter_transactions()) == []


def test_security_anomalies_are_flagged(store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(
        run_id,
        [
            Anomaly("http.smuggling_te_cl", 1.0, "C1", Direction.ORIG, "TE and CL"),
            Anomaly("tcp.gap", 1.0, None, None, ""),
        ],
    )
    from mirrorscope.store.models import AnomalyRow

    with store._engine.connect() as conn:
        flags = dict(conn.execute(select(AnomalyRow.kind, AnomalyRow.security)).all())
    assert flags == {"http.smuggling_te_cl": True, "tcp.gap": False}


def test_concurrent_writers_on_one_database(db_url: str, store: Store) -> None:
    # Two Stores (as two sensor workers would have) write interleaved batches at once.
    other = Store(db_url, hmac_key=b"k")
    try:
        runs = [_begin(store, "1" * 64), _begin(other, "2" * 64)]
        errors: list[BaseException] = []

        def work(writer: Store, run_id: int, prefix: str) -> None:
            try:
                for index in range(20):
                    conn_id = f"{prefix}{index}"
                    writer.write_batch(
                        run_id,
                        [
                            opened(conn_id),
                            transaction(conn_id, 1, req=request(ts=float(index))),
                            Anomaly("tcp.gap", float(index), conn_id),
                        ],
                    )
            except BaseException as exc:  # surfaced below, in the test's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(store, runs[0], "A")),
            threading.Thread(target=work, args=(other, runs[1], "B")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(list(store.iter_transactions(run_id=runs[0]))) == 20
        assert len(list(other.iter_transactions(run_id=runs[1]))) == 20
        assert store.anomaly_counts() == {"tcp.gap": 40}
    finally:
        other.close()


def test_reopening_keeps_the_data(db_url: str, store: Store) -> None:
    run_id = _begin(store)
    store.write_batch(run_id, _batch())
    store.close()
    with Store(db_url, upgrade=False) as reopened:
        assert len(list(reopened.iter_transactions())) == 3
        assert reopened.anomaly_counts(run_id) == {"http.obs_fold": 1, "tcp.gap": 2}


def test_in_memory_sqlite_works() -> None:
    with Store("sqlite://") as memory:
        run_id = _begin(memory)
        memory.write_batch(run_id, _batch())
        assert len(list(memory.iter_transactions())) == 3
