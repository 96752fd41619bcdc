"""Security misconfiguration visible in responses: stack traces, database errors, missing
security headers, CORS wildcard with credentials, version banners.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirrorscope.model import Headers, HttpResponse

_STACK_TRACES: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("python", re.compile(rb"Traceback \(most recent call last\)")),
    ("java", re.compile(rb"(?:Exception|Error)(?:: [^\n]{0,200})?\s++"
                        rb"at [\w$.<>]{1,300}\([\w$]{1,100}\.java:\d")),
    ("java", re.compile(rb"\bat (?:java|javax|org\.springframework|org\.apache)\.[\w$.]++\(")),
    (".net", re.compile(rb"\bat [\w.`<>]{1,200}\([^)\n]{0,300}\) in [^\n]{1,200}\.cs:line \d")),
    (".net", re.compile(rb"System\.\w+Exception: ")),
    ("php", re.compile(rb"(?:Fatal error|Warning|Parse error|Notice)</b>?:.{0,200} on line "
                       rb"<b>?\d+", re.DOTALL)),
    ("php", re.compile(rb"Stack trace:\s*#0 ")),
    ("node", re.compile(rb"\n[ \t]++at [\w.<>]{1,200} \((?:/|[A-Z]:\\)[^)]{1,200}:\d+:\d+\)")),
    ("ruby", re.compile(rb"\.rb:\d+:in `")),
    ("go", re.compile(rb"goroutine \d+ \[running\]")),
)
_SQL_ERRORS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("mysql", re.compile(rb"You have an error in your SQL syntax|mysql_fetch|MySqlException|"
                         rb"com\.mysql\.jdbc")),
    ("postgresql", re.compile(rb"PG::\w+Error|psycopg2?\.\w+|org\.postgresql\.util|"
                              rb"syntax error at or near \"")),
    ("mssql", re.compile(rb"Unclosed quotation mark after the character string|"
                         rb"Microsoft OLE DB Provider for SQL Server|SqlException|"
                         rb"\[SQL Server\]")),
    ("oracle", re.compile(rb"\bORA-\d{5}\b|oracle\.jdbc")),
    ("sqlite", re.compile(rb"sqlite3\.OperationalError|SQLITE_ERROR|SQLiteException")),
    ("generic", re.compile(rb"SQLSTATE\[\w+\]|java\.sql\.SQLException|"
                           rb"Incorrect syntax near|unterminated quoted string")),
)
# Cheap substring tests that every pattern above needs one of (bytes.__contains__ is fast).
_TRIGGERS = (b"Traceback", b"Exception", b"Error", b"error", b"goroutine", b".rb:", b"ORA-",
             b"SQL", b"sql", b"Stack trace")
_VERSION = re.compile(r"\d+\.\d+")
_BANNER_HEADERS = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version",
                   "x-generator", "x-runtime-version")


@dataclass(slots=True, frozen=True)
class ResponseHit:
    """One misconfiguration seen in one response."""

    kind: str
    detail: str  # what was seen (header names, the framework), never body content
    where: str | None = None  # the header concerned, when there is one


def _headers(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        out.setdefault(name.lower(), value)
    return out


# Bodies repeat (the same page, the same error document): what the body patterns found in
# recent bodies is remembered, keyed by (body, status >= 400).  Bounded by bytes.
_BODY_CACHE_BYTES = 1 << 20  # body bytes plus ~80 bytes an entry
_BODY_CACHE_MAX = 16 << 10
_body_cache: dict[tuple[bytes, bool], tuple[ResponseHit, ...]] = {}
_body_cache_bytes = 0


def _body_hits(head: bytes, error_status: bool) -> tuple[ResponseHit, ...]:
    """Stack traces and database errors in a response body (at most one of each)."""
    global _body_cache_bytes
    cache_key = (head, error_status)
    found = _body_cache.get(cache_key)
    if found is not None:
        return found
    hits: list[ResponseHit] = []
    if error_status or any(t in head for t in _TRIGGERS):
        for framework, pattern in _STACK_TRACES:
            if pattern.search(head):
                hits.append(ResponseHit("misconfig.stack_trace", f"{framework} stack trace"))
                break
        for engine, pattern in _SQL_ERRORS:
            if pattern.search(head):
                hits.append(ResponseHit("misconfig.sql_error", f"{engine} error message"))
                break
    found = tuple(hits)
    if len(head) <= _BODY_CACHE_MAX:
        cost = len(head) + 80
        if _body_cache_bytes + cost > _BODY_CACHE_BYTES:  # (cost <= budget: head <= 16 KiB)
            _body_cache.clear()
            _body_cache_bytes = 0
        _body_cache[cache_key] = found
        _body_cache_bytes += cost
    return found


def check_response(resp: HttpResponse) -> list[ResponseHit]:
    """Every misconfiguration one response shows."""
    hits: list[ResponseHit] = []
    headers = _headers(resp.headers)
    head = resp.body.head
    if head:
        hits.extend(_body_hits(head, resp.status >= 400))
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if 200 <= resp.status < 300 and resp.body.length:
        missing = []
        if headers.get("x-content-type-options", "").strip().lower() != "nosniff":
            missing.append("X-Content-Type-Options")
        if ctype == "text/html":
            csp = headers.get("content-security-policy", "").lower()
            if "frame-ancestors" not in csp and "x-frame-options" not in headers:
                missing.append("Content-Security-Policy frame-ancestors / X-Frame-Options")
        if missing:
            hits.append(ResponseHit("misconfig.missing_security_headers",
                                    "missing: " + ", ".join(missing)))
    origin = headers.get("access-control-allow-origin", "").strip()
    credentials = headers.get("access-control-allow-credentials", "").strip().lower() == "true"
    if credentials and origin in ("*", "null"):
        hits.append(ResponseHit("misconfig.cors_wildcard_credentials",
                                f"Access-Control-Allow-Origin: {origin} with credentials",
                                "Access-Control-Allow-Origin"))
    for name in _BANNER_HEADERS:
        value = headers.get(name)
        if value and (name != "server" or _VERSION.search(value)):
            hits.append(ResponseHit("misconfig.version_banner", f"{name}: {value[:80]}", name))
            break
    return hits
