"""AnalysisStore on every backend: endpoint rows per run, findings, detector models."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mirrorscope.model import EndpointKey, EndpointSummary, Finding
from mirrorscope.store import AnalysisStore, Store, StoreError

USERS = EndpointKey("api.example.com", "GET", "/users/{id}")
LOGIN = EndpointKey("api.example.com", "POST", "/login")
FINDING_CONTRACT = {
    "id",
    "kind",
    "owasp",
    "severity",
    "confidence",
    "endpoint",
    "client_ip",
    "principal",
    "first_seen",
    "last_seen",
    "count",
    "transactions",
    "evidence",
    "explanation",
    "remediation",
    "status",
    # lifecycle (migration 0005)
    "status_actor",
    "status_reason",
    "status_at",
    "regression_of",
    "verified",
    "group_key",
    "first_run_at",
}


@pytest.fixture
def analysis(store: Store, db_url: str) -> Iterator[AnalysisStore]:
    """An AnalysisStore on the database the `store` fixture migrated."""
    with AnalysisStore(db_url) as opened:
        yield opened


def _run(store: Store, sha: str = "a" * 64) -> int:
    return store.begin_run(source=f"{sha[:4]}.pcap", sha256=sha, size=1, started_at=1.0)


def _finding(
    kind: str = "attack.sqli",
    *,
    endpoint: EndpointKey | None = USERS,
    client_ip: str | None = "10.0.0.7",
    principal: str | None = "p:0123abcd",
    ts_first: float = 100.0,
    ts_last: float = 110.0,
    count: int = 3,
    severity: str = "high",
    owasp: str = "API8:2023",
    confidence: float = 0.9,
    evidence: dict[str, object] | None = None,
    remediation: str = "Use parameterised queries in the id lookup.",
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        owasp=owasp,
        endpoint=endpoint,
        client_ip=client_ip,
        ts_first=ts_first,
        ts_last=ts_last,
        count=count,
        principal=principal,
        confidence=confidence,
        evidence={"parameter": "id", "signature": "' OR 1=1"} if evidence is None else evidence,
        explanation=({"feature": "id.chars", "value": 12, "baseline": "digits"},),
        remediation=remediation,
        transactions=(("C1", 1), ("C1", 2)),
    )


def _only(analysis: AnalysisStore) -> dict[str, object]:
    (finding,) = analysis.findings()
    return finding


# --------------------------------------------------------------------- endpoints


def test_endpoint_round_trip(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    doc = {"status_codes": {"200": 4}, "auth": ["bearer"], "parameters": [{"name": "id"}]}
    analysis.replace_endpoints(
        run_id,
        [
            EndpointSummary(USERS, 4, 10.0, 20.0, doc),
            EndpointSummary(LOGIN, 1, 15.5, 15.5, {}),
        ],
    )
    assert analysis.endpoint_observations() == [
        {
            "host": "api.example.com",
            "method": "GET",
            "path_template": "/users/{id}",
            "count": 4,
            "first_seen": 10.0,
            "last_seen": 20.0,
            "doc": {"status_codes": {"200": 4}, "auth": ["bearer"], "parameters": [{"name": "id"}]},
            "run_id": run_id,
        },
        {
            "host": "api.example.com",
            "method": "POST",
            "path_template": "/login",
            "count": 1,
            "first_seen": 15.5,
            "last_seen": 15.5,
            "doc": {},
            "run_id": run_id,
        },
    ]


def test_replace_endpoints_replaces_the_runs_rows(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    analysis.replace_endpoints(
        run_id, [EndpointSummary(USERS, 4, 10.0, 20.0), EndpointSummary(LOGIN, 2, 1.0, 2.0)]
    )
    # Re-analysing the run: the same endpoint counted again must not double, and an
    # endpoint the new analysis no longer reports must go.
    analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 5, 9.0, 21.0)])
    analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 5, 9.0, 21.0)])
    rows = analysis.endpoint_observations()
    assert [(r["method"], r["path_template"], r["count"]) for r in rows] == [
        ("GET", "/users/{id}", 5)
    ]
    analysis.replace_endpoints(run_id, [])
    assert analysis.endpoint_observations() == []


def test_endpoints_of_two_runs_are_kept_apart(store: Store, analysis: AnalysisStore) -> None:
    first, second = _run(store, "a" * 64), _run(store, "b" * 64)
    analysis.replace_endpoints(first, [EndpointSummary(USERS, 4, 10.0, 20.0, {"n": 1})])
    analysis.replace_endpoints(second, [EndpointSummary(USERS, 6, 30.0, 40.0, {"n": 2})])
    analysis.replace_endpoints(first, [EndpointSummary(USERS, 4, 10.0, 20.0, {"n": 1})])
    rows = analysis.endpoint_observations()
    assert [(r["run_id"], r["count"], r["doc"]) for r in rows] == [
        (first, 4, {"n": 1}),
        (second, 6, {"n": 2}),
    ]
    assert [r["count"] for r in analysis.endpoint_observations(run_id=second)] == [6]


def test_replace_endpoints_needs_an_existing_run(analysis: AnalysisStore) -> None:
    with pytest.raises(StoreError, match="no capture run with id 999"):
        analysis.replace_endpoints(999, [EndpointSummary(USERS, 1, 1.0, 1.0)])


def test_endpoints_are_validated_before_anything_is_written(
    store: Store, analysis: AnalysisStore
) -> None:
    run_id = _run(store)
    analysis.replace_endpoints(run_id, [EndpointSummary(LOGIN, 1, 1.0, 1.0)])
    with pytest.raises(StoreError, match="count"):
        analysis.replace_endpoints(
            run_id, [EndpointSummary(USERS, 1, 1.0, 1.0), EndpointSummary(USERS, -1, 1.0, 1.0)]
        )
    with pytest.raises(StoreError, match="first_seen"):
        analysis.replace_endpoints(run_id, [EndpointSummary(USERS, 1, float("nan"), 1.0)])
    assert [r["path_template"] for r in analysis.endpoint_observations()] == ["/login"]


# ---------------------------------------------------------------------- findings


def test_finding_round_trip(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    (finding_id,) = analysis.upsert_findings(run_id, [(_finding(), 60.0)], updated_at=5.0)
    finding = _only(analysis)
    assert set(finding) == FINDING_CONTRACT
    assert finding == {
        "id": finding_id,
        "kind": "attack.sqli",
        "owasp": "API8:2023",
        "severity": "high",
        "confidence": 0.9,
        "endpoint": {"host": "api.example.com", "method": "GET", "path_template": "/users/{id}"},
        "client_ip": "10.0.0.7",
        "principal": "p:0123abcd",
        "first_seen": 100.0,
        "last_seen": 110.0,
        "count": 3,
        "transactions": [["C1", 1], ["C1", 2]],
        "evidence": {"parameter": "id", "signature": "' OR 1=1"},
        "explanation": [{"feature": "id.chars", "value": 12, "baseline": "digits"}],
        "remediation": "Use parameterised queries in the id lookup.",
        "status": "open",
        "status_actor": None,
        "status_reason": None,
        "status_at": None,
        "regression_of": None,
        "verified": False,
        "group_key": finding["group_key"],
        "first_run_at": finding["first_run_at"],
    }
    assert len(finding["group_key"]) == 64 and finding["first_run_at"] is not None


def test_finding_without_endpoint_client_or_principal(
    store: Store, analysis: AnalysisStore
) -> None:
    run_id = _run(store)
    analysis.upsert_findings(
        run_id,
        [(_finding("http.desync", endpoint=None, client_ip=None, principal=None), 0.0)],
    )
    finding = _only(analysis)
    assert (finding["endpoint"], finding["client_ip"], finding["principal"]) == (None, None, None)
    # Writing it again finds the same row: '' stands in for the absent parts of the key.
    analysis.upsert_findings(
        run_id,
        [(_finding("http.desync", endpoint=None, client_ip=None, principal=None), 0.0)],
    )
    assert _only(analysis)["count"] == 3


def test_rewriting_a_run_does_not_double_count(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    first = analysis.upsert_findings(run_id, [(_finding(count=3), 60.0)])
    again = analysis.upsert_findings(run_id, [(_finding(count=3), 60.0)])
    assert first == again
    finding = _only(analysis)
    assert (finding["count"], finding["first_seen"], finding["last_seen"]) == (3, 100.0, 110.0)


def test_rewriting_a_run_replaces_its_occurrence(store: Store, analysis: AnalysisStore) -> None:
    run_a, run_b = _run(store, "a" * 64), _run(store, "b" * 64)
    analysis.upsert_findings(run_a, [(_finding(count=3, ts_first=100.0, ts_last=110.0), 60.0)])
    analysis.upsert_findings(run_b, [(_finding(count=5, ts_first=90.0, ts_last=105.0), 60.0)])
    # Run a re-analysed with different figures: its 3 become 4, run b's 5 stay.
    analysis.upsert_findings(run_a, [(_finding(count=4, ts_first=101.0, ts_last=120.0), 60.0)])
    finding = _only(analysis)
    assert (finding["count"], finding["first_seen"], finding["last_seen"]) == (9, 90.0, 120.0)


def test_two_runs_add_up(store: Store, analysis: AnalysisStore) -> None:
    run_a, run_b = _run(store, "a" * 64), _run(store, "b" * 64)
    analysis.upsert_findings(
        run_a,
        [(_finding(count=3, ts_first=100.0, ts_last=110.0, severity="medium",
                   confidence=0.5, evidence={"from": "a"}), 60.0)],
    )
    analysis.upsert_findings(
        run_b,
        [(_finding(count=5, ts_first=95.0, ts_last=108.0, severity="high",
                   confidence=0.4, evidence={"from": "b"}), 60.0)],
    )
    finding = _only(analysis)
    assert finding["count"] == 8
    assert (finding["first_seen"], finding["last_seen"]) == (95.0, 110.0)
    assert finding["severity"] == "high"  # the worst seen
    assert finding["confidence"] == 0.5  # the best seen
    assert finding["evidence"] == {"from": "b"}  # the latest written
    # A lower severity later does not downgrade the finding.
    analysis.upsert_findings(run_b, [(_finding(count=5, severity="low"), 60.0)])
    assert _only(analysis)["severity"] == "high"


def test_natural_key_separates_findings(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    ids = analysis.upsert_findings(
        run_id,
        [
            (_finding(), 0.0),
            (_finding(), 120.0),  # another window
            (_finding(principal="p:other"), 0.0),
            (_finding(client_ip="10.0.0.8"), 0.0),
            (_finding(endpoint=LOGIN), 0.0),
            (_finding("attack.xss"), 0.0),
            (_finding(), -0.0),  # the first again: -0.0 is the window 0.0
        ],
    )
    assert len(set(ids)) == 6
    assert ids[0] == ids[6]
    # Two findings of one call with one key are two occurrences: they add up.
    assert {f["id"]: f["count"] for f in analysis.findings()}[ids[0]] == 6


def test_duplicates_in_one_call_merge(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    ids = analysis.upsert_findings(
        run_id,
        [
            (_finding(count=2, ts_first=10.0, ts_last=20.0, severity="low"), 0.0),
            (_finding(count=7, ts_first=5.0, ts_last=15.0, severity="critical"), 0.0),
        ],
    )
    assert ids[0] == ids[1]
    finding = _only(analysis)
    assert (finding["count"], finding["first_seen"], finding["last_seen"]) == (9, 5.0, 20.0)
    assert finding["severity"] == "critical"


def test_finding_filters(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    analysis.upsert_findings(
        run_id,
        [
            (_finding("attack.sqli", severity="high", owasp="API8:2023",
                      ts_first=10.0, ts_last=20.0), 0.0),
            (_finding("attack.bola_enumeration", severity="critical", owasp="API1:2023",
                      ts_first=30.0, ts_last=40.0), 0.0),
            (_finding("attacker.custom", severity="low", owasp="API8:2023",
                      ts_first=50.0, ts_last=60.0), 0.0),
            (_finding("ml.client_outlier", severity="medium", owasp="API4:2023",
                      ts_first=70.0, ts_last=80.0), 0.0),
            (_finding("ATTACK.upper", severity="info", owasp="API8:2023",
                      ts_first=90.0, ts_last=95.0), 0.0),
        ],
    )

    def kinds(**filters: object) -> list[str]:
        return [f["kind"] for f in analysis.findings(**filters)]  # type: ignore[arg-type]

    assert kinds() == [
        "attack.sqli",
        "attack.bola_enumeration",
        "attacker.custom",
        "ml.client_outlier",
        "ATTACK.upper",
    ]
    assert kinds(severity="high") == ["attack.sqli"]
    assert kinds(severity=["low", "medium"]) == ["attacker.custom", "ml.client_outlier"]
    assert kinds(min_severity="high") == ["attack.sqli", "attack.bola_enumeration"]
    assert kinds(kind="attack") == ["attack.sqli", "attack.bola_enumeration"]
    assert kinds(kind="attack.sqli") == ["attack.sqli"]
    assert kinds(kind="attack.sql") == []
    assert kinds(kind="attack%") == []
    assert kinds(owasp="API8:2023") == ["attack.sqli", "attacker.custom", "ATTACK.upper"]
    assert kinds(since=60.0) == ["attacker.custom", "ml.client_outlier", "ATTACK.upper"]
    assert kinds(kind="attack", severity="critical") == ["attack.bola_enumeration"]
    assert kinds(limit=2) == ["attack.sqli", "attack.bola_enumeration"]
    with pytest.raises(StoreError, match="severity"):
        analysis.findings(severity="urgent")
    with pytest.raises(StoreError, match="severity"):
        analysis.findings(min_severity="HIGH")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": "urgent"}, "severity"),
        ({"count": -1}, "count"),
        ({"ts_first": float("inf")}, "ts_first"),
        ({"confidence": float("nan")}, "confidence"),
    ],
)
def test_invalid_findings_write_nothing(
    store: Store, analysis: AnalysisStore, change: dict[str, object], message: str
) -> None:
    run_id = _run(store)
    bad = _finding("attack.xss", **change)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=message):
        analysis.upsert_findings(run_id, [(_finding(), 0.0), (bad, 0.0)])
    assert analysis.findings() == []


def test_window_start_must_be_finite(store: Store, analysis: AnalysisStore) -> None:
    run_id = _run(store)
    with pytest.raises(StoreError, match="window_start"):
        analysis.upsert_findings(run_id, [(_finding(), float("nan"))])


def test_upsert_findings_needs_an_existing_run(analysis: AnalysisStore) -> None:
    with pytest.raises(StoreError, match="no capture run"):
        analysis.upsert_findings(4242, [(_finding(), 0.0)])
    assert analysis.upsert_findings(4242, []) == []


def test_concurrent_runs_add_up(store: Store, analysis: AnalysisStore, db_url: str) -> None:
    """Writers of different runs racing on the same findings lose no occurrence."""
    runs = [_run(store, f"{digit}" * 64) for digit in "1234"]
    batch = [(_finding(f"attack.k{n}", count=n + 1), 0.0) for n in range(10)]
    errors: list[BaseException] = []

    def write(run_id: int) -> None:
        try:
            with AnalysisStore(db_url) as own:
                for _ in range(3):
                    own.upsert_findings(run_id, batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = {f["kind"]: f["count"] for f in analysis.findings()}
    assert counts == {f"attack.k{n}": 4 * (n + 1) for n in range(10)}


# ------------------------------------------------------------------------ models


def test_model_save_and_load(analysis: AnalysisStore) -> None:
    params = {
        "format": "mirrorscope.detection-model",
        "threshold": 0.75,
        "names": ["id", "caf\u00e9", "nul\x00", "surrogate\udcff"],
        "nested": {"trees": [[1, 2, -1], [0.5, 1e-300]]},
    }
    first = analysis.save_model("detector", "detection", params, created_at=10.0)
    second = analysis.save_model("detector", "detection", {"threshold": 0.8}, created_at=5.0)
    other = analysis.save_model("detector", "client", {"threshold": 0.1}, created_at=20.0)
    assert len({first, second, other}) == 3
    # Latest saved wins, whatever its created_at says.
    assert analysis.load_model("detector") == {
        "id": other,
        "name": "detector",
        "kind": "client",
        "created_at": 20.0,
        "params": {"threshold": 0.1},
    }
    assert analysis.load_model("detector", kind="detection") == {
        "id": second,
        "name": "detector",
        "kind": "detection",
        "created_at": 5.0,
        "params": {"threshold": 0.8},
    }
    assert analysis.load_model("absent") is None
    # A model comes back exactly as saved: no escaping of its strings.
    third = analysis.save_model("exact", "detection", params, created_at=1.0)
    loaded = analysis.load_model("exact")
    assert loaded is not None and loaded["id"] == third
    assert loaded["params"] == params


def test_model_params_must_be_json(analysis: AnalysisStore) -> None:
    with pytest.raises(StoreError, match="JSON"):
        analysis.save_model("m", "detection", {"threshold": float("nan")})
    with pytest.raises(StoreError, match="JSON"):
        analysis.save_model("m", "detection", {"blob": b"\x80\x04pickle"})
    with pytest.raises(StoreError, match="dict"):
        analysis.save_model("m", "detection", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="name"):
        analysis.save_model("", "detection", {})
    assert analysis.load_model("m") is None
