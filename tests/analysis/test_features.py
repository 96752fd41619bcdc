"""Request views, value signatures and the streaming statistics behind the profiles."""

from __future__ import annotations

import base64
import math

import pytest
from test_detection_builders import json_tx, make_tx

from mirrorscope.analysis.features import (
    FORM,
    JSON,
    MAX_PARAMS,
    PATH,
    QUERY,
    credential_of,
    decode_component,
    path_parameters,
    request_view,
    split_target,
)
from mirrorscope.analysis.features_stats import BoundedCounter, Range, bits, unseen_bits
from mirrorscope.analysis.features_values import signature


def test_split_target_origin_and_absolute_forms() -> None:
    """Origin-form, absolute-form (CSIC writes these) and a fragment."""
    assert split_target("/a/b?x=1&y=2") == (None, "/a/b", "x=1&y=2")
    assert split_target("http://localhost:8080/tienda1/index.jsp?id=3") == (
        "localhost:8080", "/tienda1/index.jsp", "id=3")
    assert split_target("http://localhost:8080.old") == ("localhost:8080.old", "/", "")
    assert split_target("/p#frag") == (None, "/p", "")


def test_decode_component_utf8_then_latin1() -> None:
    """UTF-8 when valid; ISO-8859-1 otherwise (CSIC's %F1 is ñ); '+' only where asked."""
    assert decode_component("Jam%C3%B3n", plus_is_space=True) == "Jamón"
    assert decode_component("A%F1adir+al+carrito", plus_is_space=True) == "Añadir al carrito"
    assert decode_component("a+b", plus_is_space=False) == "a+b"


def test_request_view_query_form_and_host() -> None:
    """Query and form parameters, decoded, with their locations; Host lowercased."""
    tx = make_tx("POST", "/login?next=%2Fhome", host="API.Test",
                 headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                 req_body=b"username=bob&password=s%3Dcret&remember=on")
    view = request_view(tx)
    assert view is not None
    assert view.host == "api.test"
    assert view.params == [(QUERY, "next", "/home"), (FORM, "username", "bob"),
                           (FORM, "password", "s=cret"), (FORM, "remember", "on")]
    assert view.body_kind == "form"
    assert view.username == "bob"
    assert view.status == 200
    assert view.latency == pytest.approx(0.01)


def test_request_view_flattens_json() -> None:
    """Nested objects become dotted names, array items share one name."""
    tx = json_tx("POST", "/orders", {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2"}],
                                     "gift": True, "note": None})
    view = request_view(tx)
    assert view is not None
    assert view.body_kind == "json" and view.json_type == "object"
    assert view.params == [(JSON, "items[].sku", "A-1"), (JSON, "items[].qty", "2"),
                           (JSON, "items[].sku", "B-2"), (JSON, "gift", "true"),
                           (JSON, "note", "null")]


def test_request_view_invalid_json_and_param_bound() -> None:
    """A body that claims JSON but is not parses as json_invalid; parameters are bounded."""
    bad = make_tx("POST", "/x", headers=(("Content-Type", "application/json"),),
                  req_body=b'{"a": ')
    view = request_view(bad)
    assert view is not None and view.body_kind == "json_invalid"
    many = "&".join(f"p{i}=1" for i in range(MAX_PARAMS + 50))
    view = request_view(make_tx("GET", "/x?" + many))
    assert view is not None
    assert len(view.params) == MAX_PARAMS and view.truncated_params


def test_path_parameters_follow_the_template() -> None:
    """Only placeholder segments become parameters, named after the placeholder."""
    assert path_parameters("/users/{user_id}/orders/{id}", "/users/42/orders/x%2F1") == [
        ("user_id", "42"), ("id", "x/1")]
    assert path_parameters("/users/:id", "/users/7") == [("id", "7")]
    assert path_parameters("/users/{id}", "/users/7/extra") == []  # another shape
    assert path_parameters("/a%20b/{id}", "/a b/7") == [("id", "7")]  # literal spelled apart
    tx = make_tx("GET", "/users/42")
    view = request_view(tx, "/users/{id}")
    assert view is not None and view.params == [(PATH, "id", "42")]


def test_credentials() -> None:
    """Bearer tokens, Basic credentials, API keys and session cookies identify the caller."""
    assert credential_of((("Authorization", "Bearer abc.def"),)) == "abc.def"
    basic = base64.b64encode(b"alice:secret").decode()
    assert credential_of((("Authorization", f"Basic {basic}"),)) == basic
    assert credential_of((("Authorization", "Digest x=1"),)) == "Digest x=1"
    assert credential_of((("X-API-Key", "k1"),)) == "k1"
    assert credential_of((("Cookie", "theme=dark; sessionid=s1"),)) == "s1"
    assert credential_of((("Cookie", "theme=dark"),)) is None


def test_principal_matches_the_inventory() -> None:
    """A finding's principal is the id the inventory gives the same credential."""
    auth = pytest.importorskip("mirrorscope.analysis.auth")
    from mirrorscope.analysis.detection import Detector

    key = b"k" * 32
    detector = Detector(endpoint_of=lambda tx: None, hmac_key=key)  # type: ignore[arg-type,return-value]
    for headers in ((("Authorization", "Bearer abc.def"),), (("X-API-Key", "k1"),),
                    (("Cookie", "sessionid=s1"),)):
        lowered = {name.lower(): value for name, value in headers}
        cookies = [tuple(p.split("=", 1)) for p in lowered.get("cookie", "").split(";") if p]
        observed = auth.detect_auth(lowered, [], cookies, key)
        assert detector.principal_of(credential_of(headers)) == observed[0].principal


def test_orphan_response_has_no_view() -> None:
    """A response nobody asked for has nothing to profile."""
    tx = make_tx()
    orphan = type(tx)(tx.conn_id, 1, tx.client, tx.server, None, tx.response)
    assert request_view(orphan) is None


@pytest.mark.parametrize(
    ("value", "shape", "classes"),
    [
        ("80624196L", "9a", {"9", "A"}),
        ("A1A28731H", "a9a9a", {"9", "A"}),  # A 1 A 28731 H
        ("ann@mail.es", "a@a.a", {"a", "@", "."}),
        ("Jamón Ibérico", "a a", {"A", "a", "u", " "}),
        ("1' OR '1'='1", "9' a '9'='9", {"9", "'", " ", "A", "="}),
        ("a\r\nb", "aca", {"a", "c"}),
        ("日本", "a", {"u"}),
    ],
)
def test_signature_classes_and_shape(value: str, shape: str, classes: set[str]) -> None:
    """Classes and the case-folded, run-collapsed shape (derived by hand from the value)."""
    sig = signature(value)
    assert sig.shape == shape
    assert set(sig.classes) == classes
    assert sig.length == len(value)


def test_signature_punctuation_counts_and_numbers() -> None:
    """Punctuation is counted per character; numbers are recognised."""
    sig = signature("a@b@c.d")
    assert dict(sig.punct_counts) == {"@": 2, ".": 1}
    assert signature("-12.5").number == -12.5
    assert signature("12a").number is None


def test_bits_and_good_turing() -> None:
    """-log2 p, and the unseen-event estimate (singletons + 1) / (n + 2)."""
    assert bits(0.25) == pytest.approx(2.0)
    assert unseen_bits(0, 1022) == pytest.approx(10.0)  # 1 / 1024
    assert unseen_bits(511, 1022) == pytest.approx(1.0)  # half the values were new


def test_range_statistics_and_outside_bits() -> None:
    """Welford mean/variance; inside [min, max] is no surprise; far outside is capped by n."""
    rng = Range()
    for x in (2, 4, 4, 4, 5, 5, 7, 9):
        rng.add(x)
    assert rng.mean == pytest.approx(5.0)
    assert rng.var == pytest.approx(32 / 7)
    assert rng.outside_bits(6) == 0.0
    # Just past the max: Chebyshev var/d^2 = (32/7)/25 -> about 2.45 bits.
    assert rng.outside_bits(10) == pytest.approx(-math.log2((32 / 7) / 25))
    # Far away: capped by exchangeability at 1/(n+1) = 1/9.
    assert rng.outside_bits(1000) == pytest.approx(math.log2(9))
    assert Range.from_list(rng.to_list()) == rng


def test_bounded_counter_saturates() -> None:
    """Past its limit a counter is an open set and forgets its counts."""
    counter = BoundedCounter(3)
    for item in "aab":
        counter.add(item)
    assert counter.counts == {"a": 2, "b": 1} and counter.singletons() == 1
    counter.add("c")
    counter.add("d")
    assert counter.saturated and counter.counts == {}
    assert BoundedCounter.from_dict(counter.to_dict()).saturated
