"""The spec lint: planted flaws found at their pointers and lines, a clean twin, rule edges."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from mirrorscope.analysis.openapi import load_spec
from mirrorscope.analysis.speclint import SpecLintError, lint_spec
from mirrorscope.analysis.speclint_lines import line_map
from mirrorscope.analysis.speclint_rules import LEVELS, RULES
from mirrorscope.model import EndpointKey, EndpointSummary

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
PLANTED = re.compile(r"#\s*planted:\s*(MSL\d{3})\s+(\S+)")


def _planted(text: str) -> set[tuple[str, str, int]]:
    """(rule, pointer, line) of every `# planted:` comment: the test's own expectations."""
    found = set()
    for number, line in enumerate(text.splitlines(), start=1):
        match = PLANTED.search(line)
        if match:
            found.add((match.group(1), match.group(2), number))
    return found


def _lint(spec: dict, **kwargs) -> list:
    return lint_spec(spec, **kwargs)


def _ids(results) -> list[tuple[str, str]]:
    return sorted((r.rule_id, r.pointer) for r in results)


# ------------------------------------------------------------------ the test specs


@pytest.mark.parametrize("name", ["vulnerable.yaml", "clean.yaml", "demo-subset.yaml"])
def test_test_specs_are_valid_openapi(name: str) -> None:
    """The specs the tests lint are themselves valid OpenAPI documents."""
    validate(yaml.safe_load((SPECS / name).read_text(encoding="utf-8")))


def test_every_planted_flaw_is_found_at_its_pointer_and_line() -> None:
    """The vulnerable spec yields exactly the planted results, on the commented lines."""
    text = (SPECS / "vulnerable.yaml").read_text(encoding="utf-8")
    planted = _planted(text)
    assert {rule for rule, _, _ in planted} == {rule.id for rule in RULES}  # every rule planted
    results = lint_spec(load_spec(text), line_map(text))
    assert {(r.rule_id, r.pointer, r.line) for r in results} == planted


def test_clean_twin_reports_nothing() -> None:
    """The fixed twin of the vulnerable spec has no result at all."""
    text = (SPECS / "clean.yaml").read_text(encoding="utf-8")
    assert lint_spec(load_spec(text), line_map(text)) == []


def test_results_carry_rule_levels_and_operations() -> None:
    """Default levels come from the catalogue; component results list the operations."""
    text = (SPECS / "vulnerable.yaml").read_text(encoding="utf-8")
    results = lint_spec(load_spec(text))
    levels = {rule.id: rule.level for rule in RULES}
    for r in results:
        assert r.level == levels[r.rule_id] and r.level in LEVELS
        assert r.line is None  # no line map given
    role = next(r for r in results if r.rule_id == "MSL010")
    assert role.operations == [("POST", "/users")] and role.field_path == "role"
    server = next(r for r in results if r.rule_id == "MSL003")
    assert ("GET", "/health") in server.operations and len(server.operations) == 7


def test_json_source_gets_line_numbers_too() -> None:
    """A JSON spec maps pointers to the line of their key."""
    doc = yaml.safe_load((SPECS / "vulnerable.yaml").read_text(encoding="utf-8"))
    text = json.dumps(doc, indent=2)
    lines = text.splitlines()
    results = lint_spec(load_spec(text), line_map(text))
    by_pointer = {r.pointer: r.line for r in results}
    assert '"url": "http://api.example.com/v1"' in lines[by_pointer["/servers/1/url"] - 1]
    bio = by_pointer["/components/schemas/UserCreate/properties/bio"]
    assert lines[bio - 1].strip().startswith('"bio"')
    assert line_map("{not: [valid") == {}


# ------------------------------------------------------------------ rule edges


def _doc(version: str = "3.0.3", **extra) -> dict:
    """A minimal secured, rate-limited, clean document to break one thing at a time."""
    doc = {
        "openapi": version, "info": {"title": "t", "version": "1"},
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {"/things": {"get": {"responses": {
            "200": {"description": "ok"}, "401": {"description": "no"},
            "403": {"description": "no"}, "429": {"description": "slow down"}}}}},
    }
    doc.update(extra)
    return doc


def _op(doc: dict, method: str = "get", path: str = "/things") -> dict:
    return doc["paths"][path][method]


def test_minimal_document_is_clean() -> None:
    """The building block itself raises nothing."""
    assert _lint(_doc()) == []
    assert _lint(_doc("3.1.0")) == []


def test_no_security_anywhere() -> None:
    """No global and no operation security: MSL001 at the operation."""
    doc = _doc()
    del doc["security"]
    results = _lint(doc)
    assert _ids(results) == [("MSL001", "/paths/~1things/get")]
    assert "no global" in results[0].message


def test_empty_global_security_is_reported_once() -> None:
    """`security: []` at the top: one MSL001 at /security naming every operation."""
    doc = _doc(security=[])
    doc["paths"]["/other"] = copy.deepcopy(doc["paths"]["/things"])
    results = _lint(doc)
    assert _ids(results) == [("MSL001", "/security")]
    assert results[0].operations == [("GET", "/things"), ("GET", "/other")]


def test_global_optional_auth_is_reported_once_with_every_operation() -> None:
    """`{}` in the global list: one MSL002 at /security, listing the inheriting operations."""
    doc = _doc(security=[{"bearer": []}, {}])
    _op(doc)["responses"].pop("401")
    doc["paths"]["/other"] = copy.deepcopy(doc["paths"]["/things"])
    results = _lint(doc)
    assert _ids(results) == [("MSL002", "/security")]  # not secured: no MSL012 either
    assert results[0].operations == [("GET", "/things"), ("GET", "/other")]


def test_server_urls() -> None:
    """Plain http on a real host is flagged; localhost and variables defaulting to it are not."""
    doc = _doc(servers=[
        {"url": "http://{host}/v1", "variables": {"host": {"default": "localhost"}}},
        {"url": "http://127.0.0.1:8080"},
        {"url": "https://api.example.com"},
        {"url": "/relative"},
        {"url": "HTTP://{host}/v1", "variables": {"host": {"default": "api.example.com"}}},
    ])
    _op(doc)["servers"] = [{"url": "http://ops.example.com"}]
    assert _ids(_lint(doc)) == [("MSL003", "/paths/~1things/get/servers/0/url"),
                                ("MSL003", "/servers/4/url")]


def test_strings_31_type_lists_and_formats() -> None:
    """3.1 nullable strings count as strings; binary/password formats bound nothing."""
    doc = _doc("3.1.0")
    _op(doc)["parameters"] = [
        {"name": "q", "in": "query", "schema": {"type": ["string", "null"]}},
        {"name": "when", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "code", "in": "header", "schema": {"type": "string", "format": "password"}},
        {"name": "kind", "in": "query", "schema": {"type": "string", "const": "a"}},
    ]
    assert _ids(_lint(doc)) == [("MSL006", "/paths/~1things/get/parameters/0/schema"),
                                ("MSL006", "/paths/~1things/get/parameters/2/schema")]


def test_path_level_parameter_is_one_result_for_all_operations() -> None:
    """A shared parameter is reported once, with both operations."""
    doc = _doc()
    doc["paths"]["/things"]["parameters"] = [{"name": "tag", "in": "query",
                                              "schema": {"type": "array",
                                                         "items": {"type": "integer"}}}]
    doc["paths"]["/things"]["delete"] = copy.deepcopy(_op(doc))
    results = _lint(doc)
    assert _ids(results) == [("MSL007", "/paths/~1things/parameters/0/schema")]
    assert results[0].operations == [("GET", "/things"), ("DELETE", "/things")]


def test_pagination_names_and_bounds() -> None:
    """Page-size names are normalised; maximum or enum bounds them; other names do not count."""
    doc = _doc()
    _op(doc)["parameters"] = [
        {"name": "pageSize", "in": "query", "schema": {"type": "integer"}},
        {"name": "per-page", "in": "query", "schema": {"type": "integer", "maximum": 50}},
        {"name": "size", "in": "query", "schema": {"type": "integer", "enum": [10, 20]}},
        {"name": "offset", "in": "query", "schema": {"type": "integer"}},
        {"name": "limit", "in": "header", "schema": {"type": "integer"}},
    ]
    assert _ids(_lint(doc)) == [("MSL008", "/paths/~1things/get/parameters/0/schema")]


def _with_body(doc: dict, schema: dict, method: str = "post") -> dict:
    operation = copy.deepcopy(_op(doc))
    operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    doc["paths"]["/things"][method] = operation
    return doc


def test_mass_assignment_variants() -> None:
    """Open objects on writes are flagged; closed, typed maps and 3.1 unevaluated are not."""
    closed = {"type": "object", "additionalProperties": False,
              "properties": {"n": {"type": "integer"}}}
    assert _lint(_with_body(_doc(), closed)) == []
    typed_map = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert _lint(_with_body(_doc(), typed_map)) == []
    open_true = {"type": "object", "additionalProperties": True,
                 "properties": {"n": {"type": "integer"}}}
    results = _lint(_with_body(_doc(), open_true))
    assert _ids(results) == [("MSL009", "/paths/~1things/post/requestBody/content/"
                                        "application~1json/schema")]
    assert "is true" in results[0].message
    composed = {"allOf": [{"type": "object", "properties": {"n": {"type": "integer"}}},
                          {"type": "object", "properties": {"m": {"type": "integer"}}}],
                "unevaluatedProperties": False}
    assert _lint(_with_body(_doc("3.1.0"), composed)) == []
    composed.pop("unevaluatedProperties")
    assert [r.rule_id for r in _lint(_with_body(_doc("3.1.0"), composed))] == ["MSL009"] * 2
    # The same open body on a GET is no mass assignment.
    assert _lint(_with_body(_doc(), open_true, method="get")) == []


def test_server_owned_fields() -> None:
    """Privilege fields anywhere, ids at the top only; readOnly (even beside a 3.1 $ref) exempts."""
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "isAdmin": {"type": "boolean"},
        "id": {"type": "integer"},
        "owner_id": {"$ref": "#/components/schemas/Id", "readOnly": True},
        "created_at": {"type": "string", "format": "date-time", "readOnly": True},
        "lines": {"type": "array", "maxItems": 5, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"id": {"type": "integer"}, "role": {"type": "string", "enum": ["a"]}}}},
    }}
    doc = _with_body(_doc("3.1.0"), schema, method="put")
    doc["components"]["schemas"] = {"Id": {"type": "integer"}}
    base = "/paths/~1things/put/requestBody/content/application~1json/schema/properties"
    assert _ids(_lint(doc)) == [("MSL010", f"{base}/id"), ("MSL010", f"{base}/isAdmin"),
                                ("MSL010", f"{base}/lines/items/properties/role")]


def test_ref_cycles_terminate() -> None:
    """A recursive schema is walked once per place, not forever."""
    doc = _doc()
    doc["components"]["schemas"] = {"Node": {
        "type": "object", "additionalProperties": False,
        "properties": {"label": {"type": "string"},
                       "children": {"type": "array", "maxItems": 3,
                                    "items": {"$ref": "#/components/schemas/Node"}}}}}
    _with_body(doc, {"$ref": "#/components/schemas/Node"})
    assert _ids(_lint(doc)) == [("MSL006", "/components/schemas/Node/properties/label")]


def test_sensitive_response_fields() -> None:
    """Names and formats; tokens are fine on token issuers; writeOnly and 'about' names pass."""
    props = {"access_token": {"type": "string"}, "token_type": {"type": "string"},
             "password_hint": {"type": "string"}, "pin": {"type": "string"},
             "secret": {"type": "string", "writeOnly": True},
             "passcode_field": {"type": "string"}, "other": {"type": "string",
                                                             "format": "password"}}
    doc = _doc()
    _op(doc)["responses"]["200"]["content"] = {"application/json": {"schema": {
        "type": "object", "properties": props}}}
    doc["paths"]["/oauth/token"] = copy.deepcopy(doc["paths"]["/things"])
    found = {(r.pointer.rsplit("/", 1)[-1], *r.operations) for r in _lint(doc)}
    assert found == {("access_token", ("GET", "/things")),
                     ("pin", ("GET", "/things")), ("pin", ("GET", "/oauth/token")),
                     ("passcode_field", ("GET", "/things")),
                     ("passcode_field", ("GET", "/oauth/token")),
                     ("other", ("GET", "/things")), ("other", ("GET", "/oauth/token"))}


def test_status_code_ranges_and_sunset_header() -> None:
    """4XX covers 401/403/429; a lower-case sunset header (via $ref) announces the sunset."""
    doc = _doc()
    _op(doc)["responses"] = {"200": {"$ref": "#/components/responses/Ok"},
                             "4XX": {"description": "client error"}}
    _op(doc)["deprecated"] = True
    doc["components"]["responses"] = {"Ok": {"description": "ok", "headers": {
        "sunset": {"schema": {"type": "string"}}}}}
    assert _lint(doc) == []
    del doc["components"]["responses"]["Ok"]["headers"]
    assert _ids(_lint(doc)) == [("MSL014", "/paths/~1things/get/deprecated")]


def test_unsupported_versions_are_refused() -> None:
    """Swagger 2.0 and unknown versions raise SpecLintError, not a traceback further down."""
    with pytest.raises(SpecLintError, match=r"Swagger 2\.0"):
        lint_spec({"swagger": "2.0", "paths": {}})
    with pytest.raises(SpecLintError, match="unsupported"):
        lint_spec({"openapi": "4.0.0", "paths": {}})


def test_external_and_dangling_refs_are_skipped() -> None:
    """A $ref to another file or to nothing is not followed (and does not crash)."""
    doc = _with_body(_doc(), {"$ref": "other.yaml#/Thing"})
    doc["paths"]["/things"]["put"] = copy.deepcopy(_op(doc, "post"))
    doc["paths"]["/things"]["put"]["requestBody"] = {"$ref": "#/components/requestBodies/Nope"}
    assert _lint(doc) == []


# ------------------------------------------------------------------ traffic


def _summary(method: str, template: str, count: int = 10, span: float = 100.0,
             **doc) -> EndpointSummary:
    key = EndpointKey("api.example.com", method, template)
    return EndpointSummary(key, count, 1000.0, 1000.0 + span,
                           {"host": key.host, "method": method, "path_template": template,
                            "count": count, **doc})


def test_traffic_marks_observed_and_confirms_only_what_it_shows() -> None:
    """Evidence comes from the inventory's counters; an unrelated endpoint confirms nothing."""
    doc = _doc(servers=[{"url": "http://api.example.com"}])
    del doc["security"]
    doc["paths"]["/things/{id}"] = copy.deepcopy(doc["paths"]["/things"])
    observed = [
        _summary("GET", "/things", auth_detail={"unauthenticated_2xx": 4}),
        _summary("GET", "/things/{id}", auth_detail={"unauthenticated_2xx": 0}),
        _summary("GET", "/elsewhere", auth_detail={"unauthenticated_2xx": 9}),
    ]
    results = {(r.rule_id, r.pointer): r for r in lint_spec(doc, observed=observed)}
    plain = results[("MSL001", "/paths/~1things/get")]
    assert plain.observed_in_traffic and plain.observed_requests == 10
    assert len(plain.traffic_evidence) == 1 and "4 request(s) without credentials" in \
        plain.traffic_evidence[0]
    templated = results[("MSL001", "/paths/~1things~1{id}/get")]
    assert templated.observed_in_traffic and templated.traffic_evidence == []
    cleartext = results[("MSL003", "/servers/0/url")]
    assert cleartext.observed_requests == 20 and len(cleartext.traffic_evidence) == 2


def test_traffic_checks_per_rule() -> None:
    """Query keys, Basic, undeclared and server-owned fields, 401s, busy endpoints, zombies."""
    doc = _with_body(_doc(), {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 9}, "role": {"type": "string", "maxLength": 9}}})
    del _op(doc, "post")["responses"]["429"]
    doc["components"]["securitySchemes"]["key"] = {"type": "apiKey", "in": "query",
                                                   "name": "api_key"}
    doc["components"]["securitySchemes"]["basic"] = {"type": "http", "scheme": "basic"}
    _op(doc)["security"] = [{"key": [], "basic": []}]
    _op(doc)["deprecated"] = True
    del _op(doc)["responses"]["401"]
    request_schema = {"n": 30, "types": {"object": 30}, "properties": {
        "name": {"n": 30, "types": {"string": 30}},
        "role": {"n": 2, "types": {"string": 2}},
        "is_admin": {"n": 1, "types": {"boolean": 1}}}}
    observed = [
        _summary("GET", "/things", count=40, span=10.0, status_codes={"200": 30, "401": 10},
                 parameters=[{"name": "api_key", "in": "query", "count": 40}],
                 auth_detail={"counts": {"basic": 7, "apikey:query:api_key": 40}}),
        _summary("POST", "/things", count=30, span=2.0, status_codes={"201": 30},
                 schemas={"request": {"application/json": request_schema}}),
    ]
    results = lint_spec(doc, observed=observed)
    by_rule = {r.rule_id: r for r in results}
    assert len(by_rule) == len(results) == 7
    assert "'api_key' was in the query string of 40" in by_rule["MSL004"].traffic_evidence[0]
    assert "7 request(s) carried HTTP Basic" in by_rule["MSL005"].traffic_evidence[0]
    assert "is_admin" in by_rule["MSL009"].traffic_evidence[0]
    assert "name" not in by_rule["MSL009"].traffic_evidence[0].split(":")[-1]
    assert "'role'" in by_rule["MSL010"].traffic_evidence[0]
    assert "401 10 time(s)" in by_rule["MSL012"].traffic_evidence[0]
    assert "30 requests within 2.0 s" in by_rule["MSL013"].traffic_evidence[0]
    assert "still called 40 time(s)" in by_rule["MSL014"].traffic_evidence[0]


def test_quiet_endpoint_does_not_confirm_missing_429() -> None:
    """30 requests over 100 s is no sign of a missing rate limit; a 429 seen is none either."""
    doc = _doc()
    del _op(doc)["responses"]["429"]
    for observed in ([_summary("GET", "/things", count=30, span=100.0)],
                     [_summary("GET", "/things", count=500, span=1.0,
                               status_codes={"429": 3})]):
        (result,) = lint_spec(doc, observed=observed)
        assert result.rule_id == "MSL013" and result.observed_in_traffic
        assert result.traffic_evidence == []
