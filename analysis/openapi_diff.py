"""Drift between the observed inventory and a user's OpenAPI spec (3.0, 3.1, Swagger 2.0).

Public contract: {"shadow": [...], "zombie": [...], "unused": [...], "drift": [...]}, each
entry carrying host, method and path_template (zombies also clients and last_seen).

- shadow: observed (and confirmed by a 2xx/3xx/401/403 answer), not in the spec;
- zombie: observed, and the spec marks the operation deprecated, or the spec only documents
  a newer version of it (/api/v1/x observed, /api/v2/x documented);
- unused: documented, never observed;
- drift: on matched operations, parameters / status codes / body fields the spec does not
  declare, required parameters never seen, and sensitive fields the spec does not declare.

Static assets (kind "static") are not API endpoints and never count as shadows.  HEAD and
OPTIONS on a documented path are not shadows either (servers answer them implicitly).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mirrorscope.analysis.openapi import OPENAPI_METHODS
from mirrorscope.analysis.schema import SchemaStats
from mirrorscope.model import EndpointSummary

_VERSION_SEGMENT = re.compile(r"[vV](\d{1,3})(.*)")
_MAX_REF_DEPTH = 32
_MAX_FIELDS = 2000
_MAX_LISTED = 50


@dataclass(slots=True)
class SpecOperation:
    """One documented operation, flattened."""

    method: str  # upper case
    path: str  # with the server base path
    spec_path: str  # as written in the spec
    segments: list[re.Pattern[str] | str | None]  # literal, None (whole-segment parameter) or regex
    deprecated: bool
    params: dict[tuple[str, str], bool] = field(default_factory=dict)  # (in, name) -> required
    statuses: set[str] = field(default_factory=set)
    request_fields: set[str] | None = None  # None: the spec declares no closed schema
    response_fields: dict[str, set[str] | None] = field(default_factory=dict)
    open_prefixes: set[str] = field(default_factory=set)


def _segments(path: str) -> list[re.Pattern[str] | str | None]:
    out: list[re.Pattern[str] | str | None] = []
    for seg in (s for s in path.split("/") if s):
        if "{" not in seg:
            out.append(seg)
        elif re.fullmatch(r"\{[^{}]*\}", seg):
            out.append(None)
        else:
            pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                              for part in re.split(r"(\{[^{}]*\})", seg) if part)
            out.append(re.compile(pattern))
    return out


def _map(node: object) -> dict:
    """A spec node expected to be an object; anything else (a user's typo) counts as empty."""
    return node if isinstance(node, dict) else {}


def _seq(node: object) -> list | tuple:
    """A spec node expected to be an array; anything else counts as empty."""
    return node if isinstance(node, list | tuple) else ()


def base_paths(spec: dict) -> tuple[list[str], set[str]]:
    """Server base paths and host names a spec declares."""
    return _base_paths(spec)


def best_operation(ops: list[SpecOperation], method: str, template: str) -> SpecOperation | None:
    """The spec operation matching an observed (method, path template) most specifically."""
    return _best(ops, method, template)


def _base_paths(spec: dict) -> tuple[list[str], set[str]]:
    """Server base paths and host names a spec declares."""
    bases: list[str] = []
    hosts: set[str] = set()
    if "swagger" in spec:
        bases.append(str(spec.get("basePath") or "").rstrip("/"))
        if spec.get("host"):
            hosts.add(str(spec["host"]).lower())
    for server in _seq(spec.get("servers")):
        url = str(server.get("url", "")) if isinstance(server, dict) else ""
        url = re.sub(r"\{[^}]*\}", "x", url) if "{" in url else url
        parts = urlsplit(url if "//" in url else "//x" + url if url.startswith("/") else url)
        if parts.netloc and parts.netloc != "x":
            netloc = parts.netloc.lower()
            default = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
            hosts.add(netloc[: -len(default)] if default and netloc.endswith(default) else netloc)
        bases.append(parts.path.rstrip("/"))
    return sorted(set(bases)) or [""], hosts


class _Resolver:
    """Local $ref resolution with a depth bound (cycles end at the bound)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def resolve(self, node: object, depth: int = 0) -> object:
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and \
                depth < _MAX_REF_DEPTH:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                return {}
            target: object = self.spec
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node = target if target is not None else {}
            depth += 1
        return node

    def fields(self, schema: object, prefix: str, out: set[str], open_prefixes: set[str],
               depth: int = 0) -> None:
        """Collect declared property paths of a schema (same format as SchemaStats)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > _MAX_REF_DEPTH or len(out) > _MAX_FIELDS:
            return
        for combinator in ("allOf", "anyOf", "oneOf"):
            for sub in _seq(schema.get(combinator)):
                self.fields(sub, prefix, out, open_prefixes, depth + 1)
        props = schema.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                path = f"{prefix}.{name}" if prefix else str(name)
                out.add(path)
                self.fields(sub, path, out, open_prefixes, depth + 1)
        additional = schema.get("additionalProperties")
        kind = schema.get("type")
        if additional not in (None, False) or (kind in (None, "object") and not props and
                                               "items" not in schema and
                                               not any(c in schema for c in
                                                       ("allOf", "anyOf", "oneOf"))):
            open_prefixes.add(prefix)
        if "items" in schema:
            self.fields(schema["items"], f"{prefix}[]", out, open_prefixes, depth + 1)


def spec_operations(spec: dict) -> list[SpecOperation]:
    """Every operation of a spec, with base paths applied and schemas flattened."""
    resolver = _Resolver(spec)
    bases, _ = _base_paths(spec)
    swagger2 = "swagger" in spec
    ops: list[SpecOperation] = []
    for spec_path, item in _map(spec.get("paths")).items():
        item = resolver.resolve(item)
        if not isinstance(item, dict) or not isinstance(spec_path, str):
            continue
        shared = [resolver.resolve(p) for p in _seq(item.get("parameters"))]
        for method in OPENAPI_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            for base in bases:
                full = (base + spec_path) if base else spec_path
                entry = SpecOperation(method.upper(), full, spec_path, _segments(full),
                                      bool(op.get("deprecated")))
                _fill(entry, op, shared, resolver, swagger2)
                ops.append(entry)
    return ops


def _fill(entry: SpecOperation, op: dict, shared: list[object], resolver: _Resolver,
          swagger2: bool) -> None:
    for param in [*shared, *(resolver.resolve(p) for p in _seq(op.get("parameters")))]:
        if not isinstance(param, dict) or "name" not in param:
            continue
        location = str(param.get("in", ""))
        if location == "body" and swagger2:
            fields: set[str] = set()
            resolver.fields(param.get("schema"), "", fields, entry.open_prefixes)
            entry.request_fields = fields
            continue
        name = str(param["name"]).lower() if location == "header" else str(param["name"])
        entry.params[(location, name)] = bool(param.get("required")) or location == "path"
    body = resolver.resolve(op.get("requestBody"))
    if isinstance(body, dict):
        fields = set()
        for media in _map(body.get("content")).values():
            if isinstance(media, dict) and "schema" in media:
                resolver.fields(media["schema"], "", fields, entry.open_prefixes)
        entry.request_fields = fields
    for status, response in _map(op.get("responses")).items():
        status = str(status).upper()
        entry.statuses.add(status)
        response = resolver.resolve(response)
        if not isinstance(response, dict):
            continue
        schemas = [response["schema"]] if swagger2 and "schema" in response else [
            media["schema"] for media in _map(response.get("content")).values()
            if isinstance(media, dict) and "schema" in media]
        if schemas:
            fields = set()
            for schema in schemas:
                resolver.fields(schema, "", fields, entry.open_prefixes)
            entry.response_fields[status] = fields


def _template_parts(template: str) -> list[str | None]:
    return [None if re.fullmatch(r"\{[^{}]*\}", s) else s for s in template.split("/") if s]


def _match_score(op: SpecOperation, parts: list[str | None]) -> int | None:
    """How specifically a spec path matches an observed template (None: no match)."""
    if len(op.segments) != len(parts):
        return None
    score = 0
    for spec_seg, seen in zip(op.segments, parts, strict=True):
        if spec_seg is None:
            continue
        if seen is None:
            return None  # a parameter observed where the spec has a fixed segment
        if isinstance(spec_seg, str):
            if spec_seg != seen:
                return None
            score += 2
        elif spec_seg.fullmatch(seen):
            score += 1
        else:
            return None
    return score


def _best(ops: list[SpecOperation], method: str, template: str) -> SpecOperation | None:
    parts = _template_parts(template)
    best: tuple[int, SpecOperation] | None = None
    for op in ops:
        if op.method != method:
            continue
        score = _match_score(op, parts)
        if score is not None and (best is None or score > best[0]):
            best = (score, op)
    return best[1] if best else None


def _newer_version(ops: list[SpecOperation], method: str, template: str) -> SpecOperation | None:
    """A documented operation that is this template with a higher version segment."""
    segments = [s for s in template.split("/") if s]
    for i, seg in enumerate(segments):
        m = _VERSION_SEGMENT.fullmatch(seg)
        if not m:
            continue
        for op in ops:
            if op.method != method or len(op.segments) != len(segments):
                continue
            other = op.segments[i]
            om = _VERSION_SEGMENT.fullmatch(other) if isinstance(other, str) else None
            if om is None or int(om.group(1)) <= int(m.group(1)):
                continue
            swapped = "/" + "/".join([*segments[:i], other, *segments[i + 1:]])
            if _match_score(op, _template_parts(swapped)) is not None:
                return op
    return None


def _clients(doc: dict) -> dict[str, object]:
    clients = doc.get("clients") or {}
    return {"count": clients.get("count", 0),
            "ips": [{k: c[k] for k in ("ip", "count", "last_seen")}
                    for c in (clients.get("ips") or [])[:20]],
            "principals": [p["id"] for p in (clients.get("principals") or [])[:20]]}


def _observed_entry(s: EndpointSummary) -> dict[str, object]:
    doc = s.doc
    return {"host": s.key.host, "method": s.key.method, "path_template": s.key.path_template,
            "count": s.count, "first_seen": s.first_seen, "last_seen": s.last_seen,
            "clients": _clients(doc), "status_codes": doc.get("status_codes", {}),
            "auth": doc.get("auth", []),
            "sensitive": [{k: x[k] for k in ("type", "location", "field")}
                          for x in doc.get("sensitive") or ()]}


def _declared(path: str, fields: set[str], open_prefixes: set[str]) -> bool:
    if path in fields:
        return True
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[]")
               or p == "" for p in open_prefixes)


def _drift(s: EndpointSummary, op: SpecOperation) -> list[dict[str, object]]:
    doc = s.doc
    base = {"host": s.key.host, "method": s.key.method, "path_template": s.key.path_template,
            "spec_path": op.spec_path}
    out: list[dict[str, object]] = []
    seen_params: set[tuple[str, str]] = set()
    for param in doc.get("parameters") or ():
        location, name = str(param["in"]), str(param["name"])
        key = (location, name.lower() if location == "header" else name)
        seen_params.add(key)
        if location != "path" and key not in op.params:
            out.append({**base, "kind": "undeclared_parameter", "in": location, "name": name})
    for (location, name), required in sorted(op.params.items()):
        if required and location in ("query", "header") and (location, name) not in seen_params:
            out.append({**base, "kind": "required_parameter_not_seen", "in": location,
                        "name": name})
    ranges = {s[0] + "XX" for s in op.statuses if len(s) == 3}
    for status in doc.get("status_codes") or {}:
        if not status.isdigit() or "DEFAULT" in op.statuses:
            continue
        if status not in op.statuses and f"{status[0]}XX" not in op.statuses and \
                status[0] + "XX" not in ranges:
            out.append({**base, "kind": "undocumented_status", "status": int(status)})
    schemas = doc.get("schemas") or {}
    observed_request: set[str] = set()
    for sdoc in (schemas.get("request") or {}).values():
        observed_request |= SchemaStats.from_doc(sdoc).field_paths()
    if op.request_fields is not None and op.request_fields:
        for path in sorted(observed_request)[:_MAX_FIELDS]:
            if not _declared(path, op.request_fields, op.open_prefixes):
                out.append({**base, "kind": "undeclared_request_field", "field": path})
    for status, by_ct in (schemas.get("responses") or {}).items():
        declared = op.response_fields.get(status)
        if declared is None:
            declared = op.response_fields.get(f"{status[0]}XX", op.response_fields.get("DEFAULT"))
        if not declared:
            continue
        observed: set[str] = set()
        for sdoc in by_ct.values():
            observed |= SchemaStats.from_doc(sdoc).field_paths()
        for path in sorted(observed)[:_MAX_FIELDS]:
            if not _declared(path, declared, op.open_prefixes):
                out.append({**base, "kind": "undeclared_response_field",
                            "status": int(status), "field": path})
    for item in doc.get("sensitive") or ():
        location, path = str(item["location"]), str(item["field"])
        if location in ("response.body", "request.body"):
            pool = op.request_fields if location == "request.body" else set().union(
                *(f for f in op.response_fields.values() if f))
            if pool and _declared(path, pool, op.open_prefixes):
                continue
        elif location == "request.path" or (location == "request.query"
                                            and ("query", path) in op.params):
            continue
        out.append({**base, "kind": "undeclared_sensitive_field", "type": item["type"],
                    "location": location, "field": path})
    return out[:_MAX_LISTED * 4]


def diff_against_spec(summaries: Sequence[EndpointSummary], spec: dict) -> dict:
    """Compare observed endpoints with a spec: {"shadow", "zombie", "unused", "drift"}."""
    ops = spec_operations(spec)
    _, spec_hosts = _base_paths(spec)
    observed = [s for s in summaries if s.doc.get("exists", True)
                and s.doc.get("kind", "api") != "static"]
    if spec_hosts and any(s.key.host in spec_hosts for s in observed):
        observed = [s for s in observed if s.key.host in spec_hosts]
    result: dict[str, list[dict[str, object]]] = {"shadow": [], "zombie": [], "unused": [],
                                                  "drift": []}
    used: set[int] = set()
    for s in observed:
        method, template = s.key.method.upper(), s.key.path_template
        op = _best(ops, method, template)
        if op is None and method in ("HEAD", "OPTIONS") and any(
                _best(ops, m.upper(), template) for m in OPENAPI_METHODS):
            continue  # servers answer HEAD/OPTIONS on documented paths implicitly
        if op is not None:
            used.add(id(op))
            if op.deprecated:
                result["zombie"].append({**_observed_entry(s), "reason": "deprecated in the spec",
                                         "spec_path": op.spec_path})
            result["drift"].extend(_drift(s, op))
            continue
        newer = _newer_version(ops, method, template)
        if newer is not None:
            result["zombie"].append({**_observed_entry(s),
                                     "reason": f"superseded by {newer.method} {newer.path}",
                                     "superseded_by": newer.path})
        else:
            result["shadow"].append(_observed_entry(s))
    spec_host = sorted(spec_hosts)[0] if spec_hosts else None
    seen_unused: set[tuple[str, str]] = set()
    for op in ops:
        if id(op) in used or (op.method, op.spec_path) in seen_unused:
            continue
        if any(id(o) in used for o in ops if o.method == op.method and o.spec_path == op.spec_path):
            continue
        seen_unused.add((op.method, op.spec_path))
        result["unused"].append({"host": spec_host, "method": op.method, "path_template": op.path,
                                 "deprecated": op.deprecated})
    return result
