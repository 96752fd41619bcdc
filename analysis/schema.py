"""JSON schema inference merged across samples, and scalar type/format inference.

`SchemaStats` records what was seen at one position of a JSON document (types, properties
with how often each was present, array items, string formats, a few distinct short values
for enums, numeric range).  It merges with another (two samples, two sensors), serialises
to a plain JSON-able dict (the inventory document stores that) and renders a JSON Schema
(2020-12 / OpenAPI 3.1).  Every structure is bounded.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mirrorscope.analysis.templating_segments import typed_kind

_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s]+")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_INT = re.compile(r"-?(0|[1-9]\d{0,18})")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")

_SEMVER = re.compile(r"v?\d+\.\d+(\.\d+){0,2}([-+][0-9A-Za-z.\-+]*)?")
WILDCARD = "*"  # the property name standing for dynamic keys (ids, versions, dates ...)

JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


# Object keys repeat on every body of an endpoint ("id", "name", "items"): their verdicts
# are remembered.  Bounded: dropped whole when full; long keys are not kept.
_DYNAMIC_KEY_CACHE_ENTRIES = 8192
_DYNAMIC_KEY_CACHE_MAX = 64  # characters
_dynamic_key_cache: dict[str, bool] = {}


def is_dynamic_key(key: str) -> bool:
    """True for an object key that is a value (an id, a version, a date), not a field name."""
    found = _dynamic_key_cache.get(key)
    if found is None:
        found = typed_kind(key) is not None or _SEMVER.fullmatch(key) is not None
        if len(key) <= _DYNAMIC_KEY_CACHE_MAX:
            if len(_dynamic_key_cache) >= _DYNAMIC_KEY_CACHE_ENTRIES:
                _dynamic_key_cache.clear()
            _dynamic_key_cache[key] = found
    return found


def string_format(value: str) -> str | None:
    """The JSON Schema format of a string value (date-time, date, email, uuid, uri, ipv4, ipv6)."""
    n = len(value)
    if n < 7 or n > 2048:
        return None
    first = value[0]
    if first.isdigit():
        if n == 10 and _DATE.fullmatch(value):
            return "date"
        if n >= 16 and _DATETIME.fullmatch(value):
            return "date-time"
        if n <= 15 and _IPV4.fullmatch(value):
            return "ipv4"
    if n == 36 and _UUID.fullmatch(value):
        return "uuid"
    if "@" in value and _EMAIL.fullmatch(value):
        return "email"
    if "://" in value and _URI.fullmatch(value):
        return "uri"
    if ":" in value and n <= 45 and all(c in "0123456789abcdefABCDEF:." for c in value):
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return "ipv6"
    return None


def infer_scalar(text: str) -> tuple[str, str | None]:
    """The (type, format) of a query/header/form value given as text."""
    if _INT.fullmatch(text):
        return "integer", None
    if _NUMBER.fullmatch(text):
        return "number", None
    if text in ("true", "false"):
        return "boolean", None
    return "string", string_format(text)


# The exact types json.loads returns; json_type's isinstance chain covers subclasses.
_EXACT_JSON_TYPES: dict[type, str] = {type(None): "null", bool: "boolean", int: "integer",
                                      float: "number", str: "string", list: "array",
                                      dict: "object"}


def json_type(value: object) -> str:
    """The JSON type name of a decoded JSON value."""
    exact = _EXACT_JSON_TYPES.get(type(value))
    if exact is not None:
        return exact
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def dominant_type(types: Counter[str] | dict[str, int]) -> str:
    """One type for a counter of observed types (integer+number -> number, mixed -> string)."""
    seen = {t for t, n in types.items() if n > 0 and t != "null"}
    if not seen:
        return "null" if types else "string"
    if len(seen) == 1:
        return next(iter(seen))
    if seen <= {"integer", "number"}:
        return "number"
    return "string"


@dataclass(slots=True)
class SchemaLimits:
    """Bounds of schema inference."""

    max_depth: int = 12
    max_properties: int = 128
    max_items_sampled: int = 32  # array elements walked per array
    max_values: int = 8  # distinct short strings kept for enums
    max_value_len: int = 40


# A leaf visitor: (dotted path, field name, value) -> True when the value is sensitive
# (then its value is never kept for enums).
LeafVisitor = Callable[[str, str, object], bool]


class SchemaStats:
    """What was observed at one position of JSON documents."""

    __slots__ = ("formats", "items", "maximum", "minimum", "n", "properties", "truncated",
                 "types", "values", "values_overflow")

    def __init__(self) -> None:
        self.n = 0
        self.types: Counter[str] = Counter()
        self.properties: dict[str, SchemaStats] = {}
        self.items: SchemaStats | None = None
        self.formats: Counter[str] = Counter()
        self.values: set[str] = set()
        self.values_overflow = False  # too many distinct values, or sensitive: no enum
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.truncated = False  # a bound cut properties or depth here

    # ---------------------------------------------------------------- observing

    def observe(self, value: object, limits: SchemaLimits, visit: LeafVisitor | None = None,
                path: str = "", name: str = "", depth: int = 0) -> None:
        """Add one sample (a decoded JSON value)."""
        self.n += 1
        kind = json_type(value)
        self.types[kind] += 1
        if kind == "object":
            if depth >= limits.max_depth:
                self.truncated = True
                return
            assert isinstance(value, dict)
            wild_seen = False
            for key, child_value in value.items():
                key = str(key)
                if is_dynamic_key(key):
                    # A map keyed by ids or versions ({"1.0.2": {...}}): one schema for all
                    # values (additionalProperties), counted once per object.
                    child = self.properties.get(WILDCARD)
                    if child is None:
                        child = self.properties[WILDCARD] = SchemaStats()
                    child_path = f"{path}.{WILDCARD}" if path else WILDCARD
                    child.observe(child_value, limits, visit, child_path, name, depth + 1)
                    if wild_seen:
                        child.n -= 1  # presence counts objects, not keys
                    wild_seen = True
                    continue
                child = self.properties.get(key)
                if child is None:
                    if len(self.properties) >= limits.max_properties:
                        self.truncated = True
                        continue
                    child = self.properties[key] = SchemaStats()
                child_path = f"{path}.{key}" if path else key
                child.observe(child_value, limits, visit, child_path, key, depth + 1)
        elif kind == "array":
            if depth >= limits.max_depth:
                self.truncated = True
                return
            assert isinstance(value, list)
            if self.items is None and value:
                self.items = SchemaStats()
            item_path = f"{path}[]"
            for element in value[: limits.max_items_sampled]:
                assert self.items is not None
                self.items.observe(element, limits, visit, item_path, name, depth + 1)
        elif kind in ("integer", "number"):
            number = float(value)  # type: ignore[arg-type]
            self.minimum = number if self.minimum is None else min(self.minimum, number)
            self.maximum = number if self.maximum is None else max(self.maximum, number)
            if visit is not None:
                visit(path, name, value)
        elif kind == "string":
            assert isinstance(value, str)
            sensitive = visit(path, name, value) if visit is not None else False
            fmt = string_format(value)
            if fmt is not None:
                self.formats[fmt] += 1
            if sensitive or fmt is not None or len(value) > limits.max_value_len:
                self.values_overflow = True
                self.values.clear()
            elif not self.values_overflow and value not in self.values:
                if len(self.values) >= limits.max_values:
                    self.values_overflow = True
                    self.values.clear()
                else:
                    self.values.add(value)

    # ------------------------------------------------------------------ merging

    def absorb(self, other: SchemaStats, limits: SchemaLimits | None = None) -> SchemaStats:
        """Merge another sample set into this one; returns self."""
        limits = limits or SchemaLimits()
        self.n += other.n
        self.types.update(other.types)
        self.formats.update(other.formats)
        for key, child in other.properties.items():
            mine = self.properties.get(key)
            if mine is not None:
                mine.absorb(child, limits)
            elif len(self.properties) < limits.max_properties:
                self.properties[key] = child.copy()
            else:
                self.truncated = True
        if other.items is not None:
            self.items = other.items.copy() if self.items is None else \
                self.items.absorb(other.items, limits)
        if other.values_overflow or self.values_overflow:
            self.values_overflow = True
            self.values.clear()
        else:
            union = self.values | other.values
            if len(union) > limits.max_values:
                self.values_overflow = True
                self.values.clear()
            else:
                self.values = union
        for bound in (other.minimum, other.maximum):
            if bound is not None:
                self.minimum = bound if self.minimum is None else min(self.minimum, bound)
                self.maximum = bound if self.maximum is None else max(self.maximum, bound)
        self.truncated = self.truncated or other.truncated
        return self

    def copy(self) -> SchemaStats:
        """A deep copy."""
        return SchemaStats.from_doc(self.to_doc())

    # ------------------------------------------------------------ serialisation

    def to_doc(self) -> dict[str, object]:
        """A plain JSON-able dict (lossless for from_doc)."""
        doc: dict[str, object] = {"n": self.n, "types": dict(sorted(self.types.items()))}
        if self.properties:
            doc["properties"] = {k: v.to_doc() for k, v in sorted(self.properties.items())}
        if self.items is not None:
            doc["items"] = self.items.to_doc()
        if self.formats:
            doc["formats"] = dict(sorted(self.formats.items()))
        if self.values and not self.values_overflow:
            doc["values"] = sorted(self.values)
        if self.values_overflow:
            doc["values_overflow"] = True
        if self.minimum is not None:
            doc["min"] = self.minimum
            doc["max"] = self.maximum
        if self.truncated:
            doc["truncated"] = True
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, object]) -> SchemaStats:
        """Rebuild from to_doc() output (tolerant of missing keys)."""
        stats = cls()
        stats.n = int(doc.get("n", 0))  # type: ignore[arg-type]
        stats.types = Counter({str(k): int(v) for k, v in
                               dict(doc.get("types") or {}).items()})  # type: ignore[call-overload]
        props = doc.get("properties") or {}
        stats.properties = {str(k): cls.from_doc(v) for k, v in props.items()}  # type: ignore[union-attr]
        items = doc.get("items")
        stats.items = cls.from_doc(items) if isinstance(items, dict) else None
        stats.formats = Counter({str(k): int(v) for k, v in
                                 dict(doc.get("formats") or {}).items()})  # type: ignore[call-overload]
        stats.values = {str(v) for v in doc.get("values") or ()}  # type: ignore[union-attr]
        stats.values_overflow = bool(doc.get("values_overflow", False))
        if doc.get("min") is not None:
            stats.minimum = float(doc["min"])  # type: ignore[arg-type]
            stats.maximum = float(doc["max"])  # type: ignore[arg-type]
        stats.truncated = bool(doc.get("truncated", False))
        return stats

    # --------------------------------------------------------------- rendering

    def field_paths(self, prefix: str = "", out: set[str] | None = None,
                    depth: int = 0) -> set[str]:
        """Every property path below this position ("a", "a.b", "items[].sku")."""
        out = set() if out is None else out
        if depth > 16:
            return out
        for key, child in self.properties.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            child.field_paths(path, out, depth + 1)
        if self.items is not None:
            self.items.field_paths(f"{prefix}[]", out, depth + 1)
        return out


def to_json_schema(stats: SchemaStats, *, enum_min_ratio: int = 4, depth: int = 0) -> dict:
    """A JSON Schema (2020-12, as OpenAPI 3.1 uses) for what was observed."""
    types = [t for t in JSON_TYPES if stats.types.get(t)]
    if "integer" in types and "number" in types:
        types.remove("integer")
    schema: dict[str, object] = {}
    if not types:
        return schema
    schema["type"] = types[0] if len(types) == 1 else types
    if "object" in types:
        objects = stats.types["object"]
        props = {k: to_json_schema(v, enum_min_ratio=enum_min_ratio, depth=depth + 1)
                 for k, v in sorted(stats.properties.items()) if k != WILDCARD}
        if props:
            schema["properties"] = props
            required = sorted(k for k, v in stats.properties.items()
                              if v.n >= objects and k != WILDCARD)
            if required:
                schema["required"] = required
        wild = stats.properties.get(WILDCARD)
        if wild is not None:
            schema["additionalProperties"] = to_json_schema(
                wild, enum_min_ratio=enum_min_ratio, depth=depth + 1)
    if "array" in types and stats.items is not None:
        schema["items"] = to_json_schema(stats.items, enum_min_ratio=enum_min_ratio,
                                         depth=depth + 1)
    strings = stats.types.get("string", 0)
    if strings:
        if len(stats.formats) == 1:
            fmt, count = next(iter(stats.formats.items()))
            if count == strings:
                schema["format"] = fmt
        if (stats.values and not stats.values_overflow and "format" not in schema
                and strings >= enum_min_ratio * len(stats.values) and types == ["string"]):
            schema["enum"] = sorted(stats.values)
    return schema
