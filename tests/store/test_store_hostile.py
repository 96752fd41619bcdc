"""Hostile wire text: NUL, lone surrogates, huge strings and SQL metacharacters (D1/B16)."""

from __future__ import annotations

from sqlalchemy import inspect
from store_builders import opened, request, response, transaction

from mirrorscope.model import Anomaly, Direction
from mirrorscope.store import Store
from mirrorscope.store.sanitize import MAX_TEXT_CHARS, TRUNCATION_MARK, safe_text

SQL = "'\";--"
MIB = 1024 * 1024


def test_safe_text_escapes_nul_and_surrogates() -> None:
    assert safe_text("a\x00b") == "a\\x00b"
    assert safe_text("caf\u00e9\udcff\x00") == "caf\u00e9\\udcff\\x00"
    assert safe_text("plain") == "plain"
    assert safe_text("\ud800") == "\\ud800"


def test_safe_text_caps_length() -> None:
    capped = safe_text("x" * (MAX_TEXT_CHARS + 10))
    assert len(capped) == MAX_TEXT_CHARS
    assert capped.endswith(TRUNCATION_MARK)


def test_hostile_strings_round_trip(store: Store) -> None:
    run_id = store.begin_run(source=f"evil{SQL}.pcap", sha256="e" * 64, size=1, started_at=1.0)
    huge = "A" * MIB
    store.write_batch(
        run_id,
        [
            opened(f"C{SQL}\x00"),
            transaction(
                f"C{SQL}\x00",
                1,
                req=request(
                    method=f"GE\x00T{SQL}",
                    target=f"/p\udcff/{SQL}/\x00?q={huge}",
                    headers=(
                        ("Host", f"h\x00st{SQL}\u00ff"),
                        ("User-Agent", f"ua\udcff{SQL}"),
                        (f"X-{SQL}\x00", "v\x00"),
                    ),
                    body=b"\x00\xff" + SQL.encode(),
                ),
                resp=response(reason=f"O\x00K{SQL}", headers=(("Content-Type", f"t/\x00{SQL}"),)),
            ),
            Anomaly(f"http.weird{SQL}", 1.0, f"C{SQL}\x00", Direction.ORIG, f"d\x00{SQL}\udcff"),
        ],
    )
    (row,) = store.iter_transactions(with_bodies=True)
    assert row["conn_id"] == f"C{SQL}\\x00"
    assert row["method"] == f"GE\\x00T{SQL}"
    assert row["uri"] == f"/p\\udcff/{SQL}/\\x00?q={huge}"
    assert row["host"] == f"h\\x00st{SQL}\u00ff"
    assert row["user_agent"] == f"ua\\udcff{SQL}"
    assert row["reason"] == f"O\\x00K{SQL}"
    assert row["response_content_type"] == f"t/\\x00{SQL}"
    assert row["source"] == f"evil{SQL}.pcap"
    assert row["request_body_b64"] == "AP8nIjstLQ=="  # b"\x00\xff'\";--"
    assert store.anomaly_counts(run_id) == {f"http.weird{SQL}": 1}
    # The schema is intact and still writable.
    assert {"transactions", "anomalies"} <= set(inspect(store._engine).get_table_names())
    store.write_batch(run_id, [transaction("after", 1, req=request(ts=2.0))])
    assert len(list(store.iter_transactions())) == 2


def test_megabyte_header_values_are_stored(store: Store) -> None:
    run_id = store.begin_run(source="big.pcap", sha256="b" * 64, size=1, started_at=1.0)
    value = "\u00e9" * MIB
    store.write_batch(
        run_id,
        [transaction("C1", 1, req=request(headers=(("Host", "h"), ("User-Agent", value))))],
    )
    (row,) = store.iter_transactions()
    assert row["user_agent"] == value
