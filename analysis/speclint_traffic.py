"""Which lint results the observed traffic confirms (sans-I/O).

Spec operations are matched to observed endpoint templates exactly as `mirrorscope diff`
matches them (openapi_diff).  Each check states only what the stored inventory holds:
counters, status codes, sensitive-data sightings, auth labels, field names and size
statistics.  Where the inventory keeps nothing that could show a flaw (e.g. the values of
a page-size parameter), the result is marked as observed, with no evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from mirrorscope.analysis.openapi_diff import base_paths, best_operation, spec_operations
from mirrorscope.analysis.schema import WILDCARD, SchemaStats
from mirrorscope.analysis.speclint_walk import LintResult
from mirrorscope.model import EndpointSummary

# MSL013: an endpoint is busy enough to deserve a 429 when it took at least this many
# requests at this average rate over its whole observed span (floored at one second).
# The average over the span understates bursts, so a hit here is a conservative one.
BUSY_MIN_REQUESTS = 20
BUSY_MIN_RATE = 5.0  # requests per second
# MSL006/MSL007: request bodies count as outsized at this size and this multiple of the median.
LARGE_BODY_BYTES = 4096
LARGE_BODY_FACTOR = 10.0


def annotate(results: Sequence[LintResult], spec: dict,
             observed: Sequence[EndpointSummary]) -> None:
    """Mark results whose operations were seen, and add what the traffic confirms."""
    matches = match_operations(spec, observed)  # wrong shapes are ignored, as by the lint
    for result in results:
        hits: list[EndpointSummary] = []
        for operation in result.operations:
            for summary in matches.get(operation, ()):
                if summary not in hits:
                    hits.append(summary)
        if not hits:
            continue
        result.observed_in_traffic = True
        result.observed_requests = sum(s.count for s in hits)
        check = _CHECKS.get(result.rule_id)
        if check is not None:
            result.traffic_evidence = [e for e in (check(result, s) for s in hits) if e]


def match_operations(spec: dict, observed: Sequence[EndpointSummary]
                     ) -> dict[tuple[str, str], list[EndpointSummary]]:
    """(METHOD, spec path) -> the observed endpoints that spec operation matches."""
    ops = spec_operations(spec)
    _, hosts = base_paths(spec)
    candidates = [s for s in observed if s.doc.get("kind", "api") != "static"]
    if hosts and any(s.key.host in hosts for s in candidates):
        candidates = [s for s in candidates if s.key.host in hosts]
    matches: dict[tuple[str, str], list[EndpointSummary]] = {}
    for summary in candidates:
        op = best_operation(ops, summary.key.method.upper(), summary.key.path_template)
        if op is not None:
            matches.setdefault((op.method, op.spec_path), []).append(summary)
    return matches


def _where(s: EndpointSummary) -> str:
    return f"{s.key.method} {s.key.host}{s.key.path_template}"


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _unauthenticated(result: LintResult, s: EndpointSummary) -> str | None:
    n = int(_dict(s.doc.get("auth_detail")).get("unauthenticated_2xx") or 0)
    if n:
        return f"{_where(s)}: {n} request(s) without credentials were answered 2xx."
    return None


def _cleartext(result: LintResult, s: EndpointSummary) -> str | None:
    try:
        host = urlsplit("//" + s.key.host).hostname or ""
    except ValueError:  # a Host header that is no host
        return None
    if host.lower() != result.context.get("host"):
        return None
    return (f"{_where(s)}: {s.count} request(s) to this host were read as plaintext HTTP at "
            "the capture point.")


def _api_key_in_query(result: LintResult, s: EndpointSummary) -> str | None:
    name = str(result.context.get("parameter", "")).lower()
    seen = [int(p.get("count") or 0) for p in s.doc.get("parameters") or ()
            if str(p.get("in")) == "query" and str(p.get("name", "")).lower() == name]
    counts = _dict(_dict(s.doc.get("auth_detail")).get("counts"))
    n = max([*seen, int(counts.get(f"apikey:query:{name}") or 0)])
    if n:
        return f"{_where(s)}: the API key parameter '{name}' was in the query string of {n} " \
               "request(s)."
    return None


def _basic(result: LintResult, s: EndpointSummary) -> str | None:
    n = int(_dict(_dict(s.doc.get("auth_detail")).get("counts")).get("basic") or 0)
    return f"{_where(s)}: {n} request(s) carried HTTP Basic credentials." if n else None


def _large_bodies(result: LintResult, s: EndpointSummary) -> str | None:
    if not result.context.get("body"):
        return None  # the inventory keeps no per-parameter lengths
    size = _dict(s.doc.get("request_size"))
    largest, median = float(size.get("max") or 0), float(size.get("p50") or 0)
    if largest >= LARGE_BODY_BYTES and largest >= LARGE_BODY_FACTOR * max(median, 1.0):
        return (f"{_where(s)}: request bodies reached {largest:.0f} bytes, "
                f"{largest / max(median, 1.0):.0f}x their median of {median:.0f} bytes.")
    return None


def _request_fields(s: EndpointSummary) -> set[str]:
    fields: set[str] = set()
    for doc in _dict(_dict(s.doc.get("schemas")).get("request")).values():
        if isinstance(doc, dict):
            fields |= SchemaStats.from_doc(doc).field_paths()
    return fields


def _undeclared_fields(result: LintResult, s: EndpointSummary) -> str | None:
    prefix = result.field_path or ""
    declared = {str(d) for d in result.context.get("declared") or ()}  # type: ignore[union-attr]
    extra = set()
    for path in _request_fields(s):
        if prefix and not path.startswith(prefix + "."):
            continue
        rest = path[len(prefix) + 1:] if prefix else path
        if rest and "." not in rest and "[" not in rest and rest != WILDCARD and \
                rest not in declared:
            extra.add(rest)
    if extra:
        names = ", ".join(sorted(extra)[:10])
        return f"{_where(s)}: clients sent field(s) this schema does not declare: {names}."
    return None


def _server_owned_sent(result: LintResult, s: EndpointSummary) -> str | None:
    if result.field_path and result.field_path in _request_fields(s):
        return f"{_where(s)}: clients did send '{result.field_path}' in request bodies."
    return None


def _sensitive_seen(result: LintResult, s: EndpointSummary) -> str | None:
    name = str(result.context.get("name", "")).lower()
    found = []
    for item in s.doc.get("sensitive") or ():
        field = str(item.get("field", ""))
        leaf = field.rsplit(".", 1)[-1].replace("[]", "").lower()
        if item.get("location") == "response.body" and (field == result.field_path or leaf == name):
            found.append(f"{item.get('type')} data in response field '{field}' "
                         f"({int(item.get('count') or 0)} time(s))")
    return f"{_where(s)}: {'; '.join(found)}." if found else None


def _auth_errors_answered(result: LintResult, s: EndpointSummary) -> str | None:
    statuses = _dict(s.doc.get("status_codes"))
    seen = [f"{code} {int(statuses[code])} time(s)" for code in
            result.context.get("missing") or () if code in statuses]  # type: ignore[union-attr]
    return f"{_where(s)}: the live API answered {', '.join(seen)}." if seen else None


def _busy_without_429(result: LintResult, s: EndpointSummary) -> str | None:
    if "429" in _dict(s.doc.get("status_codes")) or s.count < BUSY_MIN_REQUESTS:
        return None
    span = max(s.last_seen - s.first_seen, 0.0)
    rate = s.count / max(span, 1.0)
    if rate < BUSY_MIN_RATE:
        return None
    return (f"{_where(s)}: {s.count} requests within {span:.1f} s (at least {rate:.0f}/s on "
            "average) and never a 429.")


def _still_called(result: LintResult, s: EndpointSummary) -> str | None:
    if s.count <= 0:
        return None
    last = datetime.fromtimestamp(s.last_seen, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{_where(s)}: still called {s.count} time(s), last seen {last}."


_CHECKS: dict[str, Callable[[LintResult, EndpointSummary], str | None]] = {
    "MSL001": _unauthenticated,
    "MSL002": _unauthenticated,
    "MSL003": _cleartext,
    "MSL004": _api_key_in_query,
    "MSL005": _basic,
    "MSL006": _large_bodies,
    "MSL007": _large_bodies,
    "MSL009": _undeclared_fields,
    "MSL010": _server_owned_sent,
    "MSL011": _sensitive_seen,
    "MSL012": _auth_errors_answered,
    "MSL013": _busy_without_429,
    "MSL014": _still_called,
}
