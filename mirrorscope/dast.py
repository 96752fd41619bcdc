"""A DAST session: replay the recorded inventory against a target the user owns, mutated.

Per endpoint, a baseline (the recorded request with a real principal's credentials) is sent
first; each check then sends mutations and hands both exchanges to a verdict of
mirrorscope.dast_probes.  Verified weaknesses become findings of a capture run that stands
for the session, with the proving request and response as (redacted) evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from mirrorscope import dast_probes as probes
from mirrorscope.dast_http import BudgetExhausted, DastClient, DastHttpError, Sent, Target
from mirrorscope.dast_plan import SAFE_METHODS, Example, PlanEndpoint, Principal, declared_objects
from mirrorscope.model import EndpointKey, Finding
from mirrorscope.store.redact import fingerprint, redact_body, redact_headers, redact_uri

CHECKS = ("auth", "bola", "bfla", "injection", "mass-assignment", "rate-limit")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TIME_DELAY = 2.0  # seconds a time-based payload asks the database to sleep
EVIDENCE_BODY_BYTES = 2048
MAX_OBJECTS_PER_OWNER = 2
INVALID_TOKEN = "mirrorscope.invalid.token"
MAX_CONSECUTIVE_ERRORS = 3  # unanswered requests in a row before the target counts as down


class TargetUnreachable(Exception):
    """The target stopped answering: the session ends rather than fail every request."""


@dataclass(frozen=True, slots=True)
class DastOptions:
    """What a session may do."""

    allow_write: bool = False  # send POST/PUT/PATCH/DELETE (mass assignment, method tampering)
    checks: frozenset[str] = frozenset(CHECKS)
    time_based: bool = False  # time-based SQL injection payloads (slow: TIME_DELAY each)


@dataclass(slots=True)
class DastResult:
    """What a session found and did."""

    verdicts: list[tuple[EndpointKey, probes.Verdict]] = field(default_factory=list)
    tested: int = 0  # endpoints with at least one baseline sent
    skipped: list[str] = field(default_factory=list)  # why parts were not tested
    truncated: bool = False  # the request budget ran out
    unreachable: str = ""  # why the session stopped because the target did not answer
    requests: int = 0
    methods: dict[str, int] = field(default_factory=dict)


class Session:
    """Runs the checks of one DAST session over a plan, through one DastClient."""

    def __init__(self, client: DastClient, principals: Sequence[Principal],
                 options: DastOptions, log: Callable[[str], None] = lambda _m: None) -> None:
        self.client = client
        self.principals = {p.name: p for p in principals}
        self.options = options
        self.log = log
        self.result = DastResult()
        self._found: set[tuple[EndpointKey, str]] = set()
        self._baselines: dict[tuple[EndpointKey, str, str | None], Sent] = {}
        self._errors = 0

    # ------------------------------------------------------------------ plumbing

    def send(self, example: Example, principal: str | None, *, path: str | None = None,
             method: str | None = None, headers: Sequence[tuple[str, str]] | None = None,
             body: bytes | None = None, timeout: float | None = None) -> Sent:
        """The example as a principal sends it (None: no credentials), optionally mutated."""
        verb = method or example.method
        if verb not in SAFE_METHODS and not self.options.allow_write:
            raise AssertionError(f"{verb} without --allow-write")  # a bug: callers check first
        creds = self.principals[principal].headers if principal else ()
        extra = headers if headers is not None else creds
        sent = self.client.request(verb, path or example.path, _merged(example.headers, extra),
                                   example.body if body is None else body, timeout=timeout)
        self._errors = self._errors + 1 if sent.status == 0 else 0
        if self._errors >= MAX_CONSECUTIVE_ERRORS:
            raise TargetUnreachable(f"{self.client.target.origin} did not answer "
                                    f"{self._errors} requests in a row ({sent.error})")
        return sent

    def found(self, endpoint: PlanEndpoint, verdict: probes.Verdict | None) -> bool:
        """Record a verdict (first one per kind and endpoint); True when there was one."""
        if verdict is None:
            return False
        marker = (endpoint.key, verdict.kind)
        if marker not in self._found:
            self._found.add(marker)
            self.result.verdicts.append((endpoint.key, verdict))
            self.log(f"{verdict.kind}: {endpoint.key.method} {endpoint.key.path_template}: "
                     f"{verdict.reason}")
        return True

    def has(self, endpoint: PlanEndpoint, kind: str) -> bool:
        """A verdict of this kind already exists on the endpoint."""
        return (endpoint.key, kind) in self._found

    def allowed(self, method: str) -> bool:
        """GET/HEAD/OPTIONS always; writes only with --allow-write."""
        return method in SAFE_METHODS or self.options.allow_write

    def baseline(self, endpoint: PlanEndpoint, example: Example, principal: str | None) -> Sent:
        """The unmodified request as principal sends it (sent once, then remembered)."""
        memo = (endpoint.key, example.path, principal)
        if memo not in self._baselines:
            self._baselines[memo] = self.send(example, principal)
        return self._baselines[memo]

    def working_principal(self, endpoint: PlanEndpoint, example: Example
                          ) -> tuple[str | None, Sent] | None:
        """Who gets a 2xx baseline: the recorded principal first, then the others."""
        order = [example.principal] if example.principal in self.principals else []
        order += [name for name in self.principals if name not in order]
        if not order:  # no credentials file: the request as recorded, minus its credentials
            sent = self.baseline(endpoint, example, None)
            return (None, sent) if probes.is_success(sent) else None
        for name in order:
            sent = self.baseline(endpoint, example, name)
            if probes.is_success(sent):
                return name, sent
        return None

    # -------------------------------------------------------------------- driver

    def run(self, plan: Sequence[PlanEndpoint]) -> DastResult:
        """Every check over every endpoint, until done or the budget is spent."""
        checks = self.options.checks
        burst_candidates: list[tuple[PlanEndpoint, Example, str | None]] = []
        try:
            for endpoint in plan:
                label = f"{endpoint.key.method} {endpoint.key.path_template}"
                if not self.allowed(endpoint.key.method):
                    self.result.skipped.append(f"{label}: a write (--allow-write to test it)")
                    continue
                try:
                    candidate = self.check_endpoint(endpoint)
                except BudgetExhausted:
                    raise
                except DastHttpError as exc:  # a recorded request the client will not send
                    self.result.skipped.append(f"{label}: {exc}")
                    continue
                if candidate is not None:
                    burst_candidates.append(candidate)
            if "rate-limit" in checks:
                self.check_rate_limit(burst_candidates)
        except BudgetExhausted as exc:
            self.result.truncated = True
            self.result.skipped.append(str(exc))
        except TargetUnreachable as exc:
            self.result.unreachable = str(exc)
        self.result.requests = self.client.sent
        self.result.methods = dict(self.client.methods)
        return self.result

    def check_endpoint(self, endpoint: PlanEndpoint
                       ) -> tuple[PlanEndpoint, Example, str | None] | None:
        """Every selected check on one endpoint; returns it as a burst candidate if it works."""
        checks = self.options.checks
        example = endpoint.examples[0]
        working = self.working_principal(endpoint, example)
        self.result.tested += 1
        if working is None:
            statuses = sorted({sent.status for memo, sent in self._baselines.items()
                               if memo[0] == endpoint.key and memo[1] == example.path})
            self.result.skipped.append(f"{endpoint.key.method} {endpoint.key.path_template}: "
                                       f"no 2xx baseline (got {statuses}) for {example.path}")
            return None
        principal, base = working
        if "auth" in checks:
            self.check_auth(endpoint, example, principal, base)
        if "bola" in checks:
            self.check_bola(endpoint)
        if "bfla" in checks:
            self.check_bfla(endpoint, example)
        if "injection" in checks:
            self.check_injection(endpoint, example, principal, base)
        if "mass-assignment" in checks and endpoint.key.method in ("POST", "PUT", "PATCH"):
            self.check_mass_assignment(endpoint, example, principal, base)
        return (endpoint, example, principal) if endpoint.key.method == "GET" else None

    # -------------------------------------------------------------------- checks

    def check_auth(self, endpoint: PlanEndpoint, example: Example, principal: str | None,
                   base: Sent) -> None:
        """Broken authentication: the request without credentials, then with a bogus token."""
        if not endpoint.auth_recorded:
            return  # recorded without credentials: public by observation
        if principal is None:
            # Without a credentials file the live baseline already is anonymous: compare it
            # with what the recording got with credentials.
            self.found(endpoint, probes.missing_auth(_recorded_as_sent(example), base,
                                                     variant="none"))
            return
        anonymous = self.send(example, None)
        if self.found(endpoint, probes.missing_auth(base, anonymous, variant="none")):
            return
        bogus = _invalid_credentials(self.principals[principal])
        probe = self.send(example, None, headers=bogus)
        self.found(endpoint, probes.missing_auth(base, probe, variant="invalid"))

    def check_bola(self, endpoint: PlanEndpoint) -> None:
        """Each principal's objects (recorded or declared) requested by every other principal."""
        if endpoint.key.method not in SAFE_METHODS:
            return  # replaying a write on someone's object would change it, not read it
        if not endpoint.path_params and not any(p.owns for p in self.principals.values()):
            return
        objects: list[tuple[str, Example]] = []
        per_owner: dict[str, int] = {}
        candidates = [(e.principal, e) for e in endpoint.examples if e.principal]
        template = endpoint.examples[0]
        declared = declared_objects(endpoint, list(self.principals.values()))
        candidates += [(owner, _with_path(template, path)) for owner, path in declared]
        for owner, example in candidates:
            if owner is None or per_owner.get(owner, 0) >= MAX_OBJECTS_PER_OWNER:
                continue
            if not endpoint.path_params and "?" not in example.path:
                continue  # a collection, not an object: nothing to take from anyone
            per_owner[owner] = per_owner.get(owner, 0) + 1
            objects.append((owner, example))
        for owner, example in objects:
            owner_view = self.baseline(endpoint, example, owner)
            if not probes.is_success(owner_view):
                continue
            for other in self.principals.values():
                if other.name == owner or other.is_admin or self.has(endpoint, "dast.bola"):
                    continue
                other_view = self.send(example, other.name)
                self.found(endpoint, probes.bola(owner_view, other_view, owner=owner,
                                                 other=other.name))

    def check_bfla(self, endpoint: PlanEndpoint, example: Example) -> None:
        """Admin routes as non-admins; with --allow-write, the admin's writes as non-admins."""
        admins = [p for p in self.principals.values() if p.is_admin]
        users = [p for p in self.principals.values() if not p.is_admin]
        if not admins or not users:
            return
        admin_write = (endpoint.key.method in WRITE_METHODS
                       and any(e.principal == admins[0].name for e in endpoint.examples))
        if not probes.is_admin_route(endpoint.key.path_template) and not admin_write:
            return
        admin_view = self.baseline(endpoint, example, admins[0].name)
        for user in users:
            if self.has(endpoint, "dast.bfla"):
                return
            user_view = self.send(example, user.name)
            tampered = endpoint.key.method if endpoint.key.method in WRITE_METHODS else None
            self.found(endpoint, probes.bfla(admin_view, user_view, admin=admins[0].name,
                                             user=user.name, tampered_method=tampered))

    def check_injection(self, endpoint: PlanEndpoint, example: Example, principal: str | None,
                        base: Sent) -> None:
        """Error, boolean (and optionally time) based SQL injection on each parameter."""
        again = self.send(example, principal)
        for name, value, mutate in _parameters(endpoint, example):
            if self.has(endpoint, "dast.sqli"):
                return
            for payload in probes.error_payloads(value):
                probe = self.send(example, principal, path=mutate(payload))
                if self.found(endpoint, probes.sqli_error(base, probe, parameter=name,
                                                          payload=payload)):
                    return
            for pair in probes.boolean_pairs(value):
                true_probe = self.send(example, principal, path=mutate(pair.true_value))
                false_probe = self.send(example, principal, path=mutate(pair.false_value))
                if self.found(endpoint, probes.sqli_boolean([base, again], true_probe,
                                                            false_probe, parameter=name,
                                                            pair=pair)):
                    return
            if self.options.time_based:
                self._time_based(endpoint, example, principal, base, name, value, mutate)

    def _time_based(self, endpoint: PlanEndpoint, example: Example, principal: str | None,
                    base: Sent, name: str, value: str, mutate: Callable[[str], str]) -> None:
        controls = dict(probes.time_payloads(value, 0))  # the same SQL asking for no sleep
        for engine, payload in probes.time_payloads(value, TIME_DELAY):
            slow = self.send(example, principal, path=mutate(payload), timeout=TIME_DELAY + 3)
            if slow.elapsed < 0.9 * TIME_DELAY:
                continue
            control = self.send(example, principal, path=mutate(controls[engine]))
            if self.found(endpoint, probes.sqli_time(base, slow, control, parameter=name,
                                                     payload=payload, delay=TIME_DELAY)):
                return

    def check_mass_assignment(self, endpoint: PlanEndpoint, example: Example,
                              principal: str | None, base: Sent) -> None:
        """The recorded write plus privileged fields (role, is_admin ...)."""
        body = probes.with_privileged_fields(example.body)
        if body is None:
            return
        headers = [*(self.principals[principal].headers if principal else ()),
                   ("Content-Type", "application/json")]
        probe = self.send(example, None, headers=headers, body=body)
        self.found(endpoint, probes.mass_assignment(base, probe))

    def check_rate_limit(self, candidates: Sequence[tuple[PlanEndpoint, Example, str | None]]
                         ) -> None:
        """A bounded burst against the most recorded GET endpoint that answered 2xx."""
        if not candidates:
            return
        endpoint, example, principal = max(candidates, key=lambda c: c[0].count)
        if self.client.remaining() < probes.BURST_SIZE:
            self.result.skipped.append("rate-limit: fewer requests left in the budget than "
                                       f"a burst needs ({probes.BURST_SIZE})")
            return
        burst = [self.send(example, principal) for _ in range(probes.BURST_SIZE)]
        self.found(endpoint, probes.rate_limit(burst))


# ------------------------------------------------------------------------- helpers


def _merged(base: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]]
            ) -> list[tuple[str, str]]:
    """base headers with those named in extra replaced by extra's."""
    names = {name.lower() for name, _ in extra}
    return [*(pair for pair in base if pair[0].lower() not in names), *extra]


def _with_path(example: Example, path: str) -> Example:
    return Example(example.method, path, example.headers, example.body, None, b"", None)


def _recorded_as_sent(example: Example) -> Sent:
    """The recording's response as a baseline (used when no credentials file is given)."""
    return Sent(example.method, example.path, (), b"", example.recorded_status or 0, "", (),
                example.recorded_body, 0.0)


def _invalid_credentials(principal: Principal) -> list[tuple[str, str]]:
    """The principal's credential headers with well-formed but invalid values."""
    out = []
    for name, value in principal.headers:
        scheme, _, rest = value.partition(" ")
        if name.lower() == "authorization" and rest:
            out.append((name, f"{scheme} {INVALID_TOKEN}"))
        elif name.lower() == "cookie":
            pairs = [pair.split("=", 1)[0].strip() for pair in value.split(";") if pair.strip()]
            out.append((name, "; ".join(f"{p}={INVALID_TOKEN}" for p in pairs)))
        else:
            out.append((name, INVALID_TOKEN))
    return out


def _parameters(endpoint: PlanEndpoint, example: Example
                ) -> list[tuple[str, str, Callable[[str], str]]]:
    """(name, original value, path-with-this-value) for each query and path parameter."""
    path, _, query = example.path.partition("?")
    out: list[tuple[str, str, Callable[[str], str]]] = []
    pairs = query.split("&") if query else []
    for index, pair in enumerate(pairs):
        name, eq, raw = pair.partition("=")
        if not eq or "[redacted" in unquote_plus(raw):
            continue

        def mutate(value: str, index: int = index, name: str = name) -> str:
            changed = list(pairs)
            changed[index] = f"{name}={quote(value, safe='')}"
            return f"{path}?{'&'.join(changed)}"

        out.append((unquote_plus(name), unquote_plus(raw), mutate))
    segments = path.split("/")
    for position, name in endpoint.path_params:
        if position >= len(segments):
            continue

        def mutate_segment(value: str, position: int = position) -> str:
            changed = list(segments)
            changed[position] = quote(value, safe="")
            rebuilt = "/".join(changed)
            return f"{rebuilt}?{query}" if query else rebuilt

        out.append((name, unquote_plus(segments[position]), mutate_segment))
    return out


# ----------------------------------------------------------------------- findings


def to_findings(result: DastResult, target: Target, principals: Sequence[Principal],
                key: bytes, now: float) -> list[tuple[Finding, float]]:
    """Verdicts as findings (window 0: sessions add occurrences to one finding per endpoint)."""
    secrets = [value for p in principals for _, value in p.headers]
    out = []
    for endpoint, verdict in result.verdicts:
        info = verdict.info
        evidence = {
            "verified": True,
            "source": "dast",
            "target": target.origin,
            "reason": verdict.reason,
            "details": verdict.details,
            "request": _request_evidence(verdict.proof, target, key),
            "response": _response_evidence(verdict.proof, key),
            "baseline": None if verdict.baseline is None else {
                "request": _request_evidence(verdict.baseline, target, key),
                "response": _response_evidence(verdict.baseline, key)},
        }
        evidence = _scrub_secrets(evidence, secrets, key)
        explanation = tuple({"feature": name, "value": value}
                            for name, value in verdict.details.items()
                            if isinstance(value, str | int | float) and "payload" not in name)
        remediation = info.remediation.format(
            endpoint=f"{endpoint.method} {endpoint.path_template}")
        finding = Finding(kind=verdict.kind, severity=info.severity, owasp=info.owasp,
                          endpoint=endpoint, client_ip=None, ts_first=now, ts_last=now,
                          confidence=verdict.confidence, evidence=evidence,
                          explanation=_scrub_secrets(explanation, secrets, key),
                          remediation=remediation)
        out.append((finding, 0.0))
    return out


def _text(data: bytes, key: bytes) -> str:
    head = data[:EVIDENCE_BODY_BYTES]
    text = redact_body(head, key, truncated=len(data) > len(head)).decode("utf-8", "replace")
    return text + ("…" if len(data) > len(head) else "")


def _request_evidence(sent: Sent, target: Target, key: bytes) -> dict[str, Any]:
    return {"method": sent.method, "url": target.origin + redact_uri(sent.path, key),
            "headers": [list(pair) for pair in redact_headers(sent.headers, key)],
            "body": _text(sent.body, key)}


def _response_evidence(sent: Sent, key: bytes) -> dict[str, Any]:
    return {"status": sent.status, "reason": sent.reason,
            "elapsed_ms": round(sent.elapsed * 1000, 1), "error": sent.error,
            "headers": [list(pair) for pair in redact_headers(sent.response_headers, key)],
            "body": _text(sent.response_body, key)}


def _scrub_secrets(value: Any, secrets: Sequence[str], key: bytes) -> Any:
    """Belt and braces: any test credential still present (echoed by the target) is hidden."""
    text = json.dumps(value, ensure_ascii=False)
    changed = text
    for secret in sorted(secrets, key=len, reverse=True):
        token = secret.partition(" ")[2] or secret  # "Bearer xyz": the token part too
        for piece in {secret, token}:
            if len(piece) >= 6 and piece in changed:
                changed = changed.replace(piece, fingerprint(piece, key))
    if changed == text:
        return value
    restored = json.loads(changed)
    return tuple(restored) if isinstance(value, tuple) else restored


def session_sha256(target: Target, started_at: float) -> str:
    """A unique content id for the capture run standing for one session."""
    material = f"dast\0{target.origin}\0{started_at!r}\0{os.urandom(8).hex()}"
    return hashlib.sha256(material.encode()).hexdigest()


def now() -> float:
    """Wall-clock time (a function so tests may pin it)."""
    return time.time()


# -------------------------------------------------------------------------- session


@dataclass(slots=True)
class SessionOutcome:
    """A stored session: the result, its capture run and the ids of its findings."""

    result: DastResult
    run_id: int
    finding_ids: list[int]
    endpoints: int


def recorded_hosts(db_url: str) -> list[str]:
    """Hosts of the recorded endpoints (inventory), sorted."""
    from mirrorscope.store.analysis_repo import AnalysisStore

    with AnalysisStore(db_url) as store:
        return sorted({row["host"] for row in store.endpoint_observations()})


def merged_docs(db_url: str, host: str) -> list[dict[str, Any]]:
    """The inventory documents of one host, each endpoint's runs merged."""
    from mirrorscope.analysis.inventory_stats import merge_docs
    from mirrorscope.store.analysis_repo import AnalysisStore

    with AnalysisStore(db_url) as store:
        rows = [row for row in store.endpoint_observations() if row["host"] == host]
    docs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        ident = (row["host"], row["method"], row["path_template"])
        docs[ident] = merge_docs(docs[ident], row["doc"]) if ident in docs else row["doc"]
    return list(docs.values())


def run_session(db_url: str, host: str, client: DastClient, principals: Sequence[Principal],
                options: DastOptions, key: bytes,
                log: Callable[[str], None] = lambda _m: None) -> SessionOutcome:
    """Plan from the database, probe the target, store the verified findings under a new run."""
    from mirrorscope.dast_plan import build_plan
    from mirrorscope.store.analysis_repo import AnalysisStore
    from mirrorscope.store.dast_repo import DastStore
    from mirrorscope.store.repository import Store

    with DastStore(db_url) as dast_store:
        recorded = dast_store.recorded_requests(host=host)
    plan = build_plan(recorded, merged_docs(db_url, host), principals, key)
    started = now()
    store = Store(db_url, hmac_key=key, upgrade=False)
    try:
        run_id = store.begin_run(source=f"dast {client.target.origin} (host {host})",
                                 sha256=session_sha256(client.target, started), size=0,
                                 started_at=started)
        result = Session(client, principals, options, log).run(plan)
        findings = to_findings(result, client.target, principals, key, now())
        with AnalysisStore(db_url) as analysis_store:
            ids = analysis_store.upsert_findings(run_id, findings) if findings else []
        with DastStore(db_url) as dast_store:
            dast_store.mark_verified(ids)
        stats = {"dast": {"target": client.target.origin, "host": host,
                          "endpoints": len(plan), "tested": result.tested,
                          "requests": result.requests, "methods": result.methods,
                          "findings": len(ids), "truncated": result.truncated,
                          "unreachable": result.unreachable,
                          "skipped": result.skipped[:50]}}
        store.finish_run(run_id, status="complete", stats=stats, ts_first=started,
                         ts_last=now(), finished_at=now())
    finally:
        store.close()
    return SessionOutcome(result, run_id, ids, len(plan))
