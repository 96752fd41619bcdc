"""DAST verdicts over hand-made exchanges: each fires on its weakness and not on look-alikes."""

from __future__ import annotations

import json

from mirrorscope import dast_probes as probes
from mirrorscope.dast_http import Sent


def sent(status: int = 200, body: object = None, *, path: str = "/x", elapsed: float = 0.01,
         method: str = "GET", request_body: bytes = b"",
         headers: tuple[tuple[str, str], ...] = ()) -> Sent:
    """One exchange; a dict/list body is JSON-encoded."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None \
        else b""
    return Sent(method, path, (), request_body, status, "", headers, raw, elapsed)


NOTE = {"id": 1, "owner": "alice", "title": "groceries", "body": "milk, eggs"}


def test_missing_auth_needs_the_same_data_without_credentials() -> None:
    """2xx with the authenticated data is a finding; 401, a login page or {} are not."""
    base = sent(200, NOTE)
    verdict = probes.missing_auth(base, sent(200, NOTE), variant="none")
    assert verdict is not None and verdict.kind == "dast.missing_auth"
    assert verdict.info.owasp == "API2:2023"
    assert probes.missing_auth(base, sent(401, {"error": "login"}), variant="none") is None
    assert probes.missing_auth(base, sent(200, b"<html>please log in</html>"),
                               variant="none") is None
    assert probes.missing_auth(sent(200, {}), sent(200, {}), variant="none") is None
    invalid = probes.missing_auth(base, sent(200, dict(reversed(NOTE.items()))),
                                  variant="invalid")
    assert invalid is not None and invalid.kind == "dast.invalid_token"


def test_bola_is_the_owners_data_for_someone_else() -> None:
    """Another principal reading the owner's object; 403/404 or their own data is fine."""
    owner = sent(200, NOTE, path="/notes/1")
    verdict = probes.bola(owner, sent(200, NOTE, path="/notes/1"), owner="alice", other="bob")
    assert verdict is not None and verdict.info.owasp == "API1:2023"
    assert verdict.details["accessed_by"] == "bob"
    assert probes.bola(owner, sent(404, {"error": "no such note"}), owner="alice",
                       other="bob") is None
    bobs = {"id": 3, "owner": "bob", "title": "travel", "body": "train to Porto, 2nd class"}
    assert probes.bola(owner, sent(200, bobs), owner="alice", other="bob") is None
    assert probes.bola(sent(404, {}), sent(200, NOTE), owner="alice", other="bob") is None


def test_bfla_on_admin_routes_and_privileged_methods() -> None:
    """A user getting the admin's answer; a privileged write succeeding for a user."""
    admin = sent(200, {"users": ["alice", "bob", "root"]})
    assert probes.bfla(admin, sent(200, {"users": ["alice", "bob", "root"]}), admin="root",
                       user="alice") is not None
    assert probes.bfla(admin, sent(403, {"error": "admins only"}), admin="root",
                       user="alice") is None
    assert probes.bfla(sent(204), sent(204, method="DELETE"), admin="root", user="alice",
                       tampered_method="DELETE") is not None
    assert probes.is_admin_route("/api/admin/users")
    assert probes.is_admin_route("/internal/metrics")
    assert not probes.is_admin_route("/api/users/{id}")
    assert not probes.is_admin_route("/api/badminton/scores")


def test_error_based_sqli_needs_a_new_database_error() -> None:
    """An error the quote caused; not one the baseline already shows, not a generic 500."""
    base = sent(200, {"results": []})
    leak = sent(500, {"error": 'sqlite3.OperationalError: near "x": syntax error'})
    verdict = probes.sqli_error(base, leak, parameter="q", payload="x'")
    assert verdict is not None and verdict.details["engine"] == "sqlite"
    assert probes.sqli_error(base, sent(500, {"error": "internal error"}), parameter="q",
                             payload="x'") is None
    assert probes.sqli_error(leak, leak, parameter="q", payload="x'") is None
    mysql = sent(500, b"You have an error in your SQL syntax; check the manual")
    assert probes.db_error(mysql.response_body) == "mysql"
    assert probes.db_error(b"ORA-01756: quoted string not properly terminated") == "oracle"
    assert probes.db_error(b'{"error": "unrecognized token: \\"\'\\""}') == "sqlite"


def test_boolean_sqli_true_matches_baseline_false_does_not() -> None:
    """The classic pair; echoing, ignoring or exact-matching endpoints stay clean."""
    rows = {"results": [{"id": 1, "title": "groceries"}]}
    base = sent(200, rows)
    pair = probes.boolean_pairs("groceries")[0]
    empty = sent(200, {"results": []})
    verdict = probes.sqli_boolean([base, base], sent(200, rows), empty, parameter="q",
                                  pair=pair)
    assert verdict is not None and verdict.details["technique"] == "boolean-based"
    # Parameterised: the literal title with a quote matches nothing, true or false.
    assert probes.sqli_boolean([base, base], empty, empty, parameter="q", pair=pair) is None
    # The parameter is ignored: everything equals the baseline.
    assert probes.sqli_boolean([base, base], base, base, parameter="q", pair=pair) is None
    # An unstable endpoint (a clock in the body) cannot be judged.
    tick = sent(200, {"results": rows["results"], "now": "2026-11-29T23:00:00.000001Z"})
    tock = sent(200, {"results": [], "now": "2026-11-29T23:59:59.999999Z", "x": "y" * 40})
    assert probes.sqli_boolean([base, tock], base, empty, parameter="q", pair=pair) is None
    assert probes.sqli_boolean([tick, tick], sent(400, {"error": "bad"}), empty,
                               parameter="q", pair=pair) is None


def test_payloads_cover_string_and_numeric_contexts() -> None:
    """Numbers get the numeric pair too; time payloads carry the delay."""
    assert [p.context for p in probes.boolean_pairs("7")] == ["string", "numeric"]
    assert [p.context for p in probes.boolean_pairs("abc")] == ["string"]
    assert probes.error_payloads("a") == ["a'", 'a"']
    assert all("2" in payload for _, payload in probes.time_payloads("a", 2.0))


def test_time_based_needs_a_slow_probe_and_fast_controls() -> None:
    """Slow only with the sleep: a slow endpoint overall is no proof."""
    fast, slow = sent(200, elapsed=0.05), sent(200, elapsed=2.1)
    assert probes.sqli_time(fast, slow, fast, parameter="q", payload="p", delay=2.0)
    assert probes.sqli_time(sent(200, elapsed=1.5), slow, fast, parameter="q", payload="p",
                            delay=2.0) is None
    assert probes.sqli_time(fast, slow, sent(200, elapsed=2.0), parameter="q", payload="p",
                            delay=2.0) is None
    assert probes.sqli_time(fast, sent(200, elapsed=1.0), fast, parameter="q", payload="p",
                            delay=2.0) is None


def test_mass_assignment_needs_the_field_reflected_with_our_value() -> None:
    """role=admin coming back is a finding; ignored or already-present fields are not."""
    body = probes.with_privileged_fields(b'{"display_name": "Al"}')
    assert body is not None and json.loads(body)["role"] == "admin"
    assert probes.with_privileged_fields(b"not json") is None
    base = sent(200, {"user": "alice", "role": "user"})
    accepted = sent(200, {"user": "alice", "role": "admin", "display_name": "Al"},
                    method="POST", request_body=body)
    verdict = probes.mass_assignment(base, accepted)
    assert verdict is not None and "role" in verdict.details["fields"]
    assert verdict.info.owasp == "API3:2023"
    ignored = sent(200, {"user": "alice", "role": "user"}, method="POST", request_body=body)
    assert probes.mass_assignment(base, ignored) is None
    admin_already = sent(200, {"user": "root", "role": "admin"})
    assert probes.mass_assignment(admin_already, sent(200, {"role": "admin"}, method="POST",
                                                      request_body=body)) is None
    assert probes.mass_assignment(base, sent(400, {"role": "admin"}, request_body=body)) is None


def test_rate_limit_only_for_a_full_burst_without_any_limit_signal() -> None:
    """No 429 and no RateLimit headers in BURST_SIZE answers: low finding; else nothing."""
    burst = [sent(200, {"ok": 1})] * probes.BURST_SIZE
    verdict = probes.rate_limit(burst)
    assert verdict is not None and verdict.info.severity == "low"
    assert probes.rate_limit([*burst[:-1], sent(429)]) is None
    assert probes.rate_limit(burst[:5]) is None
    limited = [*burst[:-1], sent(200, headers=(("X-RateLimit-Remaining", "0"),))]
    assert probes.rate_limit(limited) is None
    assert probes.rate_limit([*burst[:-1], sent(0)]) is None


def test_similarity_is_canonical_for_json() -> None:
    """Key order and spacing are no difference; different data is."""
    assert probes.body_similarity(b'{"a": 1, "b": 2}', b'{"b":2,"a":1}') == 1.0
    assert probes.body_similarity(b"", b"x") == 0.0
    assert probes.body_similarity(b'{"a": 1}', b'{"zzz": [9, 9, 9, 9]}') < probes.SIMILAR
