"""Per-endpoint profiles: what deviates, by how many bits, and the JSON round trip.

Expected bit values are computed here from the formulas in features_stats (Good-Turing
(singletons + 1) / (n + 2), exchangeability 1/(n+1)) and the crafted baseline, never by
asking the code under test.
"""

from __future__ import annotations

import json
import math

import pytest
from test_detection_builders import json_tx, make_tx

from mirrorscope.analysis.features import request_view
from mirrorscope.analysis.features_profile import (
    DEVIATION_FEATURES,
    SOFT_FEATURES,
    TX_FEATURES,
    Profiles,
    feature_vector,
)
from mirrorscope.model import EndpointKey

EP = EndpointKey("api.test", "GET", "/items")
N = 98  # baseline requests: n + 2 = 100 keeps the expected bits readable


def _hash(value: str) -> str:
    return "h:" + value


def _never_sensitive(name: str) -> bool:
    return name in ("password",)


def _baseline() -> Profiles:
    profiles = Profiles()
    for i in range(N):
        # id: digits only, 1..3 characters; color: one of three; q: free text.
        tx = make_tx("GET", f"/items?id={i + 1}&color={('red', 'green', 'blue')[i % 3]}"
                            f"&q=word{i}", status=200, latency=0.01)
        view = request_view(tx)
        assert view is not None
        profiles.learn(EP, view, _hash, _never_sensitive)
    profiles.freeze()
    return profiles


def _devs(profiles: Profiles, target: str, **kwargs: object) -> dict[tuple[str, str | None], float]:
    view = request_view(make_tx("GET", target, **kwargs))  # type: ignore[arg-type]
    assert view is not None
    return {(d.feature, d.parameter): d.bits
            for d in profiles.deviations(EP, view, _hash, _never_sensitive)}


def test_a_baseline_request_does_not_deviate() -> None:
    """Values like the baseline's: nothing to report."""
    assert _devs(_baseline(), "/items?id=17&color=green&q=word3") == {}


def test_new_character_class_costs_good_turing_bits() -> None:
    """A quote in a digits-only parameter: no class was rare, so p = 1/(N+2)."""
    devs = _devs(_baseline(), "/items?id=1'&color=red&q=word1")
    assert devs[("value.new_char_class", "query:id")] == pytest.approx(math.log2(N + 2))
    assert ("value.shape", "query:id") in devs  # "9'" was never a shape of id


def test_unknown_value_of_an_enumeration() -> None:
    """color had three values, each seen ~33 times: a fourth is a 1/(N+2) event."""
    devs = _devs(_baseline(), "/items?id=5&color=black&q=word1")
    assert devs == {("value.unknown", "query:color"): pytest.approx(math.log2(N + 2))}


def test_free_text_is_an_open_set() -> None:
    """q took N distinct values (all singletons): a new one is no surprise at all."""
    devs = _devs(_baseline(), "/items?id=5&color=red&q=word5000")
    assert ("value.unknown", "query:q") not in devs


def test_length_beyond_everything_seen() -> None:
    """A 300-digit id: Chebyshev is tiny, so the exchangeability cap 1/(n+1) applies."""
    devs = _devs(_baseline(), "/items?id=" + "1" * 300 + "&color=red&q=word1")
    assert devs[("value.length", "query:id")] == pytest.approx(math.log2(N + 1))


def test_new_parameter_name_and_missing_parameter() -> None:
    """An extra name is param.new_name; a dropped one makes an unseen parameter set."""
    profiles = _baseline()
    devs = _devs(profiles, "/items?id=5&color=red&q=word1&admin=true")
    assert ("param.new_name", None) in devs
    devs = _devs(profiles, "/items?id=5&color=red")
    assert devs == {("param.unusual_set", None): pytest.approx(math.log2(N + 2))}


def test_new_endpoint_and_unusual_method() -> None:
    """An endpoint never seen; a known path with another method."""
    profiles = _baseline()
    view = request_view(make_tx("GET", "/admin"))
    assert view is not None
    devs = profiles.deviations(EndpointKey("api.test", "GET", "/admin"), view, _hash,
                               _never_sensitive)
    # One endpoint on the host, seen N times (not once): p = 1/(N+2).
    assert [(d.feature, round(d.bits, 6)) for d in devs] == [
        ("endpoint.new", round(math.log2(N + 2), 6))]
    devs = profiles.deviations(EndpointKey("api.test", "DELETE", "/items"), view, _hash,
                               _never_sensitive)
    assert [d.feature for d in devs] == ["endpoint.method_unusual"]


def test_status_and_body_kind_deviations() -> None:
    """A 500 never seen on the endpoint; a JSON body where there never was one."""
    profiles = _baseline()
    devs = _devs(profiles, "/items?id=5&color=red&q=word1", status=500)
    assert ("response.status", None) in devs
    view = request_view(json_tx("GET", "/items?id=5&color=red&q=word1", {"x": 1}))
    assert view is not None
    features = {d.feature for d in profiles.deviations(EP, view, _hash, _never_sensitive)}
    assert "body.kind" in features


def test_secret_parameters_keep_no_values() -> None:
    """A password's values are never enumerated (not even hashed), only its shape of chars."""
    profiles = Profiles()
    ep = EndpointKey("api.test", "POST", "/login")
    for i in range(20):
        view = request_view(json_tx("POST", "/login", {"user": "bob", "password": f"pw{i % 2}"}))
        assert view is not None
        profiles.learn(ep, view, _hash, _never_sensitive)
    doc = json.dumps(profiles.to_dict())
    assert "h:pw0" not in doc and "h:bob" in doc
    view = request_view(json_tx("POST", "/login", {"user": "bob", "password": "pw7"}))
    assert view is not None
    assert profiles.deviations(ep, view, _hash, _never_sensitive) == []


def test_json_round_trip_scores_the_same() -> None:
    """A profile loaded from its JSON gives the same deviations and soft features."""
    profiles = _baseline()
    loaded = Profiles.from_dict(json.loads(json.dumps(profiles.to_dict())))
    for target in ("/items?id=1'&color=black&q=x", "/items?id=" + "9" * 50, "/items?id=2"):
        view = request_view(make_tx("GET", target))
        assert view is not None
        soft_a = [0.0] * len(SOFT_FEATURES)
        soft_b = [0.0] * len(SOFT_FEATURES)
        a = profiles.deviations(EP, view, _hash, _never_sensitive, soft_a)
        b = loaded.deviations(EP, view, _hash, _never_sensitive, soft_b)
        assert [(d.feature, d.parameter, d.bits) for d in a] == [
            (d.feature, d.parameter, d.bits) for d in b]
        assert soft_a == soft_b


def test_feature_vector_layout() -> None:
    """Deviation bits summed per column, then the soft features, in TX_FEATURES order."""
    profiles = _baseline()
    view = request_view(make_tx("GET", "/items?id=1'&color=black&q=word1"))
    assert view is not None
    soft = [0.0] * len(SOFT_FEATURES)
    devs = profiles.deviations(EP, view, _hash, _never_sensitive, soft)
    vector = feature_vector(devs, soft)
    assert len(vector) == len(TX_FEATURES) == len(DEVIATION_FEATURES) + len(SOFT_FEATURES)
    column = DEVIATION_FEATURES.index("value.unknown")
    assert vector[column] == pytest.approx(sum(d.bits for d in devs
                                               if d.feature == "value.unknown"))
    assert vector[TX_FEATURES.index("soft.params")] == pytest.approx(math.log2(1 + 3))


def test_explanations_never_carry_raw_values() -> None:
    """Deviations describe values by length, shape or classes, not by content."""
    profiles = _baseline()
    view = request_view(make_tx("GET", "/items?id=SECRETVALUE123&color=TOPSECRET&q=word1"))
    assert view is not None
    text = json.dumps([d.as_dict() for d in profiles.deviations(EP, view, _hash,
                                                                _never_sensitive)])
    assert "SECRETVALUE" not in text and "TOPSECRET" not in text


def test_json_root_type_and_secret_deviations_are_redacted() -> None:
    """An array where objects were sent is a body.kind deviation; a password's deviations
    say what deviated, not its length or characters."""
    profiles = Profiles()
    ep = EndpointKey("api.test", "POST", "/login")
    for i in range(30):
        view = request_view(json_tx("POST", "/login", {"user": "bob", "password": f"pw{i}"}))
        assert view is not None
        profiles.learn(ep, view, _hash, _never_sensitive)
    view = request_view(json_tx("POST", "/login", [{"user": "bob"}]))
    assert view is not None
    kinds = [(d.value, d.baseline) for d in profiles.deviations(ep, view, _hash, _never_sensitive)
             if d.feature == "body.kind"]
    assert kinds == [("json:array", ["json:object"])]
    view = request_view(json_tx("POST", "/login", {"user": "bob", "password": "x" * 300 + "'"}))
    assert view is not None
    secret = {d.feature: d.value for d in profiles.deviations(ep, view, _hash, _never_sensitive)
              if d.parameter == "json:password"}
    assert secret == {"value.length": "[redacted]", "value.new_char_class": "[redacted]"}


def test_punctuation_count_beyond_the_maximum() -> None:
    """Every email had one '@': two exceed the maximum of n values, p <= 1/(n+1)."""
    profiles = Profiles()
    ep = EndpointKey("api.test", "GET", "/register")
    for i in range(N):
        view = request_view(make_tx("GET", f"/register?email=user{i}%40mail{i % 7}.example"))
        assert view is not None
        profiles.learn(ep, view, _hash, _never_sensitive)
    view = request_view(make_tx("GET", "/register?email=a%40b%40mail1.example"))
    assert view is not None
    devs = {d.feature: d for d in profiles.deviations(ep, view, _hash, _never_sensitive)}
    assert devs["value.char_count"].bits == pytest.approx(math.log2(N + 1))
    assert devs["value.char_count"].value == "2 x '@'"
