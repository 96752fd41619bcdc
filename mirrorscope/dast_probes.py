"""DAST verdicts: pure functions over the requests a probe sent and the responses it got.

Each verdict compares a mutated request with a baseline (the unmodified request) so that
only a difference the mutation explains becomes a finding.  Nothing here does I/O; the
orchestrator (mirrorscope.dast) sends the requests and hands the exchanges in.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mirrorscope.analysis.detection_catalog import KindInfo
from mirrorscope.dast_http import Sent

# Bodies at least this similar (0..1) are "the same data"; compared on their first bytes.
SIMILAR = 0.9
SAME_AS_BASELINE = 0.95  # a boolean-true probe must reproduce the baseline this closely
DIFFERENT = 0.85  # ... and the boolean-false probe must fall below this
STABLE_BASELINE = 0.98  # two baselines this similar: the endpoint answers deterministically
_COMPARE_BYTES = 4096
BURST_SIZE = 30
_RATE_LIMIT_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
                       "ratelimit-limit", "ratelimit-remaining", "ratelimit", "x-rate-limit-limit")
_ADMIN_ROUTE = re.compile(r"(?i)(?:^|/)(?:admin\w*|internal|manage(?:ment)?|debug|actuator|"
                          r"superuser|staff|ops|system|sudo)(?:/|$|\.)")
# Database errors that only an injected quote can explain when the baseline has none.
DB_ERRORS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("mysql", re.compile(rb"You have an error in your SQL syntax|mysql_fetch|MySqlException|"
                         rb"com\.mysql\.jdbc|Warning: mysql")),
    ("postgresql", re.compile(rb"PG::\w+Error|psycopg2?\.\w+|org\.postgresql\.util|"
                              rb"syntax error at or near \"|unterminated quoted string")),
    ("mssql", re.compile(rb"Unclosed quotation mark after the character string|"
                         rb"Microsoft OLE DB Provider for SQL Server|SqlException|"
                         rb"\[SQL Server\]|Incorrect syntax near")),
    ("oracle", re.compile(rb"\bORA-\d{5}\b|oracle\.jdbc")),
    ("sqlite", re.compile(rb"sqlite3\.OperationalError|SQLITE_ERROR|SQLiteException|"
                          rb"unrecognized token: |near \\?\"[^\"]{0,40}\\?\": syntax error")),
    ("generic", re.compile(rb"SQLSTATE\[\w+\]|java\.sql\.SQLException|SQL syntax.{0,40}error")),
)
PRIVILEGED_FIELDS: dict[str, object] = {"role": "admin", "is_admin": True, "isAdmin": True,
                                        "admin": True}


CATALOG: dict[str, KindInfo] = {
    "dast.missing_auth": KindInfo(
        "API2:2023", "high", "Endpoint answers without credentials",
        "Require authentication on {endpoint}: reject requests without valid credentials "
        "(401) in a shared middleware, not per handler."),
    "dast.invalid_token": KindInfo(
        "API2:2023", "high", "Endpoint accepts an invalid token",
        "Validate the credential on {endpoint} (signature, expiry, issuer, audience) and "
        "answer 401 to anything that does not verify."),
    "dast.bola": KindInfo(
        "API1:2023", "high", "Another principal's object is readable",
        "Check on {endpoint} that the caller owns (or may access) the object named by the id "
        "before returning it; answer 404 otherwise. Prefer random ids, but never rely on them."),
    "dast.bfla": KindInfo(
        "API5:2023", "high", "Privileged function reachable by a non-privileged principal",
        "Enforce role checks on {endpoint} server-side (deny by default, allow the roles that "
        "need it); method and path changes must not bypass them."),
    "dast.sqli": KindInfo(
        "API8:2023", "critical", "SQL injection",
        "Use parameterised queries (bound parameters) for every value {endpoint} puts into "
        "SQL; validate types and never build SQL by string concatenation."),
    "dast.mass_assignment": KindInfo(
        "API3:2023", "high", "Privileged property accepted from the client",
        "Bind only an allow-list of client-writable properties on {endpoint}; set roles and "
        "flags server-side and ignore (or reject) anything else."),
    "dast.rate_limit": KindInfo(
        "API4:2023", "low", "No rate limiting observed",
        "Rate-limit {endpoint} per client and per principal (answer 429 with Retry-After), "
        "and cap expensive operations."),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verified weakness: the kind, why, the proving exchange and what it was compared with."""

    kind: str
    reason: str
    proof: Sent
    baseline: Sent | None = None
    details: dict[str, object] = field(default_factory=dict)
    confidence: float = 1.0

    @property
    def info(self) -> KindInfo:
        """The catalogue entry of this verdict's kind."""
        return CATALOG[self.kind]


# ------------------------------------------------------------------------ similarity


def is_success(sent: Sent) -> bool:
    """A 2xx answer."""
    return 200 <= sent.status < 300


def _canonical(body: bytes) -> bytes:
    """JSON re-serialised with sorted keys (key order and spacing are not differences)."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body


def body_similarity(a: bytes, b: bytes) -> float:
    """0..1: how alike two bodies are (1.0 equal); JSON compared canonically."""
    if a == b:
        return 1.0
    left, right = _canonical(a)[:_COMPARE_BYTES], _canonical(b)[:_COMPARE_BYTES]
    if left == right:
        return 1.0
    if not left or not right:
        return 0.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


def same_data(a: Sent, b: Sent) -> bool:
    """Both 2xx with bodies at least SIMILAR alike."""
    return is_success(a) and is_success(b) and body_similarity(a.response_body,
                                                               b.response_body) >= SIMILAR


def _meaningful(sent: Sent) -> bool:
    """A body worth comparing: not empty, not a bare JSON null/[]/{} ."""
    return sent.response_body.strip() not in (b"", b"null", b"[]", b"{}", b'""')


# ----------------------------------------------------------------------- auth checks


def missing_auth(baseline: Sent, probe: Sent, *, variant: str) -> Verdict | None:
    """The request without (variant 'none') or with a bogus ('invalid') credential still works.

    baseline: the request with valid credentials.  A finding needs both answers 2xx with
    the same, non-empty data: an endpoint that answers 2xx with a login page or an empty
    list to anonymous callers is not reported.
    """
    if not _meaningful(baseline) or not same_data(baseline, probe):
        return None
    kind = "dast.missing_auth" if variant == "none" else "dast.invalid_token"
    what = "without any credentials" if variant == "none" else "with an invalid token"
    similarity = body_similarity(baseline.response_body, probe.response_body)
    return Verdict(kind, f"{probe.method} {probe.path} {what} answered {probe.status} with the "
                         f"data the authenticated request gets (similarity {similarity:.2f})",
                   probe, baseline, {"variant": variant, "similarity": round(similarity, 3)})


def bola(owner_view: Sent, other_view: Sent, *, owner: str, other: str) -> Verdict | None:
    """Principal ``other`` reads ``owner``'s object: 2xx with the data the owner gets."""
    if not _meaningful(owner_view) or not same_data(owner_view, other_view):
        return None
    similarity = body_similarity(owner_view.response_body, other_view.response_body)
    return Verdict("dast.bola", f"{other} read {owner}'s object {other_view.path}: "
                                f"{other_view.status} with the owner's data "
                                f"(similarity {similarity:.2f})",
                   other_view, owner_view, {"owner": owner, "accessed_by": other,
                                            "similarity": round(similarity, 3)})


def bfla(admin_view: Sent, user_view: Sent, *, admin: str, user: str,
         tampered_method: str | None = None) -> Verdict | None:
    """A non-admin principal gets what the admin gets on a privileged function."""
    if not is_success(admin_view) or not is_success(user_view):
        return None
    if tampered_method is None and (not _meaningful(admin_view)
                                    or not same_data(admin_view, user_view)):
        return None
    how = f"with method {tampered_method}" if tampered_method else "on an admin route"
    return Verdict("dast.bfla", f"{user} (not an admin) succeeded {how}: "
                                f"{user_view.method} {user_view.path} answered "
                                f"{user_view.status} as it does for {admin}",
                   user_view, admin_view, {"admin": admin, "user": user,
                                           "tampered_method": tampered_method})


def is_admin_route(path_template: str) -> bool:
    """A path that names an administrative function (/admin, /internal, /manage ...)."""
    return _ADMIN_ROUTE.search(path_template) is not None


# ------------------------------------------------------------------------- injection


@dataclass(frozen=True, slots=True)
class BooleanPair:
    """Two payloads whose SQL conditions are true and false; unchanged data means true."""

    context: str  # "string" or "numeric"
    true_value: str
    false_value: str


def error_payloads(value: str) -> list[str]:
    """Values that break the SQL of a string or numeric context."""
    return [value + "'", value + '"']


def boolean_pairs(value: str) -> list[BooleanPair]:
    """(true, false) payload pairs: string context always, numeric when the value is a number."""
    pairs = [BooleanPair("string", f"{value}' AND '7'='7", f"{value}' AND '7'='8")]
    if re.fullmatch(r"-?\d+", value):
        pairs.append(BooleanPair("numeric", f"{value} AND 7=7", f"{value} AND 7=8"))
    return pairs


def time_payloads(value: str, delay: float) -> list[tuple[str, str]]:
    """(engine, value) that make MySQL / PostgreSQL / MSSQL wait ``delay`` seconds."""
    seconds = f"{delay:g}"
    return [("mysql", f"{value}' AND SLEEP({seconds})-- -"),
            ("postgresql", f"{value}'||(SELECT pg_sleep({seconds}))||'"),
            ("mssql", f"{value}'; WAITFOR DELAY '0:0:{int(delay)}'-- -")]


def db_error(body: bytes) -> str | None:
    """The database engine whose error message is in body, if any."""
    for engine, pattern in DB_ERRORS:
        if pattern.search(body):
            return engine
    return None


def sqli_error(baseline: Sent, probe: Sent, *, parameter: str, payload: str) -> Verdict | None:
    """A database error appears once a quote is injected, and not in the baseline."""
    engine = db_error(probe.response_body)
    if engine is None or db_error(baseline.response_body) is not None:
        return None
    return Verdict("dast.sqli", f"injecting a quote into {parameter!r} made the response carry "
                                f"a {engine} error that the unmodified request does not",
                   probe, baseline, {"technique": "error-based", "parameter": parameter,
                                     "payload": payload, "engine": engine})


def sqli_boolean(baselines: Sequence[Sent], true_probe: Sent, false_probe: Sent, *,
                 parameter: str, pair: BooleanPair) -> Verdict | None:
    """The true condition reproduces the baseline, the false one does not: SQL evaluated it.

    baselines: two sends of the unmodified request; they must agree (a non-deterministic
    endpoint cannot be judged this way).
    """
    base, again = baselines[0], baselines[-1]
    if not is_success(base) or not _meaningful(base):
        return None
    if again.status != base.status or body_similarity(base.response_body,
                                                      again.response_body) < STABLE_BASELINE:
        return None
    true_sim = body_similarity(base.response_body, true_probe.response_body)
    if true_probe.status != base.status or true_sim < SAME_AS_BASELINE:
        return None
    false_sim = body_similarity(base.response_body, false_probe.response_body)
    if false_probe.status == base.status and false_sim >= DIFFERENT:
        return None
    return Verdict("dast.sqli", f"{parameter!r} with an always-true condition returns the "
                                f"baseline data (similarity {true_sim:.2f}) and with an "
                                f"always-false one it does not ({false_probe.status}, "
                                f"similarity {false_sim:.2f})",
                   false_probe, base, {"technique": "boolean-based", "parameter": parameter,
                                       "context": pair.context, "true_payload": pair.true_value,
                                       "false_payload": pair.false_value,
                                       "true_status": true_probe.status,
                                       "true_similarity": round(true_sim, 3),
                                       "false_similarity": round(false_sim, 3)})


def sqli_time(baseline: Sent, slow: Sent, control: Sent, *, parameter: str, payload: str,
              delay: float) -> Verdict | None:
    """The sleep payload takes >= 90% of ``delay`` while the baseline and a control do not."""
    quick = delay / 2
    if slow.elapsed < 0.9 * delay or baseline.elapsed >= quick or control.elapsed >= quick:
        return None
    return Verdict("dast.sqli", f"{parameter!r} with a {delay:g} s sleep payload answered after "
                                f"{slow.elapsed:.2f} s; the baseline took {baseline.elapsed:.2f} s",
                   slow, baseline, {"technique": "time-based", "parameter": parameter,
                                    "payload": payload, "delay": delay,
                                    "elapsed": round(slow.elapsed, 3)},
                   confidence=0.8)


# ------------------------------------------------------------ writes and rate limits


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        return {**doc, **doc["data"]}  # {"data": {...}} envelopes
    return doc if isinstance(doc, dict) else None


def with_privileged_fields(body: bytes) -> bytes | None:
    """The JSON object body plus PRIVILEGED_FIELDS it does not already set (None: not JSON)."""
    doc = _json_object(body) if body else {}
    if doc is None:
        return None
    extra = {name: value for name, value in PRIVILEGED_FIELDS.items() if name not in doc}
    return json.dumps({**doc, **extra}).encode() if extra else None


def mass_assignment(baseline: Sent, probe: Sent) -> Verdict | None:
    """A privileged field sent by the client comes back set, and the baseline did not have it."""
    if not is_success(probe):
        return None
    sent = _json_object(probe.body) or {}
    answered = _json_object(probe.response_body)
    before = _json_object(baseline.response_body) or {}
    if answered is None:
        return None
    accepted = sorted(name for name, value in PRIVILEGED_FIELDS.items()
                      if name in sent and answered.get(name) == value
                      and before.get(name) != value)
    if not accepted:
        return None
    return Verdict("dast.mass_assignment", f"{probe.method} {probe.path} accepted and returned "
                                           f"privileged field(s) {', '.join(accepted)}",
                   probe, baseline, {"fields": accepted})


def rate_limit(burst: Sequence[Sent]) -> Verdict | None:
    """A burst where every request was answered, none with 429 and no rate-limit headers."""
    if len(burst) < BURST_SIZE or any(sent.status == 0 for sent in burst):
        return None
    if any(sent.status == 429 for sent in burst):
        return None
    for sent in burst:
        names = {name.lower() for name, _ in sent.response_headers}
        if names.intersection(_RATE_LIMIT_HEADERS):
            return None
    statuses = sorted({sent.status for sent in burst})
    return Verdict("dast.rate_limit", f"{len(burst)} requests in a burst were all served "
                                      f"(statuses {statuses}); no 429 and no rate-limit headers",
                   burst[-1], burst[0], {"burst": len(burst), "statuses": statuses},
                   confidence=0.7)
