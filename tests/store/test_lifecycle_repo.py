"""Finding lifecycle in the store, on every backend: status changes with their audit trail,
regressions of resolved findings, and suppressed groups staying suppressed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirrorscope.model import EndpointKey, Finding
from mirrorscope.store import AnalysisStore, Store, StoreError

USERS = EndpointKey("api.example.com", "GET", "/users/{id}")
LIFECYCLE = {"status", "status_actor", "status_reason", "status_at", "regression_of",
             "verified", "group_key", "first_run_at"}
# Wall-clock moments (epoch seconds) of the scenario, far from any packet time below.
T_RUN_A = 1_000_000.0
T_RESOLVE = 2_000_000.0
T_RUN_B = 3_000_000.0


@pytest.fixture
def analysis(store: Store, db_url: str) -> Iterator[AnalysisStore]:
    """An AnalysisStore on the database the `store` fixture migrated."""
    with AnalysisStore(db_url) as opened:
        yield opened


def _run(store: Store, sha: str, started_at: float) -> int:
    return store.begin_run(source=f"{sha[:4]}.pcap", sha256=sha * 64, size=1,
                           started_at=started_at)


def _finding(kind: str = "attack.sqli", *, ts_first: float = 100.0, ts_last: float = 110.0,
             client_ip: str = "10.0.0.7", count: int = 3) -> Finding:
    return Finding(kind=kind, severity="high", owasp="API8:2023", endpoint=USERS,
                   client_ip=client_ip, principal=None, ts_first=ts_first, ts_last=ts_last,
                   count=count, confidence=0.9, evidence={}, explanation=(),
                   remediation="fix it", transactions=())


def _by_id(analysis: AnalysisStore) -> dict[int, dict[str, object]]:
    return {f["id"]: f for f in analysis.findings()}


# ------------------------------------------------------------------ manual changes


def test_new_findings_are_open_with_lifecycle_fields(store: Store,
                                                     analysis: AnalysisStore) -> None:
    run = _run(store, "a", T_RUN_A)
    (fid,) = analysis.upsert_findings(run, [(_finding(), 60.0)], updated_at=T_RUN_A)
    (finding,) = analysis.findings()
    assert set(finding) >= LIFECYCLE
    assert finding["id"] == fid
    assert finding["status"] == "open"
    assert finding["status_actor"] is None and finding["status_at"] is None
    assert finding["regression_of"] is None and finding["verified"] is False
    assert len(finding["group_key"]) == 64
    assert finding["first_run_at"] == T_RUN_A
    assert analysis.finding_history(fid) == []
    assert analysis.lifecycle_changes == []


def test_set_status_records_who_why_when(store: Store, analysis: AnalysisStore) -> None:
    run = _run(store, "a", T_RUN_A)
    first, second = analysis.upsert_findings(
        run, [(_finding(), 60.0), (_finding("attack.xss"), 60.0)])
    changed = analysis.set_status([first, second], "acknowledged", "alice", "looking",
                                  now=T_RESOLVE)
    assert changed == [{"id": first, "old_status": "open", "new_status": "acknowledged"},
                       {"id": second, "old_status": "open", "new_status": "acknowledged"}]
    # Setting the same status again changes nothing and writes no history.
    assert analysis.set_status([first], "acknowledged", "bob", "", now=T_RESOLVE + 1) == []
    analysis.set_status([first], "resolved", "bob", "patched in 1.2.3", now=T_RESOLVE + 5)
    row = _by_id(analysis)[first]
    assert (row["status"], row["status_actor"], row["status_reason"], row["status_at"]) == \
        ("resolved", "bob", "patched in 1.2.3", T_RESOLVE + 5)
    history = analysis.finding_history(first)
    assert [(h["actor"], h["old_status"], h["new_status"], h["reason"], h["ts"])
            for h in history] == [
        ("alice", "open", "acknowledged", "looking", T_RESOLVE),
        ("bob", "acknowledged", "resolved", "patched in 1.2.3", T_RESOLVE + 5),
    ]
    assert all(h["finding_id"] == first for h in history)
    assert [f["id"] for f in analysis.findings(status="resolved")] == [first]
    assert [f["id"] for f in analysis.findings(status=["acknowledged", "open"])] == [second]


def test_set_status_refuses_bad_input_and_changes_nothing(store: Store,
                                                          analysis: AnalysisStore) -> None:
    run = _run(store, "a", T_RUN_A)
    (fid,) = analysis.upsert_findings(run, [(_finding(), 60.0)])
    with pytest.raises(StoreError, match="no finding with id 999"):
        analysis.set_status([fid, 999], "resolved", "alice", "x")
    with pytest.raises(StoreError, match="status must be one of"):
        analysis.set_status([fid], "closed", "alice", "x")
    with pytest.raises(StoreError, match="needs a reason"):
        analysis.set_status([fid], "false_positive", "alice", "  ")
    with pytest.raises(StoreError, match="needs a reason"):
        analysis.set_status([fid], "risk_accepted", "alice", "")
    with pytest.raises(StoreError, match="actor"):
        analysis.set_status([fid], "resolved", "", "x")
    with pytest.raises(StoreError, match="positive integer"):
        analysis.set_status([0], "resolved", "alice", "x")
    with pytest.raises(StoreError, match="status must be one of"):
        analysis.findings(status="closed")
    with pytest.raises(StoreError, match="no finding with id 42"):
        analysis.finding_history(42)
    assert _by_id(analysis)[fid]["status"] == "open"
    assert analysis.finding_history(fid) == []


# --------------------------------------------------------------------- regressions


def test_resolved_group_seen_later_reopens_as_regression(store: Store,
                                                         analysis: AnalysisStore) -> None:
    run_a = _run(store, "a", T_RUN_A)
    (resolved,) = analysis.upsert_findings(run_a, [(_finding(), 60.0)], updated_at=T_RUN_A)
    analysis.set_status([resolved], "resolved", "alice", "patched", now=T_RESOLVE)

    # A later capture: the same attack from the same client, a later window.
    run_b = _run(store, "b", T_RUN_B)
    (again,) = analysis.upsert_findings(
        run_b, [(_finding(ts_first=5000.0, ts_last=5010.0), 4980.0)], updated_at=T_RUN_B)
    assert again != resolved
    rows = _by_id(analysis)
    assert rows[resolved]["status"] == "resolved"
    assert rows[again]["status"] == "open"
    assert rows[again]["regression_of"] == resolved
    assert rows[again]["status_actor"] == "mirrorscope"
    assert rows[again]["group_key"] == rows[resolved]["group_key"]
    (entry,) = analysis.finding_history(again)
    assert (entry["actor"], entry["old_status"], entry["new_status"], entry["reason"],
            entry["ts"]) == ("mirrorscope", None, "open",
                             "regression: seen again after resolution", T_RUN_B)
    assert analysis.lifecycle_changes[0]["regression_of"] == resolved

    # Another client's attack is another group: no regression.
    (other,) = analysis.upsert_findings(
        run_b, [(_finding(client_ip="10.9.9.9", ts_first=6000.0, ts_last=6001.0), 5990.0)])
    assert _by_id(analysis)[other]["regression_of"] is None


def test_replaying_a_run_again_is_not_a_regression(store: Store,
                                                   analysis: AnalysisStore) -> None:
    pairs = [(_finding(), 60.0), (_finding(ts_first=200.0, ts_last=230.0), 180.0)]
    run = _run(store, "a", T_RUN_A)
    first, later = analysis.upsert_findings(run, pairs)
    analysis.set_status([first], "resolved", "alice", "patched", now=T_RESOLVE)
    # --force: the same capture re-ingested into the same run, started after the resolution.
    again = _run(store, "a", T_RUN_B)
    assert again == run
    assert analysis.upsert_findings(again, pairs, updated_at=T_RUN_B) == [first, later]
    rows = _by_id(analysis)
    assert rows[first]["status"] == "resolved"
    assert rows[later]["status"] == "open" and rows[later]["regression_of"] is None
    assert analysis.finding_history(later) == []
    assert analysis.lifecycle_changes == []

    # A different capture holding only traffic from before what the store had seen: no return.
    old = _run(store, "c", T_RUN_B + 10)
    (older,) = analysis.upsert_findings(old, [(_finding(ts_first=10.0, ts_last=20.0), 0.0)])
    assert _by_id(analysis)[older]["regression_of"] is None
    assert _by_id(analysis)[older]["status"] == "open"


def test_whole_run_finding_reopens_itself(store: Store, analysis: AnalysisStore) -> None:
    """Findings keyed at window 0 (inventory findings) are one row: that row re-opens."""
    run_a = _run(store, "a", T_RUN_A)
    (fid,) = analysis.upsert_findings(run_a, [(_finding("api.pii_exposure"), 0.0)])
    analysis.set_status([fid], "resolved", "alice", "masked", now=T_RESOLVE)
    run_b = _run(store, "b", T_RUN_B)
    assert analysis.upsert_findings(
        run_b, [(_finding("api.pii_exposure", ts_first=900.0, ts_last=950.0), 0.0)],
        updated_at=T_RUN_B) == [fid]
    row = _by_id(analysis)[fid]
    assert (row["status"], row["regression_of"], row["count"]) == ("open", fid, 6)
    history = analysis.finding_history(fid)
    assert [(h["actor"], h["old_status"], h["new_status"]) for h in history] == [
        ("alice", "open", "resolved"), ("mirrorscope", "resolved", "open")]


def test_live_run_needs_packets_after_the_resolution(store: Store,
                                                     analysis: AnalysisStore) -> None:
    """A run already going when the finding was resolved: packet time is wall time there."""
    live = _run(store, "l", T_RUN_A)
    (fid,) = analysis.upsert_findings(
        live, [(_finding(ts_first=T_RESOLVE - 100, ts_last=T_RESOLVE - 90), 0.0)])
    analysis.set_status([fid], "resolved", "alice", "patched", now=T_RESOLVE)
    # Buffered traffic from before the resolution, flushed after it: still resolved.
    analysis.upsert_findings(
        live, [(_finding(ts_first=T_RESOLVE - 100, ts_last=T_RESOLVE - 10), 0.0)])
    assert _by_id(analysis)[fid]["status"] == "resolved"
    # Traffic after the resolution: a regression.
    analysis.upsert_findings(
        live, [(_finding(ts_first=T_RESOLVE - 100, ts_last=T_RESOLVE + 30), 0.0)])
    assert _by_id(analysis)[fid]["status"] == "open"
    assert _by_id(analysis)[fid]["regression_of"] == fid


# --------------------------------------------------------------------- suppression


@pytest.mark.parametrize("verdict", ["false_positive", "risk_accepted"])
def test_suppressed_group_stays_suppressed(store: Store, analysis: AnalysisStore,
                                           verdict: str) -> None:
    run_a = _run(store, "a", T_RUN_A)
    first, still_open = analysis.upsert_findings(
        run_a, [(_finding(), 60.0), (_finding(ts_first=130.0, ts_last=131.0), 120.0)])
    analysis.set_status([first], verdict, "alice", "health checker, not an attack",
                        now=T_RESOLVE)
    run_b = _run(store, "b", T_RUN_B)
    (later,) = analysis.upsert_findings(
        run_b, [(_finding(ts_first=5000.0, ts_last=5001.0), 4980.0)], updated_at=T_RUN_B)
    rows = _by_id(analysis)
    assert rows[later]["status"] == verdict
    assert rows[later]["regression_of"] is None
    assert f"#{first}" in rows[later]["status_reason"]
    assert "health checker" in rows[later]["status_reason"]
    assert rows[still_open]["status"] == "open"  # rows that existed keep their status
    (entry,) = analysis.finding_history(later)
    assert (entry["actor"], entry["old_status"], entry["new_status"]) == \
        ("mirrorscope", "open", verdict)
    assert analysis.findings(status="open") == [rows[still_open]]


def test_latest_verdict_of_a_group_wins(store: Store, analysis: AnalysisStore) -> None:
    run_a = _run(store, "a", T_RUN_A)
    first, second = analysis.upsert_findings(
        run_a, [(_finding(), 60.0), (_finding(ts_first=130.0, ts_last=131.0), 120.0)])
    analysis.set_status([first], "false_positive", "alice", "scanner", now=T_RESOLVE)
    analysis.set_status([second], "resolved", "bob", "fixed anyway", now=T_RESOLVE + 60)
    run_b = _run(store, "b", T_RUN_B)
    (later,) = analysis.upsert_findings(
        run_b, [(_finding(ts_first=5000.0, ts_last=5001.0), 4980.0)])
    row = _by_id(analysis)[later]
    assert (row["status"], row["regression_of"]) == ("open", second)
