"""The inventory end to end: endpoints, the JSON contract, findings, merging, bounds, corpus.

Expected endpoints of demo.pcap come from pcaps/lab.py's request router (read by hand),
not from running the inventory.
"""

from __future__ import annotations

import base64
import json
import sys

import pytest
from test_inventory_builders import CORPUS, DEMO, REPO, make_tx, pcap_transactions

from mirrorscope.analysis.inventory import OTHER_HOSTS, Inventory, merge_docs
from mirrorscope.analysis.inventory_config import InventoryConfig, InventoryError
from mirrorscope.analysis.templating import TemplatingConfig
from mirrorscope.model import EndpointKey, Finding, HttpTransaction

KEY = b"test-installation-key"
CONTRACT = {"host": str, "method": str, "path_template": str, "count": int,
            "first_seen": float, "last_seen": float, "status_codes": dict, "auth": list,
            "sensitive": list, "parameters": list, "clients": dict}


def _inventory(txs: tuple[HttpTransaction, ...] | list[HttpTransaction],
               **config: object) -> tuple[Inventory, list[Finding]]:
    inventory = Inventory(config=InventoryConfig(**config) if config else None,  # type: ignore[arg-type]
                          hmac_key=KEY)
    announced: list[Finding] = []
    for tx in txs:
        announced += inventory.feed(tx)
    return inventory, announced


def _demo() -> tuple[HttpTransaction, ...]:
    if not DEMO.exists():
        pytest.skip("pcaps/demo.pcap missing")
    return pcap_transactions(str(DEMO))


def _jwt(header: dict[str, object], claims: dict[str, object], sig: str = "c2ln") -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc(header)}.{enc(claims)}.{sig}"


# ---------------------------------------------------------------------- demo.pcap


def test_demo_endpoints_match_the_lab_router() -> None:
    inventory, _ = _inventory(_demo())
    summaries = inventory.summaries()
    hosts = {s.key.host for s in summaries}
    assert len(hosts) == 1 and next(iter(hosts)).startswith("127.0.0.1:")
    exists = {(s.key.method, s.key.path_template) for s in summaries if s.doc["exists"]}
    assert exists == {
        ("HEAD", "/health"), ("GET", "/static/app.js"), ("POST", "/api/v1/login"),
        ("GET", "/api/v1/users/me"), ("GET", "/api/v1/users/{user_id}"),
        ("GET", "/api/v1/products"), ("GET", "/api/v2/products"), ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders/{order_id}"), ("DELETE", "/api/v1/orders/{order_id}"),
        ("GET", "/api/v1/account/billing"),
    }
    unconfirmed = {(s.key.method, s.key.path_template) for s in summaries if not s.doc["exists"]}
    assert ("GET", "/api/v1/wishlist") in unconfirmed  # only ever 404
    assert ("PUT", "/api/v1/users/{user_id}") in unconfirmed  # only ever 405
    by_key = {(s.key.method, s.key.path_template): s.doc for s in summaries}
    users = by_key[("GET", "/api/v1/users/{user_id}")]
    assert set(users["status_codes"]) == {"200", "404"}  # ids 1-20 exist, 21-30 do not
    assert "bearer-jwt" in users["auth"]
    products = by_key[("GET", "/api/v1/products")]
    assert {(p["name"], p["in"], p["type"]) for p in products["parameters"]} >= {
        ("limit", "query", "string"), ("page", "query", "string"), ("session", "cookie", "string")}
    # The SQLi probes made limit/page strings; the 200 answers document the real shape.
    items = products["schemas"]["responses"]["200"]["application/json"]["properties"]["items"]
    assert set(items["items"]["properties"]) == {"id", "sku", "name", "price", "stock", "tags"}
    assert by_key[("GET", "/static/app.js")]["kind"] == "static"
    billing = by_key[("GET", "/api/v1/account/billing")]
    assert {(s["type"], s["field"]) for s in billing["sensitive"]} == {
        ("email", "email"), ("phone", "phone"), ("credit_card", "card_number"), ("iban", "iban")}
    login = by_key[("POST", "/api/v1/login")]
    assert {(s["type"], s["location"], s["field"]) for s in login["sensitive"]} == {
        ("password", "request.body", "password"), ("jwt", "response.body", "token")}
    assert login["clients"]["count"] == 1 and login["clients"]["internal"] == 1


def test_demo_findings_and_no_secret_leaks() -> None:
    inventory, announced = _inventory(_demo())
    findings = inventory.findings()
    kinds = {(f.kind, f.endpoint.path_template if f.endpoint else None) for f in findings}
    assert ("api.pii_exposure", "/api/v1/account/billing") in kinds
    assert ("api.pii_exposure", "/api/v1/users/me") in kinds
    assert ("api.cleartext_credentials", "/api/v1/login") in kinds
    assert ("api.jwt_weak", None) in kinds  # the lab's tokens carry no exp
    billing = next(f for f in findings if f.kind == "api.pii_exposure"
                   and f.endpoint and f.endpoint.path_template.endswith("billing"))
    assert billing.severity == "high" and billing.owasp == "API3:2023"
    assert billing.count == 25 and len(billing.transactions) == 10
    assert {f.kind for f in announced} == {f.kind for f in findings}
    keys = [f.evidence["aggregate_key"] for f in findings]
    assert len(set(keys)) == len(keys)  # a natural key to upsert by
    assert all(f.remediation for f in findings)
    sys.path.insert(0, str(REPO / "pcaps"))
    import lab

    everything = json.dumps(inventory.to_json()) + json.dumps(
        [f.evidence for f in findings]) + repr(findings)
    for secret in [*lab.USERS.values(), *(lab.make_token(u) for u in lab.USERS),
                   "4111 1111 1111 1111", "DE89370400440532013000", "+1-202-555-0187"]:
        assert secret not in everything, secret


def test_contract_shape_and_json() -> None:
    inventory, _ = _inventory(_demo())
    doc = json.loads(json.dumps(inventory.to_json()))
    assert list(doc) == ["endpoints"] and doc["endpoints"]
    for endpoint in doc["endpoints"]:
        for key, kind in CONTRACT.items():
            assert isinstance(endpoint[key], kind), (key, endpoint[key])
        for item in endpoint["sensitive"]:
            assert {"type", "location", "field"} <= set(item)
        for param in endpoint["parameters"]:
            assert {"name", "in", "type"} <= set(param)
            assert param["in"] in ("path", "query", "header", "cookie")
        assert endpoint["first_seen"] <= endpoint["last_seen"]
        assert sum(endpoint["status_codes"].values()) == endpoint["count"]


def test_merge_docs_combines_two_sensors() -> None:
    txs = _demo()
    whole, _ = _inventory(txs)
    left, _ = _inventory(txs[::2])
    right, _ = _inventory(txs[1::2])
    docs_l = {s.key: s.doc for s in left.summaries()}
    docs_r = {s.key: s.doc for s in right.summaries()}
    for summary in whole.summaries():
        key = summary.key
        if key in docs_l and key in docs_r:
            merged = merge_docs(docs_l[key], docs_r[key])
        else:
            merged = docs_l.get(key) or docs_r[key]
        full = summary.doc
        for field in ("count", "first_seen", "last_seen", "status_codes", "auth", "exists"):
            assert merged[field] == full[field], (key, field)
        assert {(s["type"], s["location"], s["field"]) for s in merged["sensitive"]} == \
            {(s["type"], s["location"], s["field"]) for s in full["sensitive"]}
        assert {(p["name"], p["in"]) for p in merged["parameters"]} == \
            {(p["name"], p["in"]) for p in full["parameters"]}
        assert merged["clients"]["count"] == full["clients"]["count"]
        assert merged["schemas"]["responses"].keys() == full["schemas"]["responses"].keys()
        assert merged["latency_ms"]["n"] == full["latency_ms"]["n"]
    one = whole.summaries()[0].doc
    with pytest.raises(InventoryError):
        merge_docs(one, {**one, "method": "PATCH"})


def test_endpoint_of_agrees_with_summaries() -> None:
    txs = _demo()
    fresh = Inventory(hmac_key=KEY)
    assert fresh.endpoint_of(txs[0]).path_template.startswith("/")  # classification only
    inventory, _ = _inventory(txs)
    keys = {s.key for s in inventory.summaries()}
    for tx in txs:
        assert inventory.endpoint_of(tx) in keys
    orphan = HttpTransaction("C9", 1, ("10.0.0.9", 1), ("10.0.0.1", 80), None, None)
    assert inventory.endpoint_of(orphan) == EndpointKey("10.0.0.1:80", "", "")
    assert inventory.feed(orphan) == [] and inventory.counters["orphan_responses"] == 1


# ------------------------------------------------------------------------ findings


def test_secrets_in_urls_and_cleartext_passwords() -> None:
    inventory, announced = _inventory([
        make_tx("GET", "/search?q=x&api_key=sk_live_4f9a8b7c6d5e4f3a2b1c"),
        make_tx("GET", "/search?q=y&api_key=sk_live_4f9a8b7c6d5e4f3a2b1c"),
        make_tx("POST", "/login?user=a&password=hunter2"),
        make_tx("POST", "/session", req_body=b"user=a&password=hunter2",
                headers=(("Content-Type", "application/x-www-form-urlencoded"),)),
    ])
    findings = inventory.findings()
    secret = [f for f in findings if f.kind == "api.secret_in_url"]
    assert {(f.endpoint.path_template, f.severity, f.count) for f in secret if f.endpoint} == {
        ("/search", "medium", 2), ("/login", "high", 1)}
    cleartext = {f.endpoint.path_template for f in findings
                 if f.kind == "api.cleartext_credentials" and f.endpoint}
    assert cleartext == {"/login", "/session"}
    assert len(announced) == len(findings)  # each announced once
    text = json.dumps([f.evidence for f in findings]) + json.dumps(inventory.to_json())
    assert "hunter2" not in text and "sk_live_4f9a8b7c6d5e4f3a2b1c" not in text
    form = next(s for s in inventory.summaries() if s.key.path_template == "/session")
    assert "password" in form.doc["schemas"]["request"][  # form fields, no values
        "application/x-www-form-urlencoded"]["properties"]


def test_jwt_alg_none_accepted_is_critical() -> None:
    none = _jwt({"alg": "none"}, {"sub": "u1"}, sig="")
    signed = _jwt({"alg": "HS256"}, {"sub": "u1", "iat": 0, "exp": 3600})
    inventory, _ = _inventory([
        make_tx("GET", "/me", headers=(("Authorization", f"Bearer {none}"),)),
        make_tx("GET", "/orders", headers=(("Authorization", f"Bearer {signed}"),)),
    ])
    (weak_none, no_exp) = sorted((f for f in inventory.findings() if f.kind == "api.jwt_weak"),
                                 key=lambda f: f.evidence["weakness"])
    assert weak_none.evidence["weakness"] == "alg_none" and weak_none.severity == "critical"
    assert weak_none.evidence["endpoints"] == ["GET /me"] and weak_none.owasp == "API2:2023"
    assert no_exp.evidence["weakness"] == "no_exp"
    assert none not in json.dumps(weak_none.evidence) and weak_none.principal


def test_pii_severity_rises_without_authentication() -> None:
    person = {"name": "x", "email": "jane.doe@example.org"}
    anonymous, _ = _inventory([make_tx("GET", "/people/1", resp_json=person)])
    token = (("Authorization", "Bearer opaque-token-1234"),)
    authed, _ = _inventory([make_tx("GET", "/people/1", resp_json=person, headers=token)])
    (a,) = anonymous.findings()
    (b,) = authed.findings()
    assert (a.kind, a.severity, a.evidence["authenticated"]) == ("api.pii_exposure", "medium",
                                                                [False])
    assert (b.severity, b.evidence["authenticated"]) == ("low", [True])
    assert a.evidence["examples"] == [{"type": "email", "masked": "***@example.org"}]


def test_nonprod_hosts() -> None:
    staging = [make_tx(host="api.staging.example.com", client=("8.8.8.8", 1)),
               make_tx(host="api.staging.example.com", client=("10.0.0.8", 1))]
    inventory, _ = _inventory(staging)
    (finding,) = inventory.findings()
    assert (finding.kind, finding.severity, finding.owasp) == ("api.nonprod_exposed", "medium",
                                                               "API9:2023")
    assert finding.evidence["external_clients"] == ["8.8.8.8"] and finding.count == 2
    inventory, _ = _inventory([make_tx(host="dev-api.internal", client=("10.0.0.8", 1))])
    assert inventory.findings()[0].severity == "low"
    inventory, _ = _inventory(staging, prod_hosts=("api.staging.example.com",))
    assert inventory.findings() == []
    inventory, _ = _inventory([make_tx(host="api.example.com")],
                              nonprod_hosts=("api.example.com",))
    assert inventory.findings()[0].evidence["reason"] == "configured as non-production"
    for host in ("10.1.2.3:8080", "api.example.com", "contest.example.com", "latest.io"):
        inventory, _ = _inventory([make_tx(host=host)])
        assert inventory.findings() == [], host


# ------------------------------------------------------------------ bounds, hostility


def test_bounds() -> None:
    txs = [make_tx("GET", f"/r{i}/x") for i in range(5)]
    inventory, _ = _inventory(txs, max_endpoints=2)
    assert len(inventory.summaries()) == 2
    assert inventory.counters["transactions_untracked"] == 3
    inventory, _ = _inventory([make_tx(host=f"h{i}.example.com") for i in range(4)], max_hosts=2)
    assert {s.key.host for s in inventory.summaries()} == {"h0.example.com", "h1.example.com",
                                                           OTHER_HOSTS}
    deep = make_tx("GET", "/" + "/".join(["seg"] * 40))
    inventory, _ = _inventory([deep], templating=TemplatingConfig(max_depth=8))
    assert inventory.counters["paths_truncated"] == 1
    assert inventory.summaries()[0].key.path_template.count("/") == 8
    with pytest.raises(InventoryError):
        InventoryConfig(internal_networks=("not-a-network",))
    with pytest.raises(InventoryError):
        Inventory(hmac_key="text")  # type: ignore[arg-type]


def test_hostile_transactions_never_raise() -> None:
    nested = b"[" * 50_000 + b"]" * 50_000
    txs = [
        make_tx(host="bad host\x00name"),
        make_tx(host=None),
        make_tx("GET", "http://Evil.Example:80/abs/path?x=1"),
        make_tx("CONNECT", "db.internal:5432"),
        make_tx("OPTIONS", "*"),
        make_tx("GET", "/caf\xe9/%ff%fe/\x01"),
        make_tx("GET", "/q?" + "&".join(f"p{i}={i}" for i in range(2000))),
        make_tx("POST", "/j", req_body=b'{"a": ', headers=(("Content-Type", "application/json"),)),
        make_tx("GET", "/deep", resp_body=nested, resp_type="application/json"),
        make_tx("GET", "/bin", resp_body=bytes(range(256)) * 10, resp_type="image/png"),
        make_tx("GET", "/text", resp_body=b"card 4111 1111 1111 1111 \xff\xfe",
                resp_type="text/plain"),
        make_tx("POST", "/multi", req_body=b'--b\r\nContent-Disposition: form-data; name="f"; '
                b'filename="a.txt"\r\n\r\nhi\r\n--b--',
                headers=(("Content-Type", "multipart/form-data; boundary=b"),)),
        make_tx("GET", "/unanswered", status=None),
        make_tx("GET", "/partial", partial=True, resp_json={"email": "a@b.org"}),
        make_tx("GET", "/cookie", headers=(("Cookie", "a; =b; session=; sid=x=y"),)),
        make_tx("GET", "/auth", headers=(("Authorization", "Basic !!!notb64"),
                                         ("Authorization", "Bearer second"))),
    ]
    inventory, _ = _inventory(txs)
    docs = json.loads(json.dumps(inventory.to_json()))["endpoints"]
    hosts = {d["host"] for d in docs}
    assert "10.0.0.1:80" in hosts and "evil.example" in hosts and "db.internal:5432" in hosts
    multi = next(d for d in docs if d["path_template"] == "/multi")
    assert "f" in multi["schemas"]["request"]["multipart/form-data"]["properties"]
    text = next(d for d in docs if d["path_template"] == "/text")
    assert text["sensitive"] == [{"type": "credit_card", "location": "response.body",
                                  "field": "", "count": 1}]
    partial = next(f for f in inventory.findings() if f.kind == "api.pii_exposure")
    assert partial.confidence < 1.0


def test_feed_is_deterministic() -> None:
    txs = _demo()
    a, _ = _inventory(txs)
    b, _ = _inventory(txs)
    assert json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(), sort_keys=True)
    assert a.findings() == b.findings()


# --------------------------------------------------------------------------- corpus


def _corpus(relative: str) -> tuple[HttpTransaction, ...]:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus capture {relative} not present")
    return pcap_transactions(str(path))


def _report(inventory: Inventory) -> None:
    for s in inventory.summaries():
        sensitive = sorted({x["type"] for x in s.doc["sensitive"]})
        print(f"  {s.key.host} {s.key.method} {s.key.path_template} n={s.count} "
              f"auth={s.doc['auth']} sensitive={sensitive}")
    for f in inventory.findings():
        print(f"  finding {f.kind} {f.severity} "
              f"{f.endpoint.path_template if f.endpoint else f.evidence.get('host')}")


@pytest.mark.corpus
def test_corpus_mattermost() -> None:
    inventory, _ = _inventory(_corpus("api-captures/sv-http-post-file-mattermost/input.pcap"))
    print("\nmattermost:")
    _report(inventory)
    keys = {(s.key.method, s.key.path_template) for s in inventory.summaries()}
    assert keys == {("POST", "/api/v4/users/login"), ("POST", "/api/v4/uploads"),
                    ("POST", "/api/v4/uploads/{upload_id}")}
    kinds = {f.kind for f in inventory.findings()}
    assert {"api.cleartext_credentials", "api.pii_exposure", "api.nonprod_exposed"} <= kinds


@pytest.mark.corpus
def test_corpus_docker_upgrade() -> None:
    inventory, _ = _inventory(_corpus("zeek/traces/http/docker-http-upgrade.pcap"))
    print("\ndocker-http-upgrade:")
    _report(inventory)
    keys = {(s.key.method, s.key.path_template) for s in inventory.summaries()}
    assert keys == {("HEAD", "/_ping"), ("POST", "/v1.41/containers/create"),
                    *{("POST", f"/v1.41/containers/{{container_id}}/{action}")
                      for action in ("attach", "start", "resize", "wait")}}
    resize = next(s for s in inventory.summaries() if s.key.path_template.endswith("resize"))
    assert {(p["name"], p["type"]) for p in resize.doc["parameters"]} >= {
        ("h", "integer"), ("w", "integer"), ("container_id", "string")}


@pytest.mark.corpus
def test_corpus_api_captures() -> None:
    expected = {
        "sv-bug-7390/input.pcap": {("GET", "/api/upgrade/current")},
        "sv-mqtt-events-missing-connect-rabbitmq-mgmt-api/input.pcap": {
            ("GET", "/api/queues"), ("GET", "/api/vhosts"), ("GET", "/api/nodes")},
        "zeek/geneve-many-options.pcap": {("GET", "/json")},
        "zeek/qi_internet_SYNACK_curl_jsonip.pcap": {("GET", "/")},
    }
    for relative, keys in expected.items():
        inventory, _ = _inventory(_corpus(f"api-captures/{relative}"))
        print(f"\n{relative}:")
        _report(inventory)
        assert {(s.key.method, s.key.path_template) for s in inventory.summaries()} == keys
    rabbit, _ = _inventory(_corpus(
        "api-captures/sv-mqtt-events-missing-connect-rabbitmq-mgmt-api/input.pcap"))
    queues = next(s for s in rabbit.summaries() if s.key.path_template == "/api/queues")
    assert queues.doc["auth"] == ["basic"]
    assert {p["name"] for p in queues.doc["parameters"] if p["in"] == "query"} == {
        "page", "page_size", "name", "use_regex", "pagination"}
    assert {f.kind for f in rabbit.findings()} == {"api.cleartext_credentials"}


@pytest.mark.corpus
def test_corpus_package_registries() -> None:
    npm, _ = _inventory(_corpus("api-captures/sv-lua-transform-11-npm-registry-api/"
                                "suri-crash-104.16.3.34-only.pcap"))
    print("\nnpm registry:")
    _report(npm)
    keys = {s.key.path_template for s in npm.summaries()}
    assert "/-/v1/search" in keys and "/lodash/latest" in keys
    search = next(s for s in npm.summaries() if s.key.path_template == "/-/v1/search")
    assert {p["name"] for p in search.doc["parameters"] if p["in"] == "query"} == {"text", "size"}
    nuget, _ = _inventory(_corpus("api-captures/sv-lua-transform-10-nuget-api/"
                                  "suri-crash-13.107.253.70-only.pcap"))
    print("\nnuget / powershell gallery:")
    _report(nuget)
    odata = next(s for s in nuget.summaries() if "FindPackagesById" in s.key.path_template)
    assert odata.count == 6 and odata.key.host == "www.powershellgallery.com"
    # Four-part NuGet version ranges must not be reported as IP addresses.
    assert not any(x["type"] == "ip_address" for s in nuget.summaries()
                   for x in s.doc["sensitive"])
