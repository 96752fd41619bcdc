"""Behaviour rules on hand-filled client windows: floors, baseline scaling, explanations."""

from __future__ import annotations

from mirrorscope.analysis.features_client import ClientWindow, IdStats, LoginStats
from mirrorscope.analysis.rules_behaviour import BehaviourConfig, ClientBaseline, evaluate
from mirrorscope.model import EndpointKey

EP = EndpointKey("api.test", "GET", "/users/{id}")
LOGIN = EndpointKey("api.test", "POST", "/login")
CFG = BehaviourConfig()


def _window(**fields: object) -> ClientWindow:
    window = ClientWindow("ip:192.0.2.1", 0.0, 60.0)
    for name, value in fields.items():
        setattr(window, name, value)
    return window


def _kinds(window: ClientWindow, baseline: ClientBaseline | None = None) -> list[str]:
    return [hit.kind for hit in evaluate(window, baseline or ClientBaseline(), CFG)]


def test_quiet_window_fires_nothing() -> None:
    """A handful of requests with a failure and a 404 is ordinary."""
    window = _window(requests=12, answered=12, status_404_405=1,
                     logins={LOGIN: LoginStats(attempts=2, failures=1)})
    assert _kinds(window) == []


def test_scraping_floor_scales_with_the_baseline() -> None:
    """200 requests exceed the floor (150) but not 3 x a busy baseline's 99th percentile."""
    window = _window(requests=200, endpoints={EP: 200}, first_ts=0.0, last_ts=20.0)
    assert _kinds(window) == ["attack.scraping"]
    busy = ClientBaseline(windows=100, quantiles={"requests": 100.0})
    assert _kinds(window, busy) == []


def test_bola_needs_many_ids_never_returned() -> None:
    """30 ids, 28 never returned: enumeration; 30 ids all returned earlier: none."""
    ids = IdStats(ids={f"h{i}" for i in range(30)}, never_returned=28, numeric=30,
                  numeric_lo=1, numeric_hi=30, not_found=10, parameter="path:id")
    hits = evaluate(_window(ids={EP: ids}), ClientBaseline(), CFG)
    assert [h.kind for h in hits] == ["attack.bola_enumeration"]
    explained = {e["feature"]: e["value"] for e in hits[0].explanation}
    assert explained["distinct_object_ids"] == 30
    assert explained["id_range_density"] == 1.0  # 30 ids over 1..30: a sequential walk
    returned = IdStats(ids={f"h{i}" for i in range(30)}, never_returned=0, parameter="path:id")
    assert _kinds(_window(ids={EP: returned})) == []


def test_login_failures_stuffing_or_brute_force() -> None:
    """Distinct usernames decide between the two; a success raises the severity."""
    many = LoginStats(attempts=9, failures=8, failed_users={f"u{i}" for i in range(8)})
    hits = evaluate(_window(logins={LOGIN: many}), ClientBaseline(), CFG)
    assert [(h.kind, h.severity) for h in hits] == [("attack.credential_stuffing", "critical")]
    one = LoginStats(attempts=8, failures=8, failed_users={"admin"})
    hits = evaluate(_window(logins={LOGIN: one}), ClientBaseline(), CFG)
    assert [(h.kind, h.severity) for h in hits] == [("attack.brute_force", None)]


def test_recon_needs_many_distinct_endpoints() -> None:
    """Many 404s on one endpoint is not reconnaissance; on many endpoints it is."""
    one = _window(answered=20, status_404_405=20, error_endpoints={EP: 20})
    assert _kinds(one) == []
    spread = {EndpointKey("api.test", "GET", f"/p{i}"): 2 for i in range(10)}
    many = _window(answered=20, status_404_405=20, error_endpoints=spread)
    assert _kinds(many) == ["attack.recon"]
