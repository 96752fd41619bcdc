"""Origin: client resolution behind proxies, networks, exposure classes and the origin rules.

Expected values are written by hand from the RFCs and the standard right-to-left walk,
never computed by the code under test.
"""

from __future__ import annotations

import math

import pytest
from test_detection_builders import endpoint_of, make_tx

from mirrorscope.analysis.detection import DetectionConfig, DetectionModel, Detector
from mirrorscope.analysis.detection_catalog import CATALOG
from mirrorscope.analysis.inventory import Inventory
from mirrorscope.analysis.inventory_config import InventoryConfig
from mirrorscope.analysis.inventory_stats import merge_docs
from mirrorscope.analysis.origin import (
    OriginConfig,
    OriginError,
    OriginResolver,
    parse_address,
    parse_forwarded,
    parse_partner,
)
from mirrorscope.analysis.rules_origin import OriginBaseline, OriginLearner, OriginModelError

KEY = b"k" * 32
PROXY = "10.0.0.5"
CFG = OriginConfig(trusted_proxies=("10.0.0.5/32", "10.0.1.0/24"),
                   partner_cidrs=(("acme", "198.51.100.0/24"),))


def resolver(config: OriginConfig = CFG) -> OriginResolver:
    return OriginResolver(config)


def codes(peer: str, *headers: tuple[str, str], config: OriginConfig = CFG) -> list[str]:
    return sorted(i.code for i in resolver(config).resolve(peer, headers).issues)


# ----------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "want"), [
    ("203.0.113.7", "203.0.113.7"),
    (" 203.0.113.7 ", "203.0.113.7"),
    ("203.0.113.7:4711", "203.0.113.7"),
    ('"[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    ("unknown", None),
    ("_hidden", None),
    ("<script>", None),
    ("[2001:db8::1]junk", None),
    ("", None),
])
def test_parse_address(text: str, want: str | None) -> None:
    """Bare, quoted, with ports, bracketed IPv6; junk is None."""
    got = parse_address(text)
    assert (None if got is None else str(got)) == want


def test_parse_forwarded_rfc7239_examples() -> None:
    """The for= values of RFC 7239 section 4's examples, left to right."""
    assert parse_forwarded('for="_gazonk"') == ['"_gazonk"']
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == ['"[2001:db8:cafe::17]:4711"']
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == ["192.0.2.60"]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == ["192.0.2.43",
                                                                   "198.51.100.17"]
    # A quoted comma does not split an element.
    assert parse_forwarded('for="a,b";proto=http, for=192.0.2.1') == ['"a,b"', "192.0.2.1"]


def test_parse_partner() -> None:
    """NAME=CIDR, canonicalised; anything else is a clear error."""
    assert parse_partner("acme=198.51.100.7/24") == ("acme", "198.51.100.0/24")
    for bad in ("acme", "=10.0.0.0/8", "acme=", "acme=not-a-cidr", "a b=10.0.0.0/8"):
        with pytest.raises(OriginError):
            parse_partner(bad)


def test_config_rejects_bad_values() -> None:
    """Bad CIDRs, prefixes, headers and bounds fail at construction with OriginError."""
    with pytest.raises(OriginError, match="not an IP network"):
        OriginConfig(trusted_proxies=("10.0.0.300/32",))
    with pytest.raises(OriginError):
        OriginConfig(internal_cidrs=("nope",))
    with pytest.raises(OriginError):
        OriginConfig(ipv4_prefix=33)
    with pytest.raises(OriginError):
        OriginConfig(header_order=("x-client-ip",))
    with pytest.raises(OriginError):
        OriginConfig(shared_min_networks=1)


# --------------------------------------------------------------------- resolving


def test_untrusted_peer_is_the_client_whatever_the_headers_say() -> None:
    """No trusted proxy vouches for the header: the TCP peer is the client."""
    origin = resolver().resolve("203.0.113.9", (("X-Forwarded-For", "192.0.2.1"),))
    assert origin.client == "203.0.113.9" and origin.header is None
    assert not origin.trusted_peer


def test_trusted_proxy_walk_stops_at_first_untrusted_hop() -> None:
    """Right to left: 10.0.1.7 is a trusted proxy, 192.0.2.1 is not: it is the client;
    198.51.100.50 further left is the client's own claim and is not believed."""
    origin = resolver().resolve(PROXY, (("X-Forwarded-For",
                                         "198.51.100.50, 192.0.2.1, 10.0.1.7"),))
    assert origin.client == "192.0.2.1"
    assert origin.header == "x-forwarded-for"
    assert origin.trusted_peer


def test_all_hops_trusted_gives_the_leftmost() -> None:
    origin = resolver().resolve(PROXY, (("X-Forwarded-For", "10.0.1.9, 10.0.1.8"),))
    assert origin.client == "10.0.1.9"


def test_junk_hop_stops_the_walk_at_the_last_trusted_hop() -> None:
    """'unknown' cannot be walked past: the nearest trusted proxy is the best known client."""
    origin = resolver().resolve(PROXY, (("X-Forwarded-For", "192.0.2.1, unknown, 10.0.1.7"),))
    assert origin.client == "10.0.1.7"


def test_forwarded_and_x_real_ip() -> None:
    """RFC 7239 for= with an IPv6 and a port; X-Real-IP when it is the only header."""
    origin = resolver().resolve(PROXY, (("Forwarded",
                                         'for="[2001:db8:cafe::17]:4711";proto=https'),))
    assert origin.client == "2001:db8:cafe::17" and origin.header == "forwarded"
    origin = resolver().resolve(PROXY, (("X-Real-IP", "192.0.2.44"),))
    assert origin.client == "192.0.2.44" and origin.header == "x-real-ip"


def test_repeated_xff_fields_are_one_list() -> None:
    """Two X-Forwarded-For fields from a trusted proxy (HAProxy adds one) join into one chain."""
    origin = resolver().resolve(PROXY, (("X-Forwarded-For", "192.0.2.1"),
                                        ("X-Forwarded-For", "10.0.1.7")))
    assert origin.client == "192.0.2.1"
    assert not origin.issues


# ---------------------------------------------------------------- classes, networks


def test_exposure_classes() -> None:
    """Partner ranges are named and win over private space; RFC 1918/ULA/loopback internal."""
    config = OriginConfig(partner_cidrs=(("acme", "198.51.100.0/24"), ("vpn", "10.9.0.0/16")))
    r = resolver(config)
    assert r.exposure("198.51.100.7") == ("partner", "acme")
    assert r.exposure("10.9.3.3") == ("partner", "vpn")
    for address in ("10.1.2.3", "172.20.0.1", "192.168.1.1", "127.0.0.1", "::1", "fd00::5"):
        assert r.exposure(address) == ("internal", None), address
    for address in ("8.8.8.8", "2001:db8::1", "not-an-ip"):
        assert r.exposure(address) == ("external", None), address
    extra = resolver(OriginConfig(internal_cidrs=("203.0.113.0/24",)))
    assert extra.exposure("203.0.113.4") == ("internal", None)
    assert extra.exposure("10.1.2.3") == ("external", None)  # replaced, not added (config)


def test_network_of() -> None:
    """/24 and /48 by default, configurable; IPv4-mapped IPv6 is its IPv4 network."""
    r = resolver()
    assert r.network_of("203.0.113.77") == "203.0.113.0/24"
    assert r.network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert r.network_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert r.network_of("junk") is None
    narrow = resolver(OriginConfig(ipv4_prefix=32, ipv6_prefix=64))
    assert narrow.network_of("203.0.113.77") == "203.0.113.77/32"
    assert narrow.network_of("2001:db8:1:2::5") == "2001:db8:1:2::/64"


# ------------------------------------------------------------------ forged chains


def test_external_peer_claiming_loopback_is_forged() -> None:
    """The classic allow-list bypass: X-Forwarded-For: 127.0.0.1 from the internet."""
    origin = resolver().resolve("203.0.113.9", (("X-Forwarded-For", "127.0.0.1"),))
    assert [(i.code, i.index, i.value, i.severity) for i in origin.issues] == [
        ("spoofed_internal", 0, "127.0.0.1", "high")]
    assert "203.0.113.9" in origin.issues[0].reason and "loopback" in origin.issues[0].reason


def test_claims_left_of_the_resolved_client_are_checked_too() -> None:
    """Behind a trusted proxy, the external client's own claim of 10.1.1.1 is forged."""
    assert codes(PROXY, ("X-Forwarded-For", "10.1.1.1, 192.0.2.1")) == ["spoofed_internal"]


def test_plausible_chains_are_quiet() -> None:
    """Trusted proxy + external client; internal peers claiming internal addresses; a
    partner's proxies naming their private hosts."""
    assert codes(PROXY, ("X-Forwarded-For", "192.0.2.1")) == []
    assert codes(PROXY, ("X-Forwarded-For", "127.0.0.1")) == []  # the proxy vouches
    assert codes("10.20.30.40", ("X-Forwarded-For", "10.1.1.1")) == []
    assert codes("198.51.100.3", ("X-Forwarded-For", "192.168.4.4")) == []
    assert codes("203.0.113.9") == []


def test_malformed_entries() -> None:
    """Markup is medium (log/dashboard injection), plain junk low; evidence is cut."""
    origin = resolver().resolve("203.0.113.9", (
        ("X-Forwarded-For", "<script>alert(1)</script>" + "x" * 200 + ", 192.0.2.1"),))
    (issue,) = origin.issues
    assert (issue.code, issue.index, issue.severity) == ("malformed_entry", 0, "medium")
    assert issue.value.startswith("<script>alert(1)</script>xxx")
    assert len(issue.value) <= 65 and issue.value.endswith("…")
    (issue,) = resolver().resolve("203.0.113.9", (("X-Forwarded-For", "foo.bar"),)).issues
    assert (issue.code, issue.severity, issue.reason) == ("malformed_entry", "low",
                                                         "not an IP address")
    (issue,) = resolver().resolve("203.0.113.9", (("X-Real-IP", "1.2.3.4\x1b[2J"),)).issues
    assert issue.severity == "medium" and "\\x1b" in issue.value


def test_unknown_and_obfuscated_are_not_junk() -> None:
    assert codes("203.0.113.9", ("Forwarded", "for=unknown, for=_hidden")) == []
    assert codes("203.0.113.9", ("X-Forwarded-For", "unknown")) == []


def test_conflicting_headers_and_disagreement_and_long_chains() -> None:
    assert codes("203.0.113.9", ("X-Forwarded-For", "192.0.2.1"),
                 ("X-Forwarded-For", "192.0.2.2")) == ["conflicting_headers"]
    assert codes("203.0.113.9", ("X-Real-IP", "192.0.2.1"),
                 ("X-Real-IP", "192.0.2.2")) == ["conflicting_headers"]
    assert codes(PROXY, ("Forwarded", "for=192.0.2.60"),
                 ("X-Forwarded-For", "203.0.113.9")) == ["headers_disagree"]
    assert codes(PROXY, ("Forwarded", "for=192.0.2.60"),
                 ("X-Forwarded-For", "192.0.2.60")) == []  # a proxy that sets both
    chain = ", ".join(f"192.0.2.{n}" for n in range(11))
    assert codes("203.0.113.9", ("X-Forwarded-For", chain)) == ["chain_too_long"]
    chain = ", ".join(f"192.0.2.{n}" for n in range(10))
    assert codes("203.0.113.9", ("X-Forwarded-For", chain)) == []


# ------------------------------------------------------------------ learning


def test_learner_bounds() -> None:
    """Beyond max networks a principal roams (never judged); beyond max principals: dropped."""
    learner = OriginLearner(OriginConfig(max_networks_per_principal=2, max_principals=2))
    for net in ("192.0.2.0/24", "198.51.100.0/24", "192.0.2.0/24"):
        learner.add("p1", net)
    learner.add("p2", "192.0.2.0/24")
    learner.add("p2", "198.51.100.0/24")
    learner.add("p2", "203.0.113.0/24")  # third network: p2 roams
    learner.add("p3", "192.0.2.0/24")  # third principal: dropped
    learner.add(None, "192.0.2.0/24")
    base = learner.baseline()
    assert base.networks == {"p1": ["192.0.2.0/24", "198.51.100.0/24"]}
    assert base.roaming == ["p2"]
    assert base.principals_dropped == 1


def test_baseline_json_round_trip_and_bad_shapes() -> None:
    base = OriginBaseline(24, 64, {"p": ["192.0.2.0/24"]}, ["r"], 3)
    assert OriginBaseline.from_dict(base.to_dict()) == base
    for bad in ([], {"networks": {"p": "192.0.2.0/24"}}, {"networks": {"p": [1]}},
                {"roaming": "x"}, {"ipv4_prefix": "x"}):
        with pytest.raises(OriginModelError):
            OriginBaseline.from_dict(bad)


# ------------------------------------------------------------------ detector


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {token}"),)


def learned_detector(config: DetectionConfig | None = None) -> Detector:
    """A detector whose baseline saw principal 'tok-A' from 192.0.2.0/24 only."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY, config=config)
    for n in range(30):
        detector.learn(make_tx("GET", f"/api/items/{n}", client=f"192.0.2.{10 + n % 5}",
                               headers=bearer("tok-A"), ts=1000.0 + n))
    detector.fit()
    return detector


def kinds(findings: list) -> list[str]:
    return sorted(f.kind for f in findings)


def test_new_network_is_reported_once_with_the_principal() -> None:
    """Three requests from a new network on two endpoints: one finding."""
    detector = learned_detector()
    found = []
    for n, path in enumerate(("/api/items/1", "/api/items/2", "/api/other")):
        found += detector.feed(make_tx("GET", path, client="203.0.113.20",
                                       headers=bearer("tok-A"), ts=5000.0 + n))
    found += detector.feed(make_tx("GET", "/api/items/3", client="192.0.2.99",
                                   headers=bearer("tok-A"), ts=5010.0))  # known network
    found += detector.flush(math.inf)
    new = [f for f in found if f.kind == "auth.new_network"]
    assert len(new) == 1
    (finding,) = new
    assert finding.owasp == "API2:2023"
    assert finding.principal == detector.principal_of("tok-A")
    assert finding.client_ip == "203.0.113.20"
    assert finding.evidence["new_network"] == "203.0.113.0/24"
    assert finding.evidence["baseline_networks"] == 1
    # 192.0.2.0/24 (TEST-NET-1) is not private: external before and after, not escalated.
    assert finding.evidence["baseline_exposure"] == ["external"]
    assert finding.severity == "low"


def test_new_network_severity_escalates_for_internal_to_external() -> None:
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    for n in range(10):
        detector.learn(make_tx("GET", "/a", client="10.1.2.3", headers=bearer("t"),
                               ts=100.0 + n))
    detector.fit()
    found = detector.feed(make_tx("GET", "/a", client="203.0.113.20", headers=bearer("t"),
                                  ts=900.0)) + detector.flush(math.inf)
    (finding,) = [f for f in found if f.kind == "auth.new_network"]
    assert finding.severity == "medium"
    assert finding.evidence["baseline_exposure"] == ["internal"]
    assert finding.evidence["client_exposure"] == "external"
    found = detector.feed(make_tx("GET", "/a", client="10.200.0.1", headers=bearer("t"),
                                  ts=901.0)) + detector.flush(math.inf)
    (finding,) = [f for f in found if f.kind == "auth.new_network"]
    assert finding.severity == "low"  # a new internal network: the catalogue default


def test_new_network_quiet_without_baseline_or_for_unknown_principals() -> None:
    """No model: silent.  A principal the baseline never saw: silent too."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    found = detector.feed(make_tx("GET", "/a", client="203.0.113.20", headers=bearer("x")))
    assert "auth.new_network" not in kinds(found + detector.flush(math.inf))
    detector = learned_detector()
    found = detector.feed(make_tx("GET", "/a", client="203.0.113.20", headers=bearer("new"),
                                  ts=5000.0))
    assert "auth.new_network" not in kinds(found + detector.flush(math.inf))


def test_model_json_carries_the_origin_baseline() -> None:
    """baseline -> JSON -> replay: the reloaded model still knows the networks; an old
    model without origins keeps the rule silent."""
    detector = learned_detector()
    assert detector.model is not None
    text = detector.model.to_json()
    principal = detector.principal_of("tok-A")
    reloaded = DetectionModel.from_json(text, hmac_key=KEY)
    assert reloaded.origin is not None
    assert reloaded.origin.networks == {principal: ["192.0.2.0/24"]}
    scorer = Detector(endpoint_of=endpoint_of, hmac_key=KEY, model=reloaded)
    found = scorer.feed(make_tx("GET", "/x", client="203.0.113.20", headers=bearer("tok-A"),
                                ts=5000.0)) + scorer.flush(math.inf)
    assert kinds(found).count("auth.new_network") == 1
    reloaded.origin = None
    old = DetectionModel.from_json(reloaded.to_json(), hmac_key=KEY)
    assert old.origin is None
    scorer = Detector(endpoint_of=endpoint_of, hmac_key=KEY, model=old)
    found = scorer.feed(make_tx("GET", "/x", client="203.0.113.20", headers=bearer("tok-A"),
                                ts=5000.0)) + scorer.flush(math.inf)
    assert "auth.new_network" not in kinds(found)


def test_baseline_resolves_clients_behind_trusted_proxies() -> None:
    """Learned behind a proxy: the network is the client's, not the proxy's."""
    config = DetectionConfig(origin=OriginConfig(trusted_proxies=("10.0.0.5/32",)))
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY, config=config)
    for n in range(10):
        detector.learn(make_tx("GET", "/a", client=PROXY, ts=100.0 + n, headers=(
            *bearer("t"), ("X-Forwarded-For", "192.0.2.7"))))
    model = detector.fit()
    assert model.origin is not None
    assert model.origin.networks == {detector.principal_of("t"): ["192.0.2.0/24"]}


def test_token_sharing_without_baseline() -> None:
    """Five /24s within five minutes: one finding; four are not enough."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    found = []
    for n in range(4):
        found += detector.feed(make_tx("GET", "/a", client=f"198.18.{n}.1", headers=bearer("s"),
                                       ts=100.0 + n))
    assert "auth.token_sharing" not in kinds(found + detector.flush(200.0))
    found = detector.feed(make_tx("GET", "/a", client="198.18.9.1", headers=bearer("s"),
                                  ts=150.0))
    found += detector.feed(make_tx("GET", "/a", client="198.18.10.1", headers=bearer("s"),
                                   ts=151.0))  # still the same episode: no second finding
    found += detector.flush(math.inf)
    shared = [f for f in found if f.kind == "auth.token_sharing"]
    assert len(shared) == 1
    assert shared[0].evidence["distinct_networks"] == 5
    assert shared[0].owasp == "API2:2023" and shared[0].severity == "high"
    # Spread over more than the window: no sharing.
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    found = []
    for n in range(6):
        found += detector.feed(make_tx("GET", "/a", client=f"198.18.{n}.1",
                                       headers=bearer("s"), ts=100.0 + 400.0 * n))
    assert "auth.token_sharing" not in kinds(found + detector.flush(math.inf))


def test_forged_forwarding_finding() -> None:
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    found = detector.feed(make_tx("GET", "/admin", client="203.0.113.9",
                                  headers=(("X-Forwarded-For", "127.0.0.1"),)))
    found += detector.flush(math.inf)
    (finding,) = [f for f in found if f.kind == "attack.forged_forwarding"]
    assert finding.owasp == CATALOG["attack.forged_forwarding"].owasp == "API8:2023"
    assert finding.severity == "high"
    assert finding.client_ip == "203.0.113.9"
    (why,) = finding.explanation
    assert why["feature"] == "forwarding.spoofed_internal"
    assert why["header"] == "x-forwarded-for" and why["entry"] == 0
    assert why["value"] == "127.0.0.1"
    assert "x-forwarded-for" in finding.remediation


def test_forged_evidence_is_scrubbed() -> None:
    """A token smuggled into the header never reaches the finding."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2ln"
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    found = detector.feed(make_tx("GET", "/a", client="203.0.113.9",
                                  headers=(("X-Forwarded-For", jwt),)))
    found += detector.flush(math.inf)
    (finding,) = [f for f in found if f.kind == "attack.forged_forwarding"]
    assert jwt not in repr(finding)


# ------------------------------------------------------------------ inventory


def test_inventory_exposure_counts_and_merge() -> None:
    """Requests per class of the resolved client; merged documents add up."""
    config = InventoryConfig(origin=OriginConfig(
        trusted_proxies=("10.0.0.5/32",), partner_cidrs=(("acme", "198.51.100.0/24"),)))
    inventory = Inventory(config=config, hmac_key=KEY)
    inventory.feed(make_tx("GET", "/a", client="10.1.1.1"))  # internal
    inventory.feed(make_tx("GET", "/a", client="198.51.100.9", port=1))  # partner
    inventory.feed(make_tx("GET", "/a", client=PROXY, port=2,  # external behind the proxy
                           headers=(("X-Forwarded-For", "203.0.113.5"),)))
    inventory.feed(make_tx("GET", "/a", client="203.0.113.6", port=3))
    (summary,) = inventory.summaries()
    assert summary.doc["exposure"] == {"internal": 1, "partner": 1, "external": 2,
                                       "partners": {"acme": 1}, "class": "external"}
    merged = merge_docs(summary.doc, summary.doc)
    assert merged["exposure"] == {"internal": 2, "partner": 2, "external": 4,
                                  "partners": {"acme": 2}, "class": "external"}
    internal_only = Inventory(hmac_key=KEY)
    internal_only.feed(make_tx("GET", "/a", client="127.0.0.1"))
    (summary,) = internal_only.summaries()
    assert summary.doc["exposure"]["class"] == "internal"

