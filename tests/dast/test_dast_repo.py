"""store.dast_repo: recorded requests with their (redacted) headers, and the verified mark."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorscope.model import EndpointKey, Finding
from mirrorscope.pipeline import ReplayOptions, replay
from mirrorscope.store.analysis_repo import AnalysisStore
from mirrorscope.store.dast_repo import DastStore
from mirrorscope.store.db import StoreError
from mirrorscope.store.repository import Store

PCAP = Path(__file__).resolve().parents[2] / "pcaps" / "crafted" / "pipelined.pcap"
KEY = b"r" * 32


@pytest.fixture()
def db(tmp_path: Path) -> str:
    """A database holding one replayed capture."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    stats = replay([PCAP], ReplayOptions(db_url=url, hmac_key=KEY))
    assert not stats.errors
    return url


def test_recorded_requests_match_the_stored_transactions(db: str) -> None:
    """Same requests as iter_transactions, plus header pairs; the host filter filters."""
    with Store(db, upgrade=False) as store:
        stored = [row for row in store.iter_transactions() if row["method"]]
    with DastStore(db) as dast_store:
        recorded = dast_store.recorded_requests()
        host = recorded[0]["host"]
        assert len(dast_store.recorded_requests(host=host)) == sum(
            1 for row in stored if row["host"] == host)
        assert dast_store.recorded_requests(host="no.such.host") == []
    assert [(r["method"], r["uri"], r["status"]) for r in recorded] == \
        [(r["method"], r["uri"], r["status"]) for r in stored]
    first = recorded[0]
    assert ("Host", first["host"]) in first["request_headers"]
    assert isinstance(first["request_body"], bytes)


def test_mark_verified_sets_only_the_given_findings(db: str) -> None:
    """verified goes from False to True for the ids given, and stays False elsewhere."""
    with Store(db, upgrade=False) as store:
        run_id = store.runs()[0]["id"]
    findings = [(Finding(kind=f"dast.k{i}", severity="high", owasp="API1:2023",
                         endpoint=EndpointKey("h", "GET", f"/p{i}"), client_ip=None,
                         ts_first=1.0, ts_last=1.0), 0.0) for i in range(3)]
    with AnalysisStore(db) as analysis_store:
        ids = analysis_store.upsert_findings(run_id, findings)
    with DastStore(db) as dast_store:
        assert not any(dast_store.verified()[i] for i in ids)
        assert dast_store.mark_verified([ids[0], ids[2], ids[2]]) == 2
        assert dast_store.mark_verified([]) == 0
        flags = dast_store.verified()
    assert [flags[i] for i in ids] == [True, False, True]


def test_refuses_a_database_without_the_schema(tmp_path: Path) -> None:
    """No file, or an empty one: a StoreError that says what to do."""
    with pytest.raises(StoreError):
        DastStore(f"sqlite:///{tmp_path / 'missing.db'}")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreError, match="replay"):
        DastStore(f"sqlite:///{tmp_path / 'empty.db'}")
