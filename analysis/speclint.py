"""`mirrorscope lint`: security rules over an OpenAPI 3.0/3.1 document (sans-I/O).

lint_spec takes the parsed document, optionally the pointer -> line map of its source
(speclint_lines.line_map) and the observed inventory, and returns results ordered by
level, then place.  Rules live in speclint_rules (catalogue), here (document and operation
rules: MSL001-MSL005, MSL012-MSL014) and speclint_schema (schema rules: MSL006-MSL011);
speclint_traffic says which results the observed traffic confirms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from mirrorscope.analysis.speclint_lines import line_for
from mirrorscope.analysis.speclint_rules import level_rank
from mirrorscope.analysis.speclint_schema import (
    lint_parameters,
    lint_request_body,
    lint_responses,
)
from mirrorscope.analysis.speclint_walk import (
    Collector,
    LintResult,
    OperationRef,
    SpecLintError,
    child,
    mapping,
    operations,
    path_item,
    sequence,
)
from mirrorscope.model import EndpointSummary

__all__ = ["SpecLintError", "check_version", "lint_spec"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def check_version(spec: dict) -> str:
    """The document's OpenAPI version; SpecLintError unless it is 3.0.x or 3.1.x."""
    version = spec.get("openapi")
    if "swagger" in spec and version is None:
        raise SpecLintError("Swagger 2.0 is not supported by the lint: convert the document "
                            "to OpenAPI 3.0 or 3.1")
    if not isinstance(version, str) or not re.match(r"3\.[01](\.|$)", version):
        raise SpecLintError(f"unsupported OpenAPI version {version!r}: the lint reads 3.0 "
                            "and 3.1")
    return version


def lint_spec(spec: dict, lines: dict[str, int] | None = None,
              observed: Sequence[EndpointSummary] | None = None) -> list[LintResult]:
    """Every rule over the document; traffic evidence added when observed is given."""
    check_version(spec)
    c = Collector(spec)
    ops = operations(spec, c)
    _lint_servers(c, spec, ops)
    _lint_schemes(c, spec, ops)
    for operation in ops:
        _lint_operation(c, spec, operation)
    results = list(c.results.values())
    for result in results:
        result.line = line_for(lines, result.pointer) if lines else None
    if observed is not None:
        from mirrorscope.analysis.speclint_traffic import annotate

        annotate(results, spec, observed)
    results.sort(key=lambda r: (-level_rank(r.level), r.line or 0, r.pointer, r.rule_id))
    return results


# ------------------------------------------------------------------ document level


def _lint_servers(c: Collector, spec: dict, ops: list[OperationRef]) -> None:
    places: list[tuple[object, str, list[OperationRef]]] = [(spec.get("servers"), "/servers",
                                                             ops)]
    for operation in ops:
        item, item_pointer = path_item(spec, c, operation)
        places.append((item.get("servers"), child(item_pointer, "servers"), [operation]))
        places.append((operation.op.get("servers"), child(operation.pointer, "servers"),
                       [operation]))
    for servers, pointer, users in places:
        if not isinstance(servers, list):
            continue
        for index, server in enumerate(servers):
            url = _server_url(server)
            if url is None or not url.lower().startswith("http://"):
                continue
            host = (urlsplit(url).hostname or "").lower()
            if host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost"):
                continue
            url_pointer = child(pointer, index, "url")
            for operation in users:
                c.add("MSL003", url_pointer, f"Server URL {url} is plain http://: requests "
                      "and credentials travel unencrypted.", operation,
                      context={"host": host, "port": urlsplit(url).port or 80})


def _server_url(server: object) -> str | None:
    """The URL with server variables replaced by their defaults."""
    if not isinstance(server, dict) or not isinstance(server.get("url"), str):
        return None
    variables = mapping(server.get("variables"))

    def default(match: re.Match[str]) -> str:
        var = variables.get(match.group(1))
        return str(var.get("default", "")) if isinstance(var, dict) else match.group(0)

    return re.sub(r"\{([^{}]*)\}", default, server["url"])


def _requirements(spec: dict, operation: OperationRef) -> tuple[object, str]:
    """The effective security list of an operation and where it is written."""
    if "security" in operation.op:
        return operation.op["security"], child(operation.pointer, "security")
    return spec.get("security"), "/security"


def _lint_schemes(c: Collector, spec: dict, ops: list[OperationRef]) -> None:
    for name, raw in mapping(mapping(spec.get("components")).get("securitySchemes")).items():
        scheme, pointer = c.resolve(raw, child("/components/securitySchemes", name))
        if not isinstance(scheme, dict):
            continue
        kind = str(scheme.get("type", "")).lower()
        users = [op for op in ops if _uses_scheme(_requirements(spec, op)[0], str(name))]
        if kind == "apikey" and str(scheme.get("in", "")).lower() == "query":
            parameter = str(scheme.get("name", ""))
            for operation in users or [None]:
                c.add("MSL004", child(pointer, "in"), f"Security scheme '{name}' sends the "
                      f"API key in the query parameter '{parameter}'.", operation,
                      context={"parameter": parameter})
        elif kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
            for operation in users or [None]:
                c.add("MSL005", child(pointer, "scheme"), f"Security scheme '{name}' is HTTP "
                      "Basic: the password is sent with every request.", operation)


def _uses_scheme(requirements: object, name: str) -> bool:
    return isinstance(requirements, list) and any(
        isinstance(req, dict) and name in req for req in requirements)


# ----------------------------------------------------------------- operation level


def _lint_operation(c: Collector, spec: dict, operation: OperationRef) -> None:
    requirements, where = _requirements(spec, operation)
    secured = False
    if not isinstance(requirements, list) or not requirements:
        if where == "/security" and requirements is None:
            c.add("MSL001", operation.pointer, f"{operation.label} has no security "
                  "requirement, and the document declares no global one.", operation)
        elif where == "/security" and requirements == []:
            c.add("MSL001", where, "The global `security` list is empty: operations without "
                  "their own `security` require no authentication.", operation)
        elif requirements == []:
            c.add("MSL001", where, f"{operation.label} opts out of authentication with "
                  "`security: []`.", operation)
        else:
            c.add("MSL001", where, f"{operation.label}: `security` is not a list of "
                  "requirements, so none applies.", operation)
    elif any(isinstance(req, dict) and not req for req in requirements):
        c.add("MSL002", where, "This security list contains `{}`: calling without "
              "credentials is allowed.", operation)
    else:
        secured = True
    item, item_pointer = path_item(spec, c, operation)
    shared = [(p, child(item_pointer, "parameters", i))
              for i, p in enumerate(sequence(item.get("parameters")))]
    own = [(p, child(operation.pointer, "parameters", i))
           for i, p in enumerate(sequence(operation.op.get("parameters")))]
    lint_parameters(c, operation, shared + own)
    lint_request_body(c, operation)
    lint_responses(c, operation)
    _lint_status_codes(c, operation, secured)
    _lint_deprecation(c, operation)


def _lint_status_codes(c: Collector, operation: OperationRef, secured: bool) -> None:
    codes = {str(code).upper() for code in mapping(operation.op.get("responses"))}
    pointer = child(operation.pointer, "responses")
    if secured:
        missing = [code for code in ("401", "403") if code not in codes and "4XX" not in codes]
        if missing:
            c.add("MSL012", pointer, f"{operation.label} requires credentials but documents "
                  f"no {' or '.join(missing)} response.", operation,
                  context={"missing": missing})
    if "429" not in codes and "4XX" not in codes:
        c.add("MSL013", pointer, f"{operation.label} documents no 429 response: no sign of "
              "rate limiting.", operation)


def _lint_deprecation(c: Collector, operation: OperationRef) -> None:
    if operation.op.get("deprecated") is not True or operation.op.get("x-sunset"):
        return
    for raw in mapping(operation.op.get("responses")).values():
        response, _ = c.resolve(raw, "")
        if any(str(h).lower() == "sunset" for h in mapping(mapping(response).get("headers"))):
            return
    c.add("MSL014", child(operation.pointer, "deprecated"), f"{operation.label} is deprecated "
          "but announces no sunset (no x-sunset, no Sunset response header).", operation)
