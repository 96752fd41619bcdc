"""From scores and closed windows to occurrences: what a finding says, and how sure it is.

Pure functions: the Detector calls them and aggregates what they return.  Evidence is
redacted here (detection_redact), explanations list the deviated features with value and
baseline, confidence falls with capture loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from mirrorscope.analysis.detection_aggregate import Occurrence
from mirrorscope.analysis.detection_redact import scrub, value_evidence
from mirrorscope.analysis.features import RequestView
from mirrorscope.analysis.features_client import CLIENT_FEATURES, ClientWindow
from mirrorscope.analysis.features_profile import Deviation
from mirrorscope.analysis.models_io import DetectionModel
from mirrorscope.analysis.rules_behaviour import BehaviourConfig, ClientBaseline, evaluate
from mirrorscope.analysis.rules_injection import RuleHit
from mirrorscope.analysis.rules_response import ResponseHit, check_response
from mirrorscope.model import EndpointKey, HttpTransaction

PAGE_NAMES = frozenset({"limit", "per_page", "perpage", "page_size", "pagesize", "size", "count",
                        "max", "top", "first", "last", "take", "rows", "max_results",
                        "maxresults", "pagelimit", "page_limit", "$top", "fetch"})
_LOSS_KINDS = ("gap", "resync", "truncat", "incomplete")
# Misconfigurations that are events (a request elicited them): aggregated per client and
# window like attacks.  The others are properties of a server.
PER_EVENT_MISCONFIG = frozenset({"misconfig.stack_trace", "misconfig.sql_error"})

Ref = tuple[tuple[str, int], ...]


@dataclass(slots=True)
class TransactionScore:
    """How one transaction scored (the parts and the verdict)."""

    endpoint: EndpointKey | None
    score: float = 0.0  # bits; higher = more anomalous
    profile_bits: float = 0.0
    forest_score: float = 0.0  # IsolationForest anomaly in (0, 1]; 0 without a model
    forest_bits: float = 0.0
    rule_score: float = 0.0
    flagged: bool = False  # a signature hit, or score >= the model's threshold
    outlier: bool = False  # score >= threshold without counting signatures
    deviations: list[Deviation] = field(default_factory=list)
    rule_hits: list[RuleHit] = field(default_factory=list)
    view: RequestView | None = None


def capture_loss(tx: HttpTransaction) -> float:
    """How much the capture's losses around a transaction should lower confidence (0..0.6)."""
    penalty = 0.0
    if tx.partial:
        penalty += 0.3
    if (tx.request is not None and not tx.request.body.complete) or (
            tx.response is not None and not tx.response.body.complete):
        penalty += 0.2
    if any(part in kind for kind in tx.anomalies for part in _LOSS_KINDS):
        penalty += 0.3
    return min(penalty, 0.6)


def signature_occurrences(result: TransactionScore, endpoint: EndpointKey, view: RequestView,
                          client: str, principal: str | None, ref: Ref, penalty: float,
                          key: bytes) -> list[Occurrence]:
    """One occurrence per injection kind the request matched."""
    by_kind: dict[str, list[RuleHit]] = {}
    for hit in result.rule_hits:
        by_kind.setdefault(hit.kind, []).append(hit)
    out: list[Occurrence] = []
    for kind, hits in by_kind.items():
        first = hits[0]
        name = first.location.split(":", 1)[-1]
        locations = {h.location for h in hits}
        explanation: list[dict[str, object]] = [
            {"feature": "signature", "value": h.signature, "location": h.location,
             "baseline": "no signature match expected"} for h in hits[:5]]
        explanation += [d.as_dict() for d in result.deviations if d.parameter in locations][:5]
        confidence = (0.95 if len(hits) > 1 or result.outlier else 0.85) * (1 - penalty)
        out.append(Occurrence(
            kind, endpoint, client, view.ts, principal, confidence=confidence,
            evidence={"signatures": sorted({h.signature for h in hits}),
                      "location": first.location,
                      "snippet": value_evidence(name, first.text, first.start, first.end, key),
                      "method": view.method},
            explanation=explanation, where=first.location, refs=ref, score=result.score))
    return out


def outlier_occurrence(result: TransactionScore, model: DetectionModel, endpoint: EndpointKey,
                       view: RequestView, client: str, principal: str | None, ref: Ref,
                       penalty: float) -> Occurrence:
    """The ml.transaction_outlier occurrence of a request that scored above the threshold."""
    top = result.deviations[:8]
    where = next((d.parameter for d in top if d.parameter), None)
    explanation = [d.as_dict() for d in top]
    if result.forest_score:
        explanation.append({"feature": "isolation_forest.anomaly",
                            "value": round(result.forest_score, 4),
                            "baseline": round(model.forest_calibration.quantile(0.99), 4),
                            "surprise_bits": round(result.forest_bits, 1)})
    model_score = result.score - result.rule_score
    margin = model_score / model.threshold - 1.0
    confidence = min(0.95, 0.5 + 0.45 * min(1.0, margin)) * (1 - penalty)
    return Occurrence(
        "ml.transaction_outlier", endpoint, client, view.ts, principal, confidence=confidence,
        evidence={"score_bits": round(model_score, 1),
                  "threshold_bits": round(model.threshold, 1),
                  "deviated": sorted({d.feature for d in top}), "method": view.method},
        explanation=explanation, where=where, refs=ref, score=result.score,
        owasp=_outlier_owasp(top))


def page_size_occurrence(view: RequestView, endpoint: EndpointKey, client: str,
                         principal: str | None, ref: Ref, penalty: float,
                         model: DetectionModel | None, minimum: int,
                         factor: float) -> Occurrence | None:
    """attack.excessive_page_size when a page-size parameter is far above its baseline."""
    for location, name, value in view.params:
        if name.lower() not in PAGE_NAMES or not value.isdigit() or len(value) > 18:
            continue
        number = int(value)
        baseline_max = 0.0
        if model is not None:
            prof = model.profiles.endpoints.get(endpoint)
            param = prof.params.get(f"{location}:{name}") if prof else None
            if param is not None and param.numeric is not None and param.numeric.n:
                baseline_max = param.numeric.hi
        limit = max(minimum, factor * baseline_max)
        if number > limit:
            where = f"{location}:{name}"
            return Occurrence(
                "attack.excessive_page_size", endpoint, client, view.ts, principal,
                confidence=0.9 * (1 - penalty),
                evidence={"parameter": where, "requested": number},
                explanation=[{"feature": where, "value": number,
                              "baseline": f"max {baseline_max:g} seen" if baseline_max
                              else "no baseline", "threshold": limit}],
                where=where, refs=ref, score=float(number))
    return None


def response_occurrences(tx: HttpTransaction, endpoint: EndpointKey | None,
                         principal: str | None, penalty: float, key: bytes,
                         keep: Callable[[ResponseHit], bool] | None = None,
                         ) -> list[tuple[ResponseHit, Occurrence]]:
    """Misconfigurations the response shows, each with its occurrence.

    ``keep(hit)`` False drops a hit before its occurrence is built: most responses repeat
    a server property already reported (a banner, a missing header), and building the
    occurrence (scrubbed detail, explanation) only to discard it was most of the cost."""
    resp = tx.response
    if resp is None:
        return []
    out: list[tuple[ResponseHit, Occurrence]] = []
    for hit in check_response(resp):
        if keep is not None and not keep(hit):
            continue
        per_client = hit.kind in PER_EVENT_MISCONFIG
        detail = scrub(hit.detail, key)
        out.append((hit, Occurrence(
            hit.kind, endpoint, tx.client[0] if per_client else None, resp.ts_start,
            principal if per_client else None, confidence=0.9 * (1 - penalty),
            evidence={"detail": detail, "status": resp.status},
            explanation=[{"feature": "response", "value": detail,
                          "baseline": "absent from a hardened API's responses",
                          "status": resp.status}],
            where=hit.where, refs=((tx.conn_id, tx.trans_depth),))))
    return out


def window_occurrences(window: ClientWindow, model: DetectionModel | None,
                       behaviour: BehaviourConfig, min_requests: int) -> list[Occurrence]:
    """Behaviour rules and the client forest over one closed window."""
    baseline = model.client_baseline if model is not None else ClientBaseline()
    client = window.main_ip()
    principal = window.main_principal()
    confidence = 1 - window.confidence_penalty
    ts_first = window.first_ts if window.first_ts != math.inf else window.start
    ts_last = window.last_ts if window.last_ts != -math.inf else ts_first
    out: list[Occurrence] = []
    for hit in evaluate(window, baseline, behaviour):
        out.append(Occurrence(
            hit.kind, hit.endpoint, client, ts_first, principal, severity=hit.severity,
            confidence=0.85 * confidence, evidence=hit.evidence, explanation=hit.explanation,
            where=hit.where,
            refs=tuple(window.samples.get(hit.samples, window.samples.get("all", []))),
            score=float(hit.count), count=hit.count, ts_last=ts_last, window_level=True))
    if (model is None or model.client_forest is None or not window.subject.startswith("ip:")
            or window.requests < min_requests):
        return out
    anomaly = model.client_forest.anomaly_one(window.vector())
    raw = window.raw_features()
    # Only "more than usual" is a security signal (more requests, errors, ids, bytes,
    # failures, or machine-regular timing): a quiet client is not a threat, and a forest
    # fitted on near-identical windows would flag every quiet one.
    above = [name for name in CLIENT_FEATURES if _exceeds(name, raw[name], baseline)]
    if anomaly >= model.client_threshold and above:
        explanation: list[dict[str, object]] = [
            {"feature": name, "value": round(raw[name], 4),
             "baseline": round(baseline.q(name), 4)} for name in above]
        explanation.append({"feature": "isolation_forest.anomaly", "value": round(anomaly, 4),
                            "baseline": round(model.client_threshold, 4)})
        out.append(Occurrence(
            "ml.client_outlier", None, client, ts_first, principal,
            confidence=min(0.9, anomaly) * confidence,
            evidence={"window_start": window.start, "requests": window.requests,
                      "anomaly": round(anomaly, 4)},
            explanation=explanation, refs=tuple(window.samples.get("all", [])),
            score=anomaly, count=window.requests, ts_last=ts_last, window_level=True))
    return out


def _exceeds(name: str, value: float, baseline: ClientBaseline) -> bool:
    """A window feature clearly above the baseline's 99th percentile (or, for timing, far
    more regular than people are)."""
    q = baseline.q(name)
    if name == "interarrival_cv":
        return value < 0.1 and q > 0.3
    if name.startswith("ratio_"):
        return value > q + 0.2
    return value > 1.5 * q + 2


def _outlier_owasp(top: list[Deviation]) -> str:
    """The OWASP category the deviations point at."""
    features = {d.feature for d in top}
    if "param.new_name" in features:
        return "API3:2023"  # unexpected properties: mass assignment
    if features & {"endpoint.new", "endpoint.method_unusual"}:
        return "API9:2023"  # an endpoint outside the known inventory
    return "API8:2023"
