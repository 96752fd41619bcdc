"""Schema-level lint rules: unbounded strings, arrays and pages, mass assignment, sensitive data.

Request-side rules (MSL006-MSL010) walk parameters and request bodies; the response rule
(MSL011) walks response bodies.  readOnly properties are skipped on the request side and
writeOnly ones on the response side: the spec says they never travel in that direction.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirrorscope.analysis.sensitive import name_words
from mirrorscope.analysis.speclint_walk import (
    MAX_REF_DEPTH,
    WRITE_METHODS,
    Collector,
    OperationRef,
    child,
    mapping,
    schema_types,
    sequence,
)

# Formats that say nothing about a string's length.
_UNBOUNDING_FORMATS = frozenset({"", "binary", "byte", "password"})
_PAGE_SIZE_NAMES = frozenset({"limit", "pagesize", "perpage", "size", "pagelimit", "maxresults",
                              "take", "top", "count"})
# Server-owned anywhere in a body: privilege and ownership fields.
_PRIVILEGE_FIELDS = frozenset({"role", "roles", "isadmin", "admin", "issuperuser", "superuser",
                               "isstaff", "permissions", "privileges", "scopes", "ownerid",
                               "owner", "tenantid", "balance", "isverified", "emailverified",
                               "verified"})
# Server-owned at the top of a body only: nested ones are usually references ("items[].id").
_TOP_LEVEL_FIELDS = frozenset({"id", "uuid", "createdat", "updatedat", "deletedat", "createdby",
                               "updatedby"})
# A name with one of these words is about the secret, not the secret ("password_hint").
_ABOUT_WORDS = frozenset({"hint", "policy", "expiry", "expires", "expired", "changed", "updated",
                          "length", "strength", "required", "rules", "last", "type", "count",
                          "enabled", "set", "age", "min", "max", "url", "reset", "masked",
                          "last4", "hash", "hashed"})
# Operations whose job is to hand out tokens: a token in their response is the point.
_TOKEN_ISSUER_WORDS = frozenset({"login", "signin", "token", "tokens", "oauth", "oauth2", "auth",
                                 "authenticate", "authorize", "session", "sessions", "refresh",
                                 "register", "signup", "sso"})


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a schema walk is: which operation, which direction, which field."""

    operation: OperationRef
    body: bool  # a request body (mass-assignment rules apply on write methods)
    field: str  # dotted field path ("address.city", "items[].sku"); parameter name for params
    depth: int = 0
    closed: bool = False  # a parent closes this object (3.1 unevaluatedProperties: false)


def lint_parameters(c: Collector, operation: OperationRef, params: list[tuple[object, str]]
                    ) -> None:
    """MSL006/MSL007/MSL008 on an operation's parameters (path-level ones included)."""
    for raw, raw_pointer in params:
        param, pointer = c.resolve(raw, raw_pointer)
        if not isinstance(param, dict) or "name" not in param:
            continue
        name, location = str(param["name"]), str(param.get("in", ""))
        schemas = [(param.get("schema"), child(pointer, "schema"))]
        for media_type, media in mapping(param.get("content")).items():
            if isinstance(media, dict):
                schemas.append((media.get("schema"), child(pointer, "content", media_type,
                                                           "schema")))
        for raw_schema, schema_pointer in schemas:
            schema, resolved_pointer = c.resolve(raw_schema, schema_pointer)
            if not isinstance(schema, dict):
                continue
            if location == "query":
                _pagination(c, operation, name, schema, resolved_pointer)
            _request_schema(c, raw_schema, schema_pointer,
                            _Where(operation, body=False, field=name), set())


def _pagination(c: Collector, operation: OperationRef, name: str, schema: dict,
                pointer: str) -> None:
    if name_words(name)[1] not in _PAGE_SIZE_NAMES:
        return
    if any(k in schema for k in ("maximum", "exclusiveMaximum", "enum", "const")):
        return
    c.add("MSL008", pointer, f"Page-size parameter '{name}' has no maximum: a client can ask "
          "for every record in one request.", operation, field_path=name,
          context={"parameter": name})


def lint_request_body(c: Collector, operation: OperationRef) -> None:
    """MSL006/MSL007/MSL009/MSL010 on an operation's request body."""
    body, pointer = c.resolve(operation.op.get("requestBody"),
                              child(operation.pointer, "requestBody"))
    if not isinstance(body, dict):
        return
    for media_type, media in mapping(body.get("content")).items():
        if isinstance(media, dict) and "schema" in media:
            _request_schema(c, media["schema"], child(pointer, "content", media_type, "schema"),
                            _Where(operation, body=True, field=""), set())


def _request_schema(c: Collector, raw: object, raw_pointer: str, where: _Where,
                    chain: set[str]) -> None:
    schema, pointer = c.resolve(raw, raw_pointer)
    if not isinstance(schema, dict) or where.depth > MAX_REF_DEPTH or pointer in chain:
        return
    chain = chain | {pointer}
    types = schema_types(schema)
    label = f"'{where.field}'" if where.field else "the request body"
    if "string" in types and not _bounded_string(schema):
        c.add("MSL006", pointer, f"String {label} has no maxLength, pattern, enum or format.",
              where.operation, field_path=where.field or None, context={"body": where.body})
    if "array" in types and "maxItems" not in schema:
        c.add("MSL007", pointer, f"Array {label} has no maxItems.", where.operation,
              field_path=where.field or None, context={"body": where.body})
    closes = schema.get("unevaluatedProperties") is False
    for combinator in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(sequence(schema.get(combinator))):
            _request_schema(c, sub, child(pointer, combinator, index), _Where(
                where.operation, where.body, where.field, where.depth + 1,
                closes or where.closed), chain)
    if where.body and where.operation.method in WRITE_METHODS:
        _mass_assignment(c, schema, pointer, where, types)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            sub_pointer = child(pointer, "properties", name)
            resolved, _ = c.resolve(sub, sub_pointer)
            if _flag(sub, resolved, "readOnly"):
                continue  # never sent by clients
            path = f"{where.field}.{name}" if where.field else str(name)
            if where.body and where.operation.method in WRITE_METHODS:
                _server_owned(c, str(name), path, sub_pointer, where)
            _request_schema(c, sub, sub_pointer, _Where(where.operation, where.body, path,
                                                        where.depth + 1), chain)
    if isinstance(schema.get("items"), dict):
        _request_schema(c, schema["items"], child(pointer, "items"), _Where(
            where.operation, where.body, f"{where.field}[]", where.depth + 1), chain)


def _bounded_string(schema: dict) -> bool:
    if any(k in schema for k in ("maxLength", "pattern", "enum", "const")):
        return True
    return str(schema.get("format", "")).lower() not in _UNBOUNDING_FORMATS


def _flag(raw: object, resolved: object, name: str) -> bool:
    # 3.1 allows siblings of $ref, so the flag may sit on the reference or on its target.
    return any(isinstance(node, dict) and node.get(name) is True for node in (raw, resolved))


def _mass_assignment(c: Collector, schema: dict, pointer: str, where: _Where,
                     types: set[str]) -> None:
    properties = schema.get("properties")
    free_form = not types and not any(k in schema for k in ("allOf", "anyOf", "oneOf", "enum",
                                                             "const", "not", "$ref"))
    if "object" not in types and not (free_form and where.depth == 0):
        return
    additional = schema.get("additionalProperties")
    if additional is False or schema.get("unevaluatedProperties") is False or where.closed:
        return
    if isinstance(additional, dict) and additional and not properties:
        return  # a typed map: a deliberate dictionary, not a model
    state = "true" if additional is True or additional == {} else "unset"
    declared = sorted(str(k) for k in properties) if isinstance(properties, dict) else []
    label = f"object '{where.field}'" if where.field else "the request body object"
    c.add("MSL009", pointer, f"On write operations, {label} accepts undeclared properties "
          f"(additionalProperties is {state}).", where.operation,
          field_path=where.field or None, context={"declared": declared})


def _server_owned(c: Collector, name: str, path: str, pointer: str, where: _Where) -> None:
    joined = name_words(name)[1]
    if joined in _PRIVILEGE_FIELDS or (where.field == "" and joined in _TOP_LEVEL_FIELDS):
        c.add("MSL010", pointer, f"Request field '{path}' is server-owned but writable: it is "
              "not marked readOnly.", where.operation, field_path=path)


def lint_responses(c: Collector, operation: OperationRef) -> None:
    """MSL011 on every response body of an operation."""
    responses = mapping(operation.op.get("responses"))
    issuer = bool(name_words(f"{operation.path} {operation.op.get('operationId', '')}")[0]
                  & _TOKEN_ISSUER_WORDS)
    for status, raw in responses.items():
        response, pointer = c.resolve(raw, child(operation.pointer, "responses", status))
        if not isinstance(response, dict):
            continue
        for media_type, media in mapping(response.get("content")).items():
            if isinstance(media, dict) and "schema" in media:
                _response_schema(c, media["schema"], child(pointer, "content", media_type,
                                                           "schema"),
                                 operation, "", issuer, set(), 0)


def _response_schema(c: Collector, raw: object, raw_pointer: str, operation: OperationRef,
                     field: str, issuer: bool, chain: set[str], depth: int) -> None:
    schema, pointer = c.resolve(raw, raw_pointer)
    if not isinstance(schema, dict) or depth > MAX_REF_DEPTH or pointer in chain:
        return
    chain = chain | {pointer}
    for combinator in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(sequence(schema.get(combinator))):
            _response_schema(c, sub, child(pointer, combinator, index), operation, field,
                             issuer, chain, depth + 1)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            sub_pointer = child(pointer, "properties", name)
            resolved, _ = c.resolve(sub, sub_pointer)
            if _flag(sub, resolved, "writeOnly"):
                continue  # never in a response
            path = f"{field}.{name}" if field else str(name)
            kind = sensitive_kind(str(name), resolved if isinstance(resolved, dict) else {})
            if kind is not None and not (kind == "token" and issuer):
                c.add("MSL011", sub_pointer, f"Response field '{path}' exposes a {kind}.",
                      operation, field_path=path, context={"kind": kind, "name": str(name)})
            _response_schema(c, sub, sub_pointer, operation, path, issuer, chain, depth + 1)
    if isinstance(schema.get("items"), dict):
        _response_schema(c, schema["items"], child(pointer, "items"), operation,
                         f"{field}[]", issuer, chain, depth + 1)


def sensitive_kind(name: str, schema: dict) -> str | None:
    """What secret or regulated datum a field holds, judged by its name and format."""
    words, joined = name_words(name)
    if str(schema.get("format", "")).lower() == "password":
        return "password"
    if words & _ABOUT_WORDS:
        return None
    if words & {"password", "passwd", "pwd", "passphrase", "passcode"}:
        return "password"
    if words & {"cvv", "cvc", "cvv2", "cvc2", "csc"} or joined in {"securitycode",
                                                                    "cardsecuritycode"}:
        return "card verification code"
    if joined in {"cardnumber", "creditcard", "creditcardnumber", "ccnumber", "ccnum", "pan"} \
            or ("card" in words and words & {"number", "num", "no"}):
        return "card number"
    if "ssn" in words or "socialsecurity" in joined:
        return "social security number"
    if "iban" in words:
        return "bank account number (IBAN)"
    if "secret" in words or "privatekey" in joined:
        return "secret"
    if "apikey" in joined:
        return "API key"
    if "token" in words or joined.endswith("token"):
        return "token"
    if joined == "pin":
        return "PIN"
    return None
