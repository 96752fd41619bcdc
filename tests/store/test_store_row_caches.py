"""Row building caches (whole header lists, targets, reasons, small bodies) and the driver-level
insert of transactions change nothing that is stored."""

from __future__ import annotations

import json
from pathlib import Path

from store_builders import request, response, transaction

from mirrorscope.store import Store
from mirrorscope.store import rows as row_module
from mirrorscope.store.redact import redact_body, redact_headers, redact_uri

KEY = b"k" * 32


def _transactions() -> list:
    out = []
    for n in range(12):
        session = f"s{n % 3}"
        headers = (("Host", "api.example.com"), ("Cookie", f"session={session}"),
                   ("Authorization", f"Bearer tok-{n % 2}"), ("User-Agent", "ua/1"),
                   ("Content-Type", "application/json"))
        body = json.dumps({"password": "hunter2", "n": n % 2, "pad": "x" * 200}).encode()
        out.append(transaction(
            f"C{n}", 1,
            req=request(target=f"/login?token=abc{n % 2}&page=1", headers=headers, body=body),
            resp=response(reason="OK" if n % 2 else "Not Found", body=body,
                          headers=(("Content-Type", "application/json"),
                                   ("Set-Cookie", f"session={session}")))))
    out.append(transaction("R1", 1, resp=response()))  # a response without its request
    out.append(transaction("Q1", 1, req=request()))  # a request never answered
    return out


def test_rows_equal_those_of_a_fresh_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(row_module, "_HEADER_LIST_CACHE_ENTRIES", 2)
    monkeypatch.setattr(row_module, "_URI_CACHE_ENTRIES", 2)
    txns = _transactions()
    with Store(f"sqlite:///{tmp_path / 'a.db'}", hmac_key=KEY) as warm:
        rows = [warm._rows.transaction_row(1, t) for t in txns + txns]
        assert len(warm._rows._header_list_cache) <= 2
        assert len(warm._rows._uri_cache) <= 2
    for txn, row in zip(txns + txns, rows, strict=True):
        with Store(f"sqlite:///{tmp_path / 'b.db'}", hmac_key=KEY) as cold:
            assert cold._rows.transaction_row(1, txn) == row
    first = rows[0]
    assert first["request_headers"] == json.dumps(
        [list(p) for p in redact_headers(txns[0].request.headers, KEY)], ensure_ascii=True)
    assert first["uri"] == redact_uri(txns[0].request.target, KEY)
    assert first["request_body_head"] == redact_body(txns[0].request.body.head, KEY)
    assert "hunter2" not in first["request_headers"] + first["uri"]
    assert set(rows[-1]) == set(rows[0])  # every column present, with or without a message


def test_written_transactions_read_back(tmp_path: Path) -> None:
    """The driver-level executemany stores what iter_transactions reads back."""
    txns = _transactions()
    with Store(f"sqlite:///{tmp_path / 'w.db'}", hmac_key=KEY) as store:
        run = store.begin_run(source="x.pcap", sha256="ab" * 32, size=1, started_at=0.0)
        store.write_batch(run, txns)
        store.write_batch(run, txns)  # re-writing is a no-op
        got = list(store.iter_transactions(run_id=run, with_bodies=True))
    assert len(got) == len(txns)
    by_conn = {row["conn_id"]: row for row in got}
    assert by_conn["C1"]["status"] == 200 and by_conn["C1"]["reason"] == "OK"
    assert by_conn["C0"]["reason"] == "Not Found"
    assert by_conn["C0"]["partial"] is False
    assert by_conn["R1"]["method"] is None and by_conn["Q1"]["status"] is None
    assert by_conn["C0"]["request_body_b64"] is not None
