"""The catalogue of `mirrorscope lint` rules: stable ids, names, levels and their advice.

Rule ids (``MSL0NN``) and names are a public contract: CI configurations and SARIF viewers
key on them, so a rule is never renumbered; a retired rule's id is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("note", "warning", "error")  # SARIF result levels, lowest first

_OWASP = "https://owasp.org/API-Security/editions/2023/en/"


@dataclass(frozen=True, slots=True)
class LintRule:
    """One lint rule: what it finds, why it matters and how to fix it."""

    id: str
    name: str  # PascalCase, as SARIF recommends for reportingDescriptor.name
    level: str  # default level: "error" | "warning" | "note"
    owasp: str  # OWASP API Security Top 10 (2023) category
    summary: str  # one sentence (SARIF shortDescription)
    explanation: str  # why it is a risk (SARIF fullDescription)
    remediation: str  # a concrete fix
    help_uri: str


RULES: tuple[LintRule, ...] = (
    LintRule(
        "MSL001", "OperationWithoutSecurity", "error", "API2:2023",
        "Operation declares no security requirement.",
        "Neither the document nor the operation declares a security requirement, or the "
        "operation opts out with `security: []`, so the spec promises the operation to "
        "anonymous callers. Unless the operation is meant to be public, any client can call it.",
        "Declare a security scheme under components.securitySchemes and require it with a "
        "top-level `security` list; keep `security: []` only on operations that must be "
        "public (login, health) and review each of them.",
        _OWASP + "0xa2-broken-authentication/"),
    LintRule(
        "MSL002", "OptionalAuthentication", "error", "API2:2023",
        "Security requirement makes authentication optional (`{}`).",
        "An empty security requirement object `{}` in a `security` list means 'no "
        "authentication' is one acceptable alternative, so credentials become optional.",
        "Remove the `{}` entry from the `security` list; if anonymous access is really "
        "intended, make it a separate, explicitly public operation.",
        _OWASP + "0xa2-broken-authentication/"),
    LintRule(
        "MSL003", "CleartextServerUrl", "error", "API8:2023",
        "Server URL uses plain http:// on a non-local host.",
        "Requests to a plain http:// server travel unencrypted: credentials, tokens and "
        "personal data can be read or altered by anyone on the path.",
        "Serve the API over TLS and change the server URL to https:// (redirecting http:// "
        "is not enough: the first request still leaks credentials); add HSTS.",
        _OWASP + "0xa8-security-misconfiguration/"),
    LintRule(
        "MSL004", "ApiKeyInQuery", "error", "API2:2023",
        "API key is sent in the query string.",
        "Query strings are written to access logs, proxy logs, browser history and Referer "
        "headers, so an API key passed there leaks to places that are not protected like "
        "secrets.",
        "Move the API key to a request header (`in: header`, e.g. `X-API-Key`) or use an "
        "OAuth2/bearer scheme; rotate keys that were sent in URLs.",
        _OWASP + "0xa2-broken-authentication/"),
    LintRule(
        "MSL005", "HttpBasicAuth", "warning", "API2:2023",
        "HTTP Basic authentication sends the password with every request.",
        "Basic auth puts the user's long-lived password, only base64-encoded, on the wire "
        "with every request; it cannot expire, be scoped or be revoked without changing the "
        "password, and it invites credential stuffing.",
        "Replace Basic with short-lived tokens (OAuth2 / OpenID Connect bearer tokens) or, "
        "for machine clients, mutual TLS; if Basic must stay, allow it only over TLS and "
        "rate-limit failures.",
        _OWASP + "0xa2-broken-authentication/"),
    LintRule(
        "MSL006", "UnboundedString", "warning", "API4:2023",
        "Request string has no maxLength, pattern, enum or format.",
        "A request string without any bound lets a client send megabytes where a few "
        "characters are expected, which costs memory and CPU (parsing, hashing, regexes, "
        "storage) and widens the room for injection payloads. Formats that bound nothing "
        "(binary, byte, password) do not count as a bound.",
        "Give every request string a `maxLength`, and where the shape is known a `pattern`, "
        "an `enum` or a `format` (uuid, date-time, email); enforce the schema at the edge.",
        _OWASP + "0xa4-unrestricted-resource-consumption/"),
    LintRule(
        "MSL007", "UnboundedArray", "warning", "API4:2023",
        "Request array has no maxItems.",
        "An array without `maxItems` lets one request carry any number of elements, each of "
        "which the server has to validate, store or process.",
        "Add `maxItems` to every request array (and enforce it), sized to real use.",
        _OWASP + "0xa4-unrestricted-resource-consumption/"),
    LintRule(
        "MSL008", "UnboundedPagination", "warning", "API4:2023",
        "Page-size parameter has no maximum.",
        "A page-size parameter (limit, page_size, per_page, size...) without `maximum` lets "
        "a client ask for the whole collection in one request: scraping, slow queries and "
        "large responses.",
        "Declare `type: integer` with `minimum: 1` and a `maximum` (e.g. 100) on the "
        "parameter, and clamp or reject larger values on the server.",
        _OWASP + "0xa4-unrestricted-resource-consumption/"),
    LintRule(
        "MSL009", "OpenRequestBody", "warning", "API3:2023",
        "Write operation accepts undeclared properties (mass assignment).",
        "An object in a POST/PUT/PATCH request body whose schema leaves "
        "`additionalProperties` unset or true accepts fields the spec never mentions; "
        "frameworks that bind the body to a model then let clients set fields they must not "
        "(mass assignment). A typed map (`additionalProperties` with a schema and no "
        "declared properties) is a deliberate dictionary and is not reported.",
        "Set `additionalProperties: false` on request object schemas (in OpenAPI 3.1, "
        "`unevaluatedProperties: false` on composed schemas) and bind request bodies to "
        "dedicated input types that only hold client-settable fields.",
        _OWASP + "0xa3-broken-object-property-level-authorization/"),
    LintRule(
        "MSL010", "WritableServerOwnedField", "error", "API3:2023",
        "Request body lets the client set a server-owned field.",
        "Fields such as id, role, is_admin, permissions, owner_id or created_at belong to the "
        "server; declaring them writable in a request body invites privilege escalation and "
        "tampering (mass assignment).",
        "Mark the property `readOnly: true` (or remove it from the input schema) and make "
        "the server ignore or reject it on writes.",
        _OWASP + "0xa3-broken-object-property-level-authorization/"),
    LintRule(
        "MSL011", "SensitiveFieldInResponse", "warning", "API3:2023",
        "Response exposes a sensitive field.",
        "A response schema declares a field that by its name or format holds a secret or "
        "regulated data (password, secret, token, API key, SSN, card number, CVV, IBAN): "
        "every client that can call the operation, and every log or cache on the way, gets "
        "it. Tokens returned by login or token operations are expected and not reported; "
        "writeOnly properties are not part of responses.",
        "Remove the field from the response, return a masked form (last four digits), or "
        "mark it `writeOnly: true` if it is only ever sent by clients.",
        _OWASP + "0xa3-broken-object-property-level-authorization/"),
    LintRule(
        "MSL012", "MissingAuthErrorResponses", "note", "API2:2023",
        "Secured operation does not document 401/403 responses.",
        "An operation that requires credentials will answer 401 (missing or bad "
        "credentials) and 403 (not allowed); when the spec does not say so, clients and "
        "contract tests never exercise the failure paths and gateways cannot check them.",
        "Document `401` and `403` responses (a shared `components/responses` entry is "
        "enough) on every secured operation.",
        _OWASP + "0xa2-broken-authentication/"),
    LintRule(
        "MSL013", "MissingRateLimitResponse", "warning", "API4:2023",
        "Operation does not document a 429 response.",
        "No `429 Too Many Requests` response suggests the operation is not rate-limited; "
        "without limits it is open to brute force, scraping and resource exhaustion.",
        "Rate-limit the operation (per client and per credential) and document a `429` "
        "response with a `Retry-After` header.",
        _OWASP + "0xa4-unrestricted-resource-consumption/"),
    LintRule(
        "MSL014", "DeprecatedWithoutSunset", "warning", "API9:2023",
        "Deprecated operation has no sunset date.",
        "A deprecated operation without a sunset date never goes away: it stays reachable, "
        "unmaintained and unmonitored (a zombie API).",
        "Announce the removal date: add `x-sunset: <date>` to the operation and describe a "
        "`Sunset` response header (RFC 8594), then remove the operation on that date.",
        _OWASP + "0xa9-improper-inventory-management/"),
)

RULES_BY_ID: dict[str, LintRule] = {rule.id: rule for rule in RULES}


def level_rank(level: str) -> int:
    """Order of a SARIF level (note < warning < error); unknown levels rank lowest."""
    return LEVELS.index(level) if level in LEVELS else -1
