"""From the recording to a replay plan: credentials, attribution, templates, examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorscope.dast_plan import (
    DastConfigError,
    Principal,
    attribute,
    build_plan,
    credential_fingerprints,
    declared_objects,
    load_credentials,
    origin_form,
    replayable_headers,
    template_regex,
)
from mirrorscope.store.redact import redact_headers

KEY = b"k" * 32


def test_load_credentials(tmp_path: Path) -> None:
    """Named principals with headers, role and owned paths."""
    path = tmp_path / "c.yaml"
    path.write_text("principals:\n  alice:\n    headers: {Authorization: Bearer a1}\n"
                    "    owns: [/notes/1]\n  root:\n    headers: {X-Api-Key: 42}\n"
                    "    role: admin\n")
    alice, root = load_credentials(path)
    assert alice == Principal("alice", (("Authorization", "Bearer a1"),), "user", ("/notes/1",))
    assert root.is_admin and root.headers == (("X-Api-Key", "42"),)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "principals"),
    ("principals: {}", "principals"),
    ("principals: {a: {role: user}}", "headers"),
    ("principals: {a: {headers: {'Bad Name': x}}}", "not a header name"),
    ("principals: {a: {headers: {X: \"a\\r\\nB: c\"}}}", "one-line"),
    ("principals: {a: {headers: {X: y}, colour: red}}", "unknown key"),
    ("principals: {a: {headers: {X: y}, owns: notes/1}}", "owns"),
    ("principals: {a: [", "not valid YAML"),
])
def test_bad_credentials_are_refused_with_a_reason(tmp_path: Path, text: str,
                                                   message: str) -> None:
    """Each mistake is named, never a traceback."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(DastConfigError, match=message):
        load_credentials(path)
    with pytest.raises(DastConfigError, match="cannot read"):
        load_credentials(tmp_path / "missing.yaml")


def test_attribution_by_credential_fingerprint() -> None:
    """A recorded (redacted) request is attributed to the principal whose token it carried."""
    alice = Principal("alice", (("Authorization", "Bearer token-of-alice"),))
    bob = Principal("bob", (("Authorization", "Bearer token-of-bob"),))
    marks = {p.name: credential_fingerprints(p, KEY) for p in (alice, bob)}
    recorded = redact_headers([("Host", "h"), ("Authorization", "Bearer token-of-bob")], KEY)
    assert "token-of-bob" not in str(recorded)
    assert attribute(recorded, marks) == "bob"
    assert attribute(redact_headers([("Authorization", "Bearer other")], KEY), marks) is None
    assert attribute(recorded, {"x": marks["bob"], "y": marks["bob"]}) is None  # ambiguous


def test_templates_and_request_targets() -> None:
    """{x} is one segment; absolute-form and '//' targets are brought back to a path."""
    regex = template_regex("/api/notes/{note_id}")
    assert regex.match("/api/notes/7") and not regex.match("/api/notes/7/x")
    assert not template_regex("/a.b").match("/axb")
    assert origin_form("http://elsewhere:81/a/b?c=1#f") == "/a/b?c=1"
    assert origin_form("//evil.example/x") == "/evil.example/x"
    assert origin_form("/a?b=1#frag") == "/a?b=1"


def test_replayable_headers_carry_no_credentials() -> None:
    """Fingerprinted, sensitive, framing and caching headers are dropped."""
    headers = replayable_headers([("Host", "h"), ("Authorization", "Bearer [redacted hmac=1]"),
                                  ("Cookie", "sid=1"), ("X-Api-Key", "k"),
                                  ("Content-Type", "application/json"), ("Accept", "*/*"),
                                  ("X-Trace", "[redacted hmac=2]"), ("If-None-Match", "e")])
    names = [name for name, _ in headers]
    assert names == ["User-Agent", "Content-Type", "Accept"]


def _row(method: str, uri: str, status: int, headers: list[tuple[str, str]] | None = None,
         host: str = "h") -> dict:
    return {"method": method, "host": host, "uri": uri, "status": status,
            "request_headers": headers or [], "request_body": b"", "response_body": b"{}"}


def _doc(method: str, template: str, host: str = "h") -> dict:
    return {"host": host, "method": method, "path_template": template, "auth": ["bearer"],
            "count": 3}


def test_build_plan_groups_examples_under_the_most_literal_template() -> None:
    """/users/me is not an example of /users/{id}; 2xx examples come first; other hosts out."""
    alice = Principal("alice", (("Authorization", "Bearer A"),), owns=("/users/9",))
    auth = redact_headers([("Authorization", "Bearer A")], KEY)
    recorded = [_row("GET", "/users/1", 404), _row("GET", "/users/me", 200),
                _row("GET", "/users/2", 200, auth), _row("GET", "/users/3", 200, host="x"),
                _row("GET", "/orphan", 200)]
    plan = build_plan(recorded, [_doc("GET", "/users/{id}"), _doc("GET", "/users/me")],
                      [alice], KEY)
    by_template = {e.key.path_template: e for e in plan}
    assert [x.path for x in by_template["/users/me"].examples] == ["/users/me"]
    users = by_template["/users/{id}"]
    assert [x.path for x in users.examples] == ["/users/2", "/users/1"]
    assert users.examples[0].principal == "alice" and users.examples[1].principal is None
    assert users.path_params == [(2, "id")] and users.auth_recorded
    assert declared_objects(users, [alice]) == [("alice", "/users/9")]
    assert declared_objects(by_template["/users/me"], [alice]) == []
