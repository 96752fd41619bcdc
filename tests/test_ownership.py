"""Ownership rules: file format, strict validation, and which rule wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorscope.ownership import Owner, OwnershipError, OwnershipRules

REPO = Path(__file__).resolve().parents[1]


def _rules(*rules: dict) -> OwnershipRules:
    return OwnershipRules.from_document({"owners": list(rules)}, "owners.yaml")


def _team(rules: OwnershipRules, host: str, path: str, method: str = "GET") -> str | None:
    owner = rules.owner_for(host, path, method)
    return None if owner is None else owner.team


def test_owner_carries_contact_and_tags() -> None:
    rules = _rules({"team": "payments", "contact": "pay@example.com", "tags": ["pci", "tier1"],
                    "match": {"host": "api.example.com"}})
    assert rules.owner_for("api.example.com", "/x", "GET") == \
        Owner("payments", "pay@example.com", ("pci", "tier1"))
    assert rules.owner_for("other.example.com", "/x", "GET") is None
    assert len(rules) == 1


def test_path_prefix_is_segment_aware() -> None:
    rules = _rules({"team": "pay", "match": {"path_prefix": "/v1/pay"}})
    assert _team(rules, "h", "/v1/pay") == "pay"
    assert _team(rules, "h", "/v1/pay/") == "pay"
    assert _team(rules, "h", "/v1/pay/{id}/refund") == "pay"
    assert _team(rules, "h", "/v1/payments") is None
    assert _team(rules, "h", "/v1") is None
    # A query string is not part of the path.
    assert _team(rules, "h", "/v1/pay?x=/v1/payments") == "pay"


def test_trailing_slash_in_rule_and_root_prefix() -> None:
    rules = _rules({"team": "root", "match": {"path_prefix": "/"}},
                   {"team": "users", "match": {"path_prefix": "/users/"}})
    assert _team(rules, "h", "/users") == "users"
    assert _team(rules, "h", "/usersx") == "root"
    assert _team(rules, "h", "/") == "root"


def test_longest_prefix_wins_whatever_the_order() -> None:
    rules = _rules({"team": "broad", "match": {"path_prefix": "/v1"}},
                   {"team": "narrow", "match": {"path_prefix": "/v1/orders/export"}},
                   {"team": "middle", "match": {"path_prefix": "/v1/orders"}})
    assert _team(rules, "h", "/v1/orders/export/csv") == "narrow"
    assert _team(rules, "h", "/v1/orders/7") == "middle"
    assert _team(rules, "h", "/v1/users") == "broad"


def test_exact_host_beats_glob_beats_no_host() -> None:
    rules = _rules({"team": "anyhost", "match": {"path_prefix": "/api"}},
                   {"team": "glob", "match": {"host": "*.example.com", "path_prefix": "/api"}},
                   {"team": "exact", "match": {"host": "api.example.com", "path_prefix": "/api"}})
    assert _team(rules, "api.example.com", "/api/x") == "exact"
    assert _team(rules, "www.example.com", "/api/x") == "glob"
    assert _team(rules, "example.org", "/api/x") == "anyhost"
    # A glob needs the dot: *.example.com does not cover example.com itself.
    assert _team(rules, "example.com", "/api/x") == "anyhost"


def test_prefix_length_outranks_host_exactness() -> None:
    rules = _rules({"team": "exact-host", "match": {"host": "api.example.com"}},
                   {"team": "deep-path", "match": {"path_prefix": "/v1/admin"}})
    assert _team(rules, "api.example.com", "/v1/admin/users") == "deep-path"
    assert _team(rules, "api.example.com", "/v1/public") == "exact-host"


def test_method_restricted_rule_beats_any_method() -> None:
    rules = _rules({"team": "writers", "match": {"path_prefix": "/orders", "methods": ["post",
                                                                                       "PUT"]}},
                   {"team": "readers", "match": {"path_prefix": "/orders"}})
    assert _team(rules, "h", "/orders", "POST") == "writers"
    assert _team(rules, "h", "/orders", "put") == "writers"
    assert _team(rules, "h", "/orders", "GET") == "readers"


def test_ties_go_to_the_first_rule() -> None:
    rules = _rules({"team": "first", "match": {"host": "*.example.com"}},
                   {"team": "second", "match": {"host": "api.*"}})
    assert _team(rules, "api.example.com", "/") == "first"


def test_host_case_and_port() -> None:
    rules = _rules({"team": "any-port", "match": {"host": "API.Example.com"}},
                   {"team": "tls-port", "match": {"host": "api.example.com:8443",
                                                  "path_prefix": "/"}})
    assert _team(rules, "api.EXAMPLE.com:8080", "/x") == "any-port"
    assert _team(rules, "api.example.com", "/x") == "any-port"
    assert _team(rules, "api.example.com:8443", "/x") == "tls-port"


def test_ipv6_hosts() -> None:
    rules = _rules({"team": "v6", "match": {"host": "[2001:db8::1]"}},
                   {"team": "v6-port", "match": {"host": "[2001:db8::2]:8080"}})
    assert _team(rules, "[2001:db8::1]:443", "/") == "v6"
    assert _team(rules, "2001:db8::1", "/") == "v6"
    assert _team(rules, "[2001:db8::2]:8080", "/") == "v6-port"
    assert _team(rules, "[2001:db8::2]:9090", "/") is None


def test_rule_without_match_is_a_default_owner() -> None:
    rules = _rules({"team": "platform"}, {"team": "pay", "match": {"path_prefix": "/pay"}})
    assert _team(rules, "h", "/pay/x") == "pay"
    assert _team(rules, "anything", "/else", "DELETE") == "platform"


def test_owner_for_finding_uses_its_endpoint() -> None:
    rules = _rules({"team": "pay", "match": {"path_prefix": "/pay"}})
    finding = {"endpoint": {"host": "h", "method": "GET", "path_template": "/pay/{id}"}}
    assert rules.owner_for_finding(finding) == Owner("pay")
    assert rules.owner_for_finding({"endpoint": None}) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "expected a mapping"),
        ([], "expected a mapping"),
        ({"owner": []}, "unknown top-level key"),
        ({}, "missing the 'owners' list"),
        ({"owners": {"team": "x"}}, "'owners' must be a list"),
        ({"owners": ["pay"]}, r"owners\[0\]: a rule must be a mapping"),
        ({"owners": [{"match": {}}]}, r"owners\[0\]\.team: required"),
        ({"owners": [{"team": "  "}]}, r"owners\[0\]\.team: required"),
        ({"owners": [{"team": 7}]}, r"owners\[0\]\.team"),
        ({"owners": [{"team": "a"}, {"team": "b", "contact": 5}]}, r"owners\[1\]\.contact"),
        ({"owners": [{"team": "a", "tags": "pci"}]}, r"owners\[0\]\.tags"),
        ({"owners": [{"team": "a", "tags": [1]}]}, r"owners\[0\]\.tags"),
        ({"owners": [{"team": "a", "teem": "b"}]}, r"owners\[0\]: unknown key\(s\) teem"),
        ({"owners": [{"team": "a", "match": ["/x"]}]}, r"owners\[0\]\.match: must be a mapping"),
        ({"owners": [{"team": "a", "match": {"path": "/x"}}]},
         r"owners\[0\]\.match: unknown key\(s\) path"),
        ({"owners": [{"team": "a", "match": {"path_prefix": "v1"}}]},
         r"owners\[0\]\.match\.path_prefix"),
        ({"owners": [{"team": "a", "match": {"path_prefix": "/v1?x=1"}}]},
         r"owners\[0\]\.match\.path_prefix"),
        ({"owners": [{"team": "a", "match": {"host": 3}}]}, r"owners\[0\]\.match\.host"),
        ({"owners": [{"team": "a", "match": {"host": "h:port"}}]}, r"owners\[0\]\.match\.host"),
        ({"owners": [{"team": "a", "match": {"host": "h/x"}}]}, r"owners\[0\]\.match\.host"),
        ({"owners": [{"team": "a", "match": {"methods": []}}]}, r"owners\[0\]\.match\.methods"),
        ({"owners": [{"team": "a", "match": {"methods": ["GET X"]}}]},
         r"owners\[0\]\.match\.methods"),
        ({"owners": [{"team": "a", "match": {"methods": [True]}}]},
         r"owners\[0\]\.match\.methods"),
    ],
)
def test_bad_documents_are_rejected_naming_rule_and_field(doc: object, message: str) -> None:
    with pytest.raises(OwnershipError, match=message) as caught:
        OwnershipRules.from_document(doc, "teams.yaml")
    assert str(caught.value).startswith("teams.yaml")


def test_empty_owners_list_is_allowed() -> None:
    rules = OwnershipRules.from_document({"owners": []})
    assert len(rules) == 0
    assert rules.owner_for("h", "/", "GET") is None


def test_load_reads_yaml_and_reports_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "owners.yaml"
    good.write_text("owners:\n  - team: pay\n    match: {path_prefix: /pay, methods: GET}\n")
    assert _team(OwnershipRules.load(good), "h", "/pay/1") == "pay"

    broken = tmp_path / "broken.yaml"
    broken.write_text("owners:\n  - team: [unclosed\n")
    with pytest.raises(OwnershipError, match=r"broken\.yaml: not valid YAML \(line"):
        OwnershipRules.load(broken)
    with pytest.raises(OwnershipError, match=r"missing\.yaml: cannot read"):
        OwnershipRules.load(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(OwnershipError, match="cannot read"):
        OwnershipRules.load(binary)


def test_example_file_in_contrib_is_valid() -> None:
    rules = OwnershipRules.load(REPO / "contrib" / "owners.example.yaml")
    assert len(rules) >= 3
