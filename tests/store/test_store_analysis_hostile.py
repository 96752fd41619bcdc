"""AnalysisStore with hostile wire text: NUL, lone surrogates, SQL metacharacters, size."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from mirrorscope.model import EndpointKey, EndpointSummary, Finding
from mirrorscope.store import AnalysisStore, Store
from mirrorscope.store.analysis_repo import MAX_JSON_DEPTH, TOO_DEEP_MARK

SQL = "'\";--"


@pytest.fixture
def analysis(store: Store, db_url: str) -> Iterator[AnalysisStore]:
    """An AnalysisStore on the database the `store` fixture migrated."""
    with AnalysisStore(db_url) as opened:
        yield opened


def _run(store: Store) -> int:
    return store.begin_run(source="evil.pcap", sha256="e" * 64, size=1, started_at=1.0)


def test_hostile_endpoint_text_is_escaped(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    key = EndpointKey(f"h\x00st{SQL}\udcff", f"GE\x00T{SQL}", f"/p\udcff/{SQL}/\x00")
    doc = {
        f"k\x00{SQL}": [f"v\udcff{SQL}", {"inner\x00": "\x00"}],
        "ratio": float("nan"),
        "big": float("inf"),
        7: "int key",
        "set": ("a", "b"),
        "fine": {"caf\u00e9": 1.5, "ok": True, "none": None},
    }
    analysis.replace_endpoints(run_id, [EndpointSummary(key, 2, 1.0, 2.0, doc)])
    (row,) = analysis.endpoint_observations()
    assert row["host"] == f"h\\x00st{SQL}\\udcff"
    assert row["method"] == f"GE\\x00T{SQL}"
    assert row["path_template"] == f"/p\\udcff/{SQL}/\\x00"
    assert row["doc"] == {
        f"k\\x00{SQL}": [f"v\\udcff{SQL}", {"inner\\x00": "\\x00"}],
        "ratio": "nan",
        "big": "inf",
        "7": "int key",
        "set": ["a", "b"],
        "fine": {"caf\u00e9": 1.5, "ok": True, "none": None},
    }
    # Whatever came back encodes as UTF-8: no lone surrogate survived.
    repr(row).encode("utf-8")


def test_keys_that_escaping_makes_equal_merge(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    raw = EndpointKey("h\x00", "GET", "/a")
    escaped_already = EndpointKey("h\\x00", "GET", "/a")
    analysis.replace_endpoints(
        run_id,
        [EndpointSummary(raw, 2, 5.0, 6.0), EndpointSummary(escaped_already, 3, 1.0, 9.0)],
    )
    (row,) = analysis.endpoint_observations()
    assert (row["host"], row["count"], row["first_seen"], row["last_seen"]) == (
        "h\\x00",
        5,
        1.0,
        9.0,
    )


def test_key_parts_do_not_run_into_each_other(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    analysis.replace_endpoints(
        run_id,
        [
            EndpointSummary(EndpointKey("a\x1fb", "GET", "/x"), 1, 1.0, 1.0),
            EndpointSummary(EndpointKey("a", "b\x1fGET", "/x"), 1, 1.0, 1.0),
        ],
    )
    assert len(analysis.endpoint_observations()) == 2


def test_pathologically_deep_documents_are_cut(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    doc: dict[str, object] = {}
    node = doc
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        child: dict[str, object] = {}
        node["a"] = child
        node = child
    analysis.replace_endpoints(
        run_id, [EndpointSummary(EndpointKey("h", "GET", "/"), 1, 1.0, 1.0, doc)]
    )
    (row,) = analysis.endpoint_observations()
    value: object = row["doc"]
    depth = 0
    while isinstance(value, dict):
        value = value["a"]
        depth += 1
    assert depth == MAX_JSON_DEPTH
    assert value == TOO_DEEP_MARK


def test_hostile_finding_text_is_escaped(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    finding = Finding(
        kind=f"attack.x\x00{SQL}",
        severity="high",
        owasp=f"API8\x00{SQL}",
        endpoint=EndpointKey(f"h\udcff{SQL}", "GET", f"/\x00{SQL}"),
        client_ip=f"10.0.0.1\x00{SQL}",
        ts_first=1.0,
        ts_last=2.0,
        principal="p\udcff",
        evidence={"payload": f"1{SQL}\x00\udcff"},
        explanation=({"feature": "f\x00", "value": "\udcff", "baseline": 1},),
        remediation=f"fix\x00{SQL}",
        transactions=((f"C\x00{SQL}", 1),),
    )
    analysis.upsert_findings(run_id, [(finding, 0.0)])
    analysis.upsert_findings(run_id, [(finding, 0.0)])  # the same key is found again
    (stored,) = analysis.findings()
    assert stored["kind"] == f"attack.x\\x00{SQL}"
    assert stored["owasp"] == f"API8\\x00{SQL}"
    assert stored["endpoint"] == {
        "host": f"h\\udcff{SQL}",
        "method": "GET",
        "path_template": f"/\\x00{SQL}",
    }
    assert stored["client_ip"] == f"10.0.0.1\\x00{SQL}"
    assert stored["principal"] == "p\\udcff"
    assert stored["evidence"] == {"payload": f"1{SQL}\\x00\\udcff"}
    assert stored["explanation"] == [{"feature": "f\\x00", "value": "\\udcff", "baseline": 1}]
    assert stored["remediation"] == f"fix\\x00{SQL}"
    assert stored["transactions"] == [[f"C\\x00{SQL}", 1]]
    assert stored["count"] == 1
    assert [f["kind"] for f in analysis.findings(kind=f"attack.x\\x00{SQL}")] == [stored["kind"]]


def test_huge_key_text_is_stored(store: Store, analysis: AnalysisStore) -> None:
    """Keys far beyond a PostgreSQL btree entry (about 2.7 KB) still upsert."""
    run_id = _run(store)
    # Incompressible: PostgreSQL compresses index entries, so a repeated letter would fit.
    host = "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(3000))
    path = "/" + "\u00e9" * 100_000
    endpoint = EndpointKey(host, "GET", path)
    analysis.replace_endpoints(run_id, [EndpointSummary(endpoint, 1, 1.0, 1.0)])
    analysis.replace_endpoints(run_id, [EndpointSummary(endpoint, 1, 1.0, 1.0)])
    (row,) = analysis.endpoint_observations()
    assert (row["host"], row["path_template"]) == (host, path)
    finding = Finding("attack.sqli", "high", "API8:2023", endpoint, "c" * 100_000, 1.0, 2.0)
    analysis.upsert_findings(run_id, [(finding, 0.0)])
    analysis.upsert_findings(run_id, [(finding, 0.0)])
    (stored,) = analysis.findings()
    assert stored["endpoint"] == {"host": host, "method": "GET", "path_template": path}
    assert stored["count"] == 1
