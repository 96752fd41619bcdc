"""Path templating: trie decisions, their reasons, bounds, and accuracy against a route table.

The accuracy tests compare discovered templates with the route table of a real server
(pcaps/routes/route_app.py, recorded into pcaps/routes/routes.pcap): the ground truth is
the server's own table, never the templater's output.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

import pytest
from test_inventory_builders import (
    REPO,
    ROUTES_PCAP,
    ROUTES_SIDECAR,
    body,
    make_tx,
    pcap_transactions,
)

from mirrorscope.analysis.inventory import Inventory
from mirrorscope.analysis.templating import (
    PathTrie,
    TemplatingConfig,
    split_path,
    template_and_params,
    template_of,
)
from mirrorscope.model import HttpRequest, HttpResponse, HttpTransaction


def _trie(**cfg: object) -> PathTrie[list[int]]:
    """A trie whose payload is a list of request numbers (merging concatenates)."""
    return PathTrie(lambda a, b: a + b, TemplatingConfig(**cfg))  # type: ignore[arg-type]


def _feed(trie: PathTrie[list[int]], path: str, method: str = "GET", status: int = 200,
          keys: frozenset[str] | None = None, n: int = 0) -> str:
    segments, _ = split_path(path, trie.config.max_depth)
    node = trie.insert(segments, method, status, lambda: keys)
    node.payloads.setdefault(method, []).append(n)
    return trie.template(node)


def _lookup(trie: PathTrie[list[int]], path: str, method: str = "GET",
            keys: frozenset[str] | None = None) -> str:
    segments, _ = split_path(path, trie.config.max_depth)
    return trie.lookup(segments, method, lambda: keys)


def _templates(trie: PathTrie[list[int]]) -> dict[tuple[str, str], list[int]]:
    return {(m, trie.template(node)): sorted(p) for node, m, p in trie.endpoints()}


def _structure(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


# ------------------------------------------------------------------- unit rules


def test_typed_ids_become_parameters_and_me_stays_literal() -> None:
    trie = _trie()
    assert _feed(trie, "/api/v1/users/42") == "/api/v1/users/{user_id}"
    assert _feed(trie, "/api/v1/users/me") == "/api/v1/users/me"
    assert _feed(trie, "/api/v1/users/7/orders/123e4567-e89b-12d3-a456-426614174000") == \
        "/api/v1/users/{user_id}/orders/{order_id}"
    node = next(n for n, _, _ in trie.endpoints() if trie.template(n).endswith("me"))
    reasons = trie.decisions(node)
    assert reasons[-1]["literal"] == "me"
    assert "reserved route word" in reasons[-1]["reasons"][0]
    user = next(n for n, _, _ in trie.endpoints() if trie.template(n).endswith("{user_id}"))
    assert trie.decisions(user)[-1]["reasons"] == ["typed: integer value"]


def test_versions_never_merge_even_when_many() -> None:
    trie = _trie(max_literal_siblings=5)
    for v in range(1, 12):
        assert _feed(trie, f"/api/v{v}/status") == f"/api/v{v}/status"


def test_slug_rule_needs_five_values() -> None:
    trie = _trie()
    slugs = ["how-to-bake-bread", "winter-garden-tips", "a-river-story", "paper-rocket-guide"]
    for i, slug in enumerate(slugs):
        assert _feed(trie, f"/blog/{slug}", n=i) == f"/blog/{slug}"
    assert _feed(trie, "/blog/silver-window-forest", n=4) == "/blog/{blog}"
    assert _templates(trie) == {("GET", "/blog/{blog}"): [0, 1, 2, 3, 4]}
    # Later slugs, and lookups of them, land on the parameter too.
    assert _lookup(trie, "/blog/never-seen-before") == "/blog/{blog}"
    assert _feed(trie, "/blog/never-seen-before", n=5) == "/blog/{blog}"


def test_shape_rule_merges_codes() -> None:
    trie = _trie()
    for i in range(3):
        assert _feed(trie, f"/products/SKU-{i:06d}") == f"/products/SKU-{i:06d}"
    assert _feed(trie, "/products/SKU-000003") == "/products/{product}"
    node = next(n for n, _, _ in trie.endpoints())
    assert "shape: 4 distinct values look like AAA-999999" in trie.decisions(node)[0]["reasons"]


def test_cardinality_counts_only_values_that_answered() -> None:
    trie = _trie(max_literal_siblings=6)
    for word in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"):
        _feed(trie, f"/probe/{word}", status=404)  # a scanner: nothing exists
    assert len(_templates(trie)) == 7
    trie = _trie(max_literal_siblings=6)
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    for name in names[:5]:
        assert _feed(trie, f"/people/{name}") == f"/people/{name}"
    assert _feed(trie, "/people/frank") == "/people/{people}"
    assert set(_templates(trie)) == {("GET", "/people/{people}")}


def test_literal_with_other_response_shape_is_kept_apart() -> None:
    trie = _trie()
    article = frozenset({"id", "title", "body"})
    _feed(trie, "/articles/editors-picks", keys=frozenset({"items", "generated"}))
    for slug in ("bake-bread", "grow-roses", "fix-bikes", "paint-walls", "brew-coffee"):
        _feed(trie, f"/articles/{slug}", keys=article)
    assert set(_templates(trie)) == {("GET", "/articles/editors-picks"),
                                     ("GET", "/articles/{article}")}
    node = next(n for n, _, _ in trie.endpoints() if "editors" in trie.template(n))
    assert "different JSON keys" in trie.decisions(node)[0]["reasons"][0]
    # A new value whose responses diverge is split off at once ...
    assert _feed(trie, "/articles/top-ten-lists", keys=frozenset({"items"})) == \
        "/articles/top-ten-lists"
    # ... one that looks like the others joins the parameter.
    assert _feed(trie, "/articles/sew-shirts", keys=article) == "/articles/{article}"


def test_plain_words_join_an_established_parameter() -> None:
    trie = _trie()
    repo = frozenset({"full_name", "stars"})
    for name in ("octo-cat", "mary-jane", "acme-corp", "red-panda", "blue-whale"):
        _feed(trie, f"/repos/{name}", keys=repo)
    assert _feed(trie, "/repos/alice", keys=repo) == "/repos/{repo}"
    # A reserved word joins only on positive evidence: alike 2xx JSON responses.
    assert _feed(trie, "/repos/docs", keys=repo) == "/repos/{repo}"
    assert _feed(trie, "/repos/search", keys=frozenset({"results", "total"})) == "/repos/search"


def test_typed_sibling_asks_for_more_evidence() -> None:
    trie = _trie()
    _feed(trie, "/users/17")
    for action in ("password-reset", "email-change", "two-factor", "api-tokens", "login-history"):
        _feed(trie, f"/users/{action}")
    assert ("GET", "/users/password-reset") in _templates(trie)


def test_static_assets_group_by_directory() -> None:
    trie = _trie()
    assert _feed(trie, "/favicon.ico") == "/favicon.ico"
    _feed(trie, "/static/app.js")
    assert _feed(trie, "/static/app.css") == "/static/{file}"
    assert _feed(trie, "/static/vendor.3f9a2b1c.js") == "/static/{file}"


def test_nested_merges_follow_the_parameter() -> None:
    trie = _trie(max_literal_siblings=4)
    for owner, repo in [("ann", "alpha"), ("ben", "bravo"), ("cid", "charlie"),
                        ("dan", "delta"), ("eve", "echo"), ("fay", "foxtrot")]:
        _feed(trie, f"/repos/{owner}/{repo}")
    assert set(_templates(trie)) == {("GET", "/repos/{repo}/{repo_2}")}
    assert _templates(trie)[("GET", "/repos/{repo}/{repo_2}")] == [0] * 6


def test_bounds_overflow_into_a_parameter() -> None:
    trie = _trie(max_children=8, max_literal_siblings=1000)
    for i in range(20):
        _feed(trie, f"/x/word{chr(97 + i)}", status=404)
    templates = _templates(trie)
    assert ("GET", "/x/{x}") in templates and len(templates) == 9
    # The first value past the bound opens a catch-all parameter; later ones just use it.
    assert trie.overflows == 1
    assert "overflow: more than 8 distinct values" in trie.decisions(
        next(n for n, _, _ in trie.endpoints() if n.is_param))[-1]["reasons"]
    trie = _trie(max_nodes=5, max_literal_siblings=1000)
    for i in range(10):
        _feed(trie, f"/a/b{chr(97 + i)}/c", status=404)
    assert trie.nodes <= 8
    segments, cut = split_path("/" + "/".join("s" * 40), 24)
    assert cut and len(segments) == 24


def test_rendering_quotes_literals_and_dedupes_names() -> None:
    trie = _trie()
    assert _feed(trie, "/odd/%7Bbrace%7D/x y") == "/odd/%7Bbrace%7D/x%20y"
    assert _feed(trie, "/pairs/1/2") == "/pairs/{pair_id}/{pair_id_2}"
    assert _feed(trie, "/a/1/a/2") == "/a/{a_id}/a/{a_id_2}"


def test_template_and_params_walks_once_and_agrees() -> None:
    """The one-walk rendering equals template_of, and names each parameter's position."""
    trie = _trie()
    for path in ("/pairs/1/2", "/a/1/a/2", "/static/x y", "/users/7/orders/9"):
        _feed(trie, path)
    seen = {}
    for node, _method, _payload in trie.endpoints():
        template, params = template_and_params(node)
        assert template == template_of(node)
        parts = template.strip("/").split("/")
        assert [(i, "{" + name + "}") for i, name, _ in params] == \
            [(i, part) for i, part in enumerate(parts) if part.startswith("{")]
        seen[template] = [name for _, name, _ in params]
    assert seen["/pairs/{pair_id}/{pair_id_2}"] == ["pair_id", "pair_id_2"]
    assert seen["/static/x%20y"] == []


def test_lookup_does_not_change_the_trie() -> None:
    trie = _trie()
    _feed(trie, "/users/1")
    assert _lookup(trie, "/users/2/orders/5") == "/users/{user_id}/orders/{order_id}"
    assert _lookup(trie, "/brand/new") == "/brand/new"
    assert set(_templates(trie)) == {("GET", "/users/{user_id}")}
    assert trie.nodes == 3


# ---------------------------------------------------------------- accuracy


def _scores(expected: set[tuple[str, str]], found: set[tuple[str, str]]) -> tuple[float, ...]:
    tp = len(expected & found)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def test_templating_accuracy_on_the_route_capture() -> None:
    if not ROUTES_PCAP.exists():
        pytest.skip("pcaps/routes/routes.pcap missing (run pcaps/routes/make_routes_pcap.py)")
    sidecar = json.loads(ROUTES_SIDECAR.read_text())
    routes = sidecar["routes"]
    txs = pcap_transactions(str(ROUTES_PCAP))
    inventory = Inventory(hmac_key=b"test-key")
    online_ok = 0
    expected_of: list[tuple[HttpTransaction, str]] = []
    for tx in txs:
        inventory.feed(tx)
        assert tx.request is not None
        path = tx.request.target.split("?")[0]
        hosted = dict((k.lower(), v) for k, v in tx.request.headers).get("host") == sidecar["host"]
        route = next((r for r in routes if r["method"] == tx.request.method
                      and re.fullmatch(r["regex"], path)), None)
        if route is None or not hosted:
            continue
        expected_of.append((tx, _structure(route["template"])))
        online_ok += _structure(inventory.endpoint_of(tx).path_template) == \
            _structure(route["template"])
    assert len(txs) == len(sidecar["client_log"])
    expected = {(r["method"], _structure(r["template"])) for r in routes}
    found = {(s.key.method, _structure(s.key.path_template)) for s in inventory.summaries()
             if s.key.host == sidecar["host"] and s.doc["exists"]}
    precision, recall, f1 = _scores(expected, found)
    after = sum(_structure(inventory.endpoint_of(tx).path_template) == want
                for tx, want in expected_of)
    print(f"\ntemplating on routes.pcap: {len(txs)} transactions, {len(expected)} routes, "
          f"{len(found)} endpoints found; precision {precision:.3f} recall {recall:.3f} "
          f"F1 {f1:.3f}; transactions templated right: {after / len(expected_of):.3f} "
          f"after the run, {online_ok / len(expected_of):.3f} at the time they were fed")
    print("  missing:", sorted(expected - found), " extra:", sorted(found - expected))
    assert f1 >= 0.98
    assert after / len(expected_of) >= 0.98
    not_found = {s.key.path_template for s in inventory.summaries() if not s.doc["exists"]}
    assert {"/wp-login.php", "/.env", "/api/v1/admin"} <= not_found


def _synthetic(seed: int) -> list[tuple[HttpTransaction, str | None]]:
    """The route client's workload for a seed, answered by the route server's own code."""
    sys.path.insert(0, str(REPO / "pcaps" / "routes"))
    import route_app

    out: list[tuple[HttpTransaction, str | None]] = []
    for i, call in enumerate(route_app.plan_calls(seed)):
        path = call.path.split("?")[0]
        route = route_app.match_route(call.method, path)
        status, payload = 404, {"error": "nf"}
        if route is not None and route.template == "/static/{file}":
            status, payload = 200, None
        elif route is not None:
            params = re.fullmatch(route.regex, path).groupdict()  # type: ignore[union-attr]
            status, payload = route_app._respond(route, params, call.body)
        data = json.dumps(payload).encode() if payload is not None else b""
        kind = "application/json" if payload is not None else "application/javascript"
        request = HttpRequest(call.method, call.path, "HTTP/1.1",
                              (("Host", call.host), *call.headers), body(call.body), i, i)
        response = HttpResponse(status, "", "HTTP/1.1", (("Content-Type", kind),), body(data),
                                i + 0.01, i + 0.02)
        tx = HttpTransaction(f"C{i}", 1, ("10.0.0.5", 40000), ("10.0.0.1", 80), request,
                             response)
        out.append((tx, route.template if route and call.host == route_app.HOST else None))
    return out


def test_templating_accuracy_over_other_workloads() -> None:
    sys.path.insert(0, str(REPO / "pcaps" / "routes"))
    import route_app

    expected = {(r.method, _structure(r.template)) for r in route_app.ROUTES}
    f1s = []
    for seed in (1, 2, 3, 4, 5):
        inventory = Inventory(hmac_key=b"k")
        pairs = _synthetic(seed)
        for tx, _ in pairs:
            inventory.feed(tx)
        found = {(s.key.method, _structure(s.key.path_template)) for s in inventory.summaries()
                 if s.key.host == route_app.HOST and s.doc["exists"]}
        f1s.append(_scores(expected, found)[2])
    print(f"\ntemplating F1 over 5 other shuffled workloads: {[round(f, 3) for f in f1s]}")
    assert sum(f1s) / len(f1s) >= 0.98


def test_inventory_counts_follow_merges() -> None:
    inventory = Inventory()
    slugs = ["how-to-bake-bread", "winter-garden-tips", "a-river-story", "paper-rocket-guide",
             "silver-window-forest", "lemon-thunder-meadow"]
    for i, slug in enumerate(slugs):
        inventory.feed(make_tx("GET", f"/blog/{slug}", ts=1000.0 + i,
                               resp_json={"id": i, "title": "t"}))
    (summary,) = inventory.summaries()
    assert summary.key.path_template == "/blog/{blog}"
    assert summary.count == 6 and summary.first_seen == 1000.0 and summary.last_seen == 1005.0
    assert Counter(summary.doc["status_codes"]) == Counter({"200": 6})
