"""The hot-path caches of the analysis stage give the uncached results and stay bounded.

Each cache remembers a pure function of its key (signature matches of a text, a sensitive
verdict, a parsed address, a principal id, a decoded JWT, a scrubbed text, the ids a body
hands out, a rendered template).  The references below are the computations themselves,
written out without any cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from urllib.parse import quote

import pytest
from test_detection_builders import make_tx
from test_rules_injection import ATTACKS, BENIGN

from mirrorscope.analysis import (
    auth,
    detection_redact,
    detection_windows,
    origin,
    rules_injection,
    schema,
    sensitive,
    templating,
)
from mirrorscope.analysis.features import request_view
from mirrorscope.analysis.rules_injection import (
    _SIGNATURES,
    JNDI,
    MAX_CHECKED,
    TEMPLATE,
    RuleHit,
    check_request,
)

KEY = b"k" * 32


def _reference_check_text(text: str, location: str, hits: list[RuleHit],
                          seen: set[tuple[str, str]]) -> None:
    """Every signature searched in turn, skipping kinds already reported at the location."""
    text = text[:MAX_CHECKED]
    if (JNDI, location) not in seen and (span := rules_injection._jndi(text)) is not None:
        seen.add((JNDI, location))
        hits.append(RuleHit(JNDI, "jndi-lookup", location, span[0], span[1], text))
    keyword_only = rules_injection._PLAIN.fullmatch(text) is not None
    for kind, name, pattern in _SIGNATURES:
        if keyword_only and name not in rules_injection._KEYWORD_ONLY:
            continue
        if (kind, location) in seen or (kind == TEMPLATE and (JNDI, location) in seen):
            continue
        match = pattern.search(text)
        if match is not None:
            seen.add((kind, location))
            hits.append(RuleHit(kind, name, location, match.start(), match.end(), text))


VALUES = [payload for _, payload in ATTACKS] + BENIGN + [
    "${jndi:ldap://x/${7*7}}", "' OR 1=1 UNION SELECT a FROM b --", "unıon select", "x" * 300]


@pytest.mark.parametrize("value", VALUES)
def test_injection_hits_equal_the_uncached_search(value: str, monkeypatch) -> None:
    """Query, path and a second parameter carry the value; cached and cold runs agree."""
    target = f"/p/{quote(value, safe='')}?q={quote(value, safe='')}&r={quote(value, safe='')}"
    view = request_view(make_tx("GET", target, headers=(("User-Agent", value),)))
    assert view is not None
    headers = (("User-Agent", value),)
    rules_injection._match_cache.clear()
    cold = check_request(view, headers)
    warm = check_request(view, headers)  # served from the cache
    monkeypatch.setattr(rules_injection, "_check_text", _reference_check_text)
    reference = check_request(view, headers)
    assert cold == reference
    assert warm == reference


def test_injection_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(rules_injection, "_MATCH_CACHE_ENTRIES", 4)
    rules_injection._match_cache.clear()
    for n in range(20):
        view = request_view(make_tx("GET", f"/search?q=value{n}"))
        assert view is not None
        check_request(view)
        assert len(rules_injection._match_cache) <= 4
    view = request_view(make_tx("GET", "/s?q=" + quote("1' OR '1'='1") + "&x=" + "y" * 400))
    assert view is not None
    check_request(view)
    assert all(len(text) <= rules_injection._MATCH_CACHE_MAX_TEXT
               for text in rules_injection._match_cache)


CLASSIFIED = [
    ("email", "ann.lee@mail.example"), ("password", "hunter2"), ("card", "4111 1111 1111 1111"),
    ("phone", "+1 415 555 0100"), ("token", "abc"), ("page", "1"), ("q", "x" * 300),
    ("address", "12 Main Street, Springfield"), ("ip", "10.0.0.1"), ("name", ""),
]


def test_classify_cache_equals_uncached_and_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(sensitive, "_CLASSIFY_CACHE_ENTRIES", 3)
    sensitive._classify_cache.clear()
    for _ in range(2):
        for name, value in CLASSIFIED:
            assert sensitive.classify(name, value) == sensitive._classify(name, value)
            assert len(sensitive._classify_cache) <= 3
    # A number and a string of the same digits are different values.
    assert sensitive.classify("card", 4111111111111111) == "credit_card"
    assert sensitive.classify("card", "4111111111111111") == sensitive._classify(
        "card", "4111111111111111")


def test_parse_address_cache_is_bounded_and_right(monkeypatch) -> None:
    monkeypatch.setattr(origin, "_ADDRESS_CACHE_ENTRIES", 4)
    origin._address_cache.clear()
    for n in range(10):
        text = f"10.0.0.{n}:80"
        assert origin.parse_address(text) == ipaddress.ip_address(f"10.0.0.{n}")
        assert origin.parse_address(text) == ipaddress.ip_address(f"10.0.0.{n}")
        assert len(origin._address_cache) <= 4
    assert origin.parse_address("not an address") is None
    assert origin.parse_address("[2001:db8::1]:443") == ipaddress.ip_address("2001:db8::1")


def test_network_of_is_cached_per_prefix() -> None:
    resolver = origin.OriginResolver()
    assert resolver.network_of("203.0.113.7") == "203.0.113.0/24"
    assert resolver.network_of("203.0.113.7", ipv4_prefix=16) == "203.0.0.0/16"
    assert resolver.network_of("203.0.113.7") == "203.0.113.0/24"
    assert resolver.network_of("junk") is None


def test_dynamic_key_cache_equals_uncached_and_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(schema, "_DYNAMIC_KEY_CACHE_ENTRIES", 4)
    schema._dynamic_key_cache.clear()
    keys = ["id", "1.0.2", "v2", "2024-01-31", "name", "123", "x" * 80, "a1b2c3", "items"]
    for key in keys * 2:
        uncached = templating.typed_kind(key) is not None or \
            schema._SEMVER.fullmatch(key) is not None
        assert schema.is_dynamic_key(key) is uncached
        assert len(schema._dynamic_key_cache) <= 4
    assert "x" * 80 not in schema._dynamic_key_cache  # long keys are not kept


def test_last_resolved_origin_is_reused_only_for_the_same_request() -> None:
    """Two resolvers of one config share the last answer; another request is resolved."""
    config = origin.OriginConfig(trusted_proxies=("10.0.0.0/8",))
    first, second = origin.OriginResolver(config), origin.OriginResolver(config)
    headers = (("Host", "api"), ("X-Forwarded-For", "198.51.100.9"))
    answer = first.resolve("10.0.0.1", headers)
    assert answer.client == "198.51.100.9"
    assert second.resolve("10.0.0.1", headers) is answer
    # An equal but distinct header tuple, another peer, another config: resolved afresh.
    copy = tuple(list(headers))
    assert second.resolve("10.0.0.1", copy) == answer and \
        second.resolve("10.0.0.1", copy) is not answer
    untrusted = second.resolve("192.0.2.1", copy)
    assert untrusted.client == "192.0.2.1"
    other = origin.OriginResolver(origin.OriginConfig())
    assert first.resolve("10.0.0.1", headers).client == "198.51.100.9"
    assert other.resolve("10.0.0.1", headers).client == "10.0.0.1"  # trusts no proxy


def _jwt(claims: dict[str, object], alg: str = "HS256") -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}.sig"


def test_principal_and_jwt_caches(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_CACHE_ENTRIES", 2)
    for token in ("abc", "def", "ghi", "abc", b"raw-bytes"):
        data = token if isinstance(token, bytes) else token.encode()
        expected = hmac.new(KEY, data, hashlib.sha256).hexdigest()[:16]
        assert auth.principal_id(token, KEY) == expected
        assert auth.principal_id(token, b"other") != expected  # the key is part of the key
        assert len(auth._principal_cache) <= 2
    token = _jwt({"sub": "u1", "exp": 2_000_000_000, "iat": 1_000_000_000})
    first = auth.decode_jwt(token, KEY)
    assert first is not None and first == auth._decode_jwt(token, KEY)
    assert auth.decode_jwt(token, KEY) is first
    assert auth.decode_jwt(token, b"other") == auth._decode_jwt(token, b"other")
    assert auth.decode_jwt("not.a.jwt", KEY) is None
    assert auth.decode_jwt("opaque-key", KEY) is None


def test_scrub_cache_equals_uncached() -> None:
    texts = ["missing: X-Content-Type-Options", "Authorization: Bearer abc.def.ghi",
             "card 4111 1111 1111 1111", "password=hunter2"]
    for _ in range(2):
        for text in texts:
            assert detection_redact.scrub(text, KEY) == detection_redact._scrub(text, KEY)
    assert detection_redact.scrub(texts[1], b"other") == detection_redact._scrub(
        texts[1], b"other")


def test_returned_ids_cache_equals_regex_and_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(detection_windows, "_RETURNED_CACHE_BYTES", 1000)
    detection_windows._returned_cache.clear()
    monkeypatch.setattr(detection_windows, "_returned_cache_bytes", 0)
    pattern = re.compile(rb'"(?:id|uuid|guid|[A-Za-z0-9]+_id|[a-z0-9]+Id)"\s*+:\s*+"?'
                         rb'([\w.:-]{1,64})')
    for n in range(10):
        body = json.dumps([{"id": n, "order_id": f"o-{n}", "name": "x"}]).encode()
        expected = tuple(m.group(1).decode("latin-1") for m in pattern.finditer(body))
        assert detection_windows.returned_ids(body) == expected
        assert detection_windows.returned_ids(body) == expected
        assert detection_windows._returned_cache_bytes <= 1000
        assert sum(map(len, detection_windows._returned_cache)) <= 1000
        assert 0 < len(detection_windows._returned_cache) < 10


def test_render_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(templating, "_RENDER_CACHE_ENTRIES", 3)
    templating._render_cache.clear()
    for n in range(10):
        parts = [(False, "api"), (False, f"v {n}"), (True, "id")]
        assert templating._render(parts) == f"/api/v%20{n}/{{id}}"
        assert len(templating._render_cache) <= 3
    assert templating._render([(True, "id"), (True, "id")]) == "/{id}/{id_2}"


def test_response_body_cache_equals_uncached_and_is_bounded(monkeypatch) -> None:
    from mirrorscope.analysis import rules_response
    from mirrorscope.model import HttpBody, HttpResponse

    monkeypatch.setattr(rules_response, "_BODY_CACHE_BYTES", 300)
    rules_response._body_cache.clear()
    monkeypatch.setattr(rules_response, "_body_cache_bytes", 0)
    bodies = [b'Traceback (most recent call last):\n  File "x.py"', b"SQLSTATE[42000] oops",
              b'{"ok": true}', b"goroutine 1 [running]:", b"plain error page " * 5]
    for status in (200, 500):
        for round_ in range(2):
            for n, body in enumerate(bodies):
                head = body + bytes([n])
                resp = HttpResponse(status, "X", "HTTP/1.1", (), HttpBody(len(head), len(head),
                                                                         head), 1.0, 1.0)
                cached = rules_response.check_response(resp)
                rules_response._body_cache.clear()
                monkeypatch.setattr(rules_response, "_body_cache_bytes", 0)
                assert rules_response.check_response(resp) == cached, (status, round_, n)
                assert rules_response._body_cache_bytes <= 300
    size = len(bodies[0])
    traced = HttpResponse(500, "X", "HTTP/1.1", (), HttpBody(size, size, bodies[0]), 1.0, 1.0)
    assert [h.kind for h in rules_response.check_response(traced)] == ["misconfig.stack_trace"]


def test_query_cache_returns_fresh_lists(monkeypatch) -> None:
    from mirrorscope.analysis import inventory_request

    monkeypatch.setattr(inventory_request, "_QUERY_CACHE_ENTRIES", 2)
    for n in range(5):
        pairs = inventory_request._query_pairs(f"page={n}&q=a%20b&flag")
        assert pairs == [("page", str(n)), ("q", "a b"), ("flag", "")]
        pairs.append(("mutated", "x"))  # the caller's copy, not the cache's
        assert inventory_request._query_pairs(f"page={n}&q=a%20b&flag")[-1] == ("flag", "")
        assert len(inventory_request._query_cache) <= 2


def test_returned_ids_have_a_budget_across_subjects() -> None:
    """Past the total, the least recently active subject is forgotten whole (and counted)."""
    from mirrorscope.analysis.detection_windows import ActivityTracker, TrackerLimits

    tracker = ActivityTracker(lambda value: f"h:{value}", re.compile("login"),
                              TrackerLimits(max_returned_ids_total=5))
    for n, holder in enumerate(("alice", "bob", "carol")):
        body = json.dumps([{"id": f"{holder}-{i}"} for i in range(3)]).encode()
        tracker._remember_returned(make_tx(resp_body=body, ts=1000.0 + n), holder)
        assert tracker.returned_total == sum(len(v) for v in tracker.returned.values())
        assert tracker.returned_total <= 5
    assert list(tracker.returned) == ["carol"]
    assert tracker.returned["carol"] == {f"h:carol-{i}" for i in range(3)}
    assert tracker.returned_ids_dropped == 6


def test_connection_map_is_bounded_and_counts_evictions() -> None:
    from mirrorscope.analysis.detection import DetectionConfig, Detector
    from mirrorscope.model import EndpointKey

    detector = Detector(endpoint_of=lambda tx: EndpointKey("api.test", "GET", "/"),
                        hmac_key=KEY, config=DetectionConfig(max_connections=2))
    for n in range(5):
        detector.feed(make_tx(conn_id=f"C{n}", client=f"10.0.0.{n % 2}", ts=1000.0 + n))
    assert list(detector._connections) == ["C3", "C4"]
    assert detector._connections["C4"] == "10.0.0.0"
    assert detector.stats.connections_evicted == 3
