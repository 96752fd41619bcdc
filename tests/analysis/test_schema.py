"""JSON schema inference: types, required/optional, formats, enums, maps, merging, bounds."""

from __future__ import annotations

import json

import pytest

from mirrorscope.analysis.schema import (
    SchemaLimits,
    SchemaStats,
    dominant_type,
    infer_scalar,
    is_dynamic_key,
    string_format,
    to_json_schema,
)

LIMITS = SchemaLimits()
SAMPLES = [
    {"id": 1, "status": "paid", "email": "a@example.org", "tags": ["x"], "note": None,
     "created": "2024-01-02T03:04:05Z", "owner": {"uuid": "123e4567-e89b-12d3-a456-426614174000"}},
    {"id": 2, "status": "shipped", "email": "b@example.org", "tags": [], "note": "fragile",
     "created": "2024-01-03T03:04:05Z", "owner": {"uuid": "123e4567-e89b-12d3-a456-426614174001"}},
    {"id": 3, "status": "paid", "email": "c@example.org", "tags": ["y", "z"],
     "created": "2024-01-04T03:04:05+02:00",
     "owner": {"uuid": "123e4567-e89b-12d3-a456-426614174002"}, "price": 9.5},
    {"id": 4, "status": "paid", "email": "d@example.org", "tags": ["y"], "note": "x",
     "created": "2024-01-05T00:00:00Z", "owner": {"uuid": "123e4567-e89b-12d3-a456-426614174003"},
     "price": 10},
]


def _infer(samples: list[object], visit: object = None) -> SchemaStats:
    stats = SchemaStats()
    for sample in samples:
        stats.observe(sample, LIMITS, visit)  # type: ignore[arg-type]
    return stats


def test_required_optional_types_formats_enums() -> None:
    schema = to_json_schema(_infer(SAMPLES))
    assert schema["type"] == "object"
    assert schema["required"] == ["created", "email", "id", "owner", "status", "tags"]
    props = schema["properties"]
    assert props["id"] == {"type": "integer"}
    assert props["note"]["type"] == ["null", "string"]
    assert props["price"] == {"type": "number"}  # 9.5 and 10 seen
    assert props["email"] == {"type": "string", "format": "email"}
    assert props["created"] == {"type": "string", "format": "date-time"}
    assert props["owner"]["properties"]["uuid"]["format"] == "uuid"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert "enum" not in props["status"]  # 4 samples of 2 values: not repeated enough
    repeated = to_json_schema(_infer([{"status": s} for s in ["paid", "shipped"] * 4]))
    assert repeated["properties"]["status"]["enum"] == ["paid", "shipped"]


def test_inferred_schema_accepts_every_sample() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = to_json_schema(_infer(SAMPLES))
    for sample in SAMPLES:
        jsonschema.validate(sample, schema, format_checker=jsonschema.FormatChecker())


def test_no_enum_for_sensitive_long_or_varied_values() -> None:
    stats = _infer([{"password": "hunter2"}] * 8, visit=lambda path, name, value: True)
    assert "enum" not in to_json_schema(stats)["properties"]["password"]
    assert "values" not in stats.to_doc()["properties"]["password"]  # type: ignore[index]
    varied = _infer([{"code": f"c{i}"} for i in range(20)])
    assert "enum" not in to_json_schema(varied)["properties"]["code"]
    once = _infer([{"state": "open"}])  # one sample: not enough repetition for an enum
    assert "enum" not in to_json_schema(once)["properties"]["state"]


def test_visitor_sees_paths() -> None:
    seen: list[tuple[str, str]] = []
    _infer([{"a": {"b": [{"c": "x"}]}, "n": 3}],
           visit=lambda path, name, value: seen.append((path, name)) or False)
    assert seen == [("a.b[].c", "c"), ("n", "n")]


def test_maps_keyed_by_ids_or_versions_are_one_schema() -> None:
    doc = {"versions": {"1.0.0": {"author": {"email": "a@b.org"}},
                        "1.0.1-beta.2": {"author": {"email": "a@b.org"}},
                        "2.0.0": {"author": {"email": "c@d.org"}}}}
    paths: list[str] = []
    stats = _infer([doc], visit=lambda path, name, value: paths.append(path) or False)
    assert set(paths) == {"versions.*.author.email"}
    schema = to_json_schema(stats)
    versions = schema["properties"]["versions"]
    assert "properties" not in versions
    assert versions["additionalProperties"]["properties"]["author"]["required"] == ["email"]
    assert stats.field_paths() == {"versions", "versions.*", "versions.*.author",
                                   "versions.*.author.email"}
    assert is_dynamic_key("42") and is_dynamic_key("v1.2.3") and not is_dynamic_key("name")


def test_merge_equals_inference_over_all_samples() -> None:
    whole = _infer(SAMPLES)
    left, right = _infer(SAMPLES[:2]), _infer(SAMPLES[2:])
    merged = left.absorb(right)
    assert merged.to_doc() == whole.to_doc()
    assert to_json_schema(merged) == to_json_schema(whole)


def test_doc_round_trip() -> None:
    stats = _infer(SAMPLES)
    doc = json.loads(json.dumps(stats.to_doc()))
    assert SchemaStats.from_doc(doc).to_doc() == stats.to_doc()


def test_bounds() -> None:
    limits = SchemaLimits(max_depth=3, max_properties=5, max_items_sampled=2)
    stats = SchemaStats()
    stats.observe({f"k{i}": i for i in range(10)}, limits)
    assert len(stats.properties) == 5 and stats.truncated
    deep = SchemaStats()
    deep.observe({"a": {"b": {"c": {"d": {"e": 1}}}}}, limits)
    c = deep.properties["a"].properties["b"].properties["c"]
    assert c.truncated and not c.properties
    arr = SchemaStats()
    arr.observe(list(range(100)), limits)
    assert arr.items is not None and arr.items.n == 2


def test_scalars() -> None:
    assert infer_scalar("12") == ("integer", None)
    assert infer_scalar("-1.5e3") == ("number", None)
    assert infer_scalar("true") == ("boolean", None)
    assert infer_scalar("2024-02-01") == ("string", "date")
    assert infer_scalar("10.1.2.3") == ("string", "ipv4")
    assert infer_scalar("::1") == ("string", None)  # too short to call it anything
    assert infer_scalar("2001:db8::1") == ("string", "ipv6")
    assert infer_scalar("https://example.org/x") == ("string", "uri")
    assert infer_scalar("007x") == ("string", None)
    assert string_format("2024-13-01") is None
    assert dominant_type({"integer": 3, "number": 1}) == "number"
    assert dominant_type({"integer": 3, "string": 1}) == "string"
    assert dominant_type({"null": 2, "boolean": 1}) == "boolean"
