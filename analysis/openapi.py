"""OpenAPI 3.1 export of the observed inventory, and loading a user's spec (JSON or YAML).

The export describes what traffic showed: paths with path parameters, query/header/cookie
parameters, request bodies and responses with the inferred JSON schemas, and
securitySchemes.  It never contains a value that was seen (no examples); enums are
emitted only for short, repeated, non-sensitive values (see schema.to_json_schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from http import HTTPStatus

from mirrorscope.analysis.inventory_config import InventoryError
from mirrorscope.analysis.inventory_stats import merge_docs
from mirrorscope.analysis.schema import SchemaStats, to_json_schema
from mirrorscope.model import EndpointSummary

OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{[^}/]*\}")
_COMPONENT_KEY = re.compile(r"[^A-Za-z0-9.\-_]+")
_MAX_SPEC_BYTES = 32 << 20
_MAX_YAML_ALIASES = 10_000


def structure_of(template: str) -> str:
    """A template with parameter names erased ("/users/{id}" -> "/users/{}")."""
    return _PARAM.sub("{}", template)


def security_scheme(label: str) -> tuple[str, dict[str, object]] | None:
    """(component name, Security Scheme Object) of an inventory auth label, or None."""
    if label == "basic":
        return "basicAuth", {"type": "http", "scheme": "basic"}
    if label == "bearer":
        return "bearerAuth", {"type": "http", "scheme": "bearer"}
    if label == "bearer-jwt":
        return "bearerJwt", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    if label in ("digest", "negotiate"):
        return f"{label}Auth", {"type": "http", "scheme": label}
    if label == "ntlm":
        return "ntlmAuth", {"type": "http", "scheme": "NTLM"}
    if label == "aws-sigv4":
        return "awsSigV4", {"type": "http", "scheme": "AWS4-HMAC-SHA256"}
    if label.startswith(("apikey:", "cookie:")):
        _, location, name = label.split(":", 2)
        key = _COMPONENT_KEY.sub("_", f"{location}_{name}")
        return key, {"type": "apiKey", "in": location, "name": name}
    return None


def _param_schema(param: dict[str, object]) -> dict[str, object]:
    schema: dict[str, object] = {"type": param.get("type") or "string"}
    if schema["type"] == "null":
        schema["type"] = "string"
    if param.get("format"):
        schema["format"] = param["format"]
    return schema


def _operation_id(method: str, template: str, used: set[str]) -> str:
    base = method.lower() + "".join(
        part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", template) if part)
    candidate, n = base or method.lower(), 1
    while candidate in used:
        n += 1
        candidate = f"{base}{n}"
    used.add(candidate)
    return candidate


def _status_description(status: str) -> str:
    try:
        return HTTPStatus(int(status)).phrase or "Observed"
    except ValueError:
        return "Observed"


def _operation(doc: dict, op_id: str, schemes: dict[str, dict[str, object]]) -> dict:
    """One Operation Object from an endpoint document."""
    params: list[dict[str, object]] = []
    for param in doc.get("parameters") or ():
        location = param.get("in")
        if location not in ("path", "query", "header", "cookie"):
            continue
        entry: dict[str, object] = {"name": param["name"], "in": location,
                                    "schema": _param_schema(param)}
        entry["required"] = True if location == "path" else bool(param.get("required"))
        params.append(entry)
    op: dict[str, object] = {"operationId": op_id,
                             "summary": f"{doc['method']} {doc['path_template']}"}
    if params:
        op["parameters"] = params
    schemas = doc.get("schemas") or {}
    request = schemas.get("request") or {}
    if request:
        op["requestBody"] = {"content": {ct: {"schema": to_json_schema(SchemaStats.from_doc(s))}
                                         for ct, s in sorted(request.items())}}
    responses: dict[str, object] = {}
    by_status = schemas.get("responses") or {}
    for status in sorted(doc.get("status_codes") or {}):
        if not (status.isdigit() and len(status) == 3):
            continue
        response: dict[str, object] = {"description": _status_description(status)}
        content = by_status.get(status) or {}
        if content:
            response["content"] = {ct: {"schema": to_json_schema(SchemaStats.from_doc(s))}
                                   for ct, s in sorted(content.items())}
        responses[status] = response
    op["responses"] = responses or {"default": {"description": "No response observed"}}
    security: list[dict[str, list[str]]] = []
    for label in doc.get("auth") or ():
        if label == "none":
            continue
        found = security_scheme(label)
        if found is not None:
            name, scheme = found
            schemes[name] = scheme
            if {name: []} not in security:
                security.append({name: []})
    if security:
        if "none" in (doc.get("auth") or ()):
            security.append({})  # some calls came without credentials
        op["security"] = security
    op["x-mirrorscope"] = {
        "count": doc.get("count"), "first_seen": doc.get("first_seen"),
        "last_seen": doc.get("last_seen"), "hosts": doc.get("hosts", [doc.get("host")]),
        "sensitive": [{k: s[k] for k in ("type", "location", "field")}
                      for s in doc.get("sensitive") or ()],
        "merge_reasons": doc.get("merge_reasons") or [],
    }
    return op


def export_openapi(summaries: Sequence[EndpointSummary], *, host: str | None = None,
                   title: str = "API observed by mirrorscope") -> dict:
    """An OpenAPI 3.1 document of the observed endpoints (optionally of one host)."""
    chosen = [s for s in summaries
              if (host is None or s.key.host == host) and s.doc.get("exists", True)
              and s.doc.get("kind", "api") in ("api", "page")
              and s.key.method.lower() in OPENAPI_METHODS
              and s.key.path_template.startswith("/")]
    grouped: dict[tuple[str, str], dict] = {}
    hosts: list[str] = []
    for s in chosen:
        if s.key.host not in hosts:
            hosts.append(s.key.host)
        key = (s.key.path_template, s.key.method.lower())
        doc = dict(s.doc)
        doc["hosts"] = [s.key.host]
        if key in grouped:  # one path on several hosts: one operation, merged statistics
            have = grouped[key]
            merged = merge_docs({**have, "host": "*"}, {**doc, "host": "*"})
            merged["hosts"] = sorted(set(have["hosts"]) | {s.key.host})
            grouped[key] = merged
        else:
            grouped[key] = doc
    paths: dict[str, dict[str, object]] = {}
    structures: dict[str, str] = {}
    skipped: list[str] = []
    schemes: dict[str, dict[str, object]] = {}
    used_ids: set[str] = set()
    for (template, method), doc in sorted(grouped.items()):
        structure = structure_of(template)
        if structures.setdefault(structure, template) != template:
            skipped.append(f"{method.upper()} {template}")  # same shape, other names
            continue
        paths.setdefault(template, {})[method] = _operation(
            doc, _operation_id(method, template, used_ids), schemes)
    document: dict[str, object] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "observed",
                 "description": "Generated from observed traffic by mirrorscope."},
        "servers": [{"url": f"http://{h}"} for h in hosts] or [{"url": "/"}],
        "paths": paths,
    }
    if schemes:
        document["components"] = {"securitySchemes": dict(sorted(schemes.items()))}
    if skipped:
        document["x-mirrorscope-skipped"] = skipped
    return document


def load_spec(text: str) -> dict:
    """Parse an OpenAPI 3.0/3.1 (or Swagger 2.0) document given as JSON or YAML text."""
    if len(text) > _MAX_SPEC_BYTES:
        raise InventoryError("spec document is larger than 32 MiB")
    text = text.lstrip("\ufeff")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = _load_yaml(text)
    if not isinstance(doc, dict) or not ("openapi" in doc or "swagger" in doc):
        raise InventoryError("not an OpenAPI document: no 'openapi' (or 'swagger') field")
    if not isinstance(doc.get("paths", {}), dict):
        raise InventoryError("not an OpenAPI document: 'paths' is not an object")
    return doc


def _load_yaml(text: str) -> object:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML comes with openapi-spec-validator
        raise InventoryError("the spec is not JSON, and reading YAML needs PyYAML") from exc

    class _BoundedLoader(yaml.SafeLoader):
        """SafeLoader that refuses alias bombs."""

        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > _MAX_YAML_ALIASES:
                    raise InventoryError("spec uses too many YAML aliases")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        raise InventoryError(f"cannot parse the spec as JSON or YAML: {exc}") from exc
