"""Named behaviour detectors over a closed client window: BOLA enumeration, credential
stuffing / brute force, scraping and error-driven reconnaissance.

Each threshold is the larger of an absolute floor (so a tiny baseline cannot make one
extra request an attack) and a multiple of what baseline windows showed (so a busy API
does not flag its normal heavy users).  Every hit explains itself: the window's value next
to the baseline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mirrorscope.analysis.features_client import CLIENT_FEATURES, ClientWindow
from mirrorscope.analysis.features_profile import endpoint_id
from mirrorscope.model import EndpointKey

BASELINE_QUANTILE = 0.99


@dataclass(slots=True)
class BehaviourConfig:
    """Floors and factors of the behaviour rules."""

    bola_min_ids: int = 20  # distinct object ids on one template in one window
    bola_unreturned_ratio: float = 0.7  # share of those ids never returned to the client
    login_min_failures: int = 5
    login_failure_ratio: float = 0.5
    stuffing_min_users: int = 3  # distinct usernames: stuffing; fewer: brute force
    scrape_min_requests: int = 150
    scrape_min_bytes: int = 20_000_000
    recon_min_errors: int = 10  # 404/405 answers in the window
    recon_min_endpoints: int = 5  # distinct endpoints answering 404/405
    recon_min_ratio: float = 0.5
    baseline_factor: float = 3.0  # x the baseline's 99th percentile


@dataclass(slots=True)
class ClientBaseline:
    """What client windows looked like while learning: high quantiles of each feature."""

    windows: int = 0
    quantiles: dict[str, float] = field(default_factory=dict)  # feature -> 99th percentile

    @classmethod
    def from_windows(cls, rows: list[dict[str, float]]) -> ClientBaseline:
        """The baseline of a list of raw window features."""
        if not rows:
            return cls()
        quantiles = {name: float(np.quantile([r[name] for r in rows], BASELINE_QUANTILE))
                     for name in CLIENT_FEATURES}
        return cls(len(rows), quantiles)

    def q(self, name: str) -> float:
        """The baseline's 99th percentile of a feature (0 without a baseline)."""
        return self.quantiles.get(name, 0.0)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"windows": self.windows, "quantiles": self.quantiles}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClientBaseline:
        """Inverse of to_dict."""
        quantiles = {str(k): float(v) for k, v in dict(data.get("quantiles") or {}).items()}  # type: ignore[call-overload]
        return cls(int(data.get("windows", 0)), quantiles)  # type: ignore[call-overload]


@dataclass(slots=True)
class WindowHit:
    """A behaviour rule that fired on one window."""

    kind: str
    endpoint: EndpointKey | None
    count: int  # requests that make up the behaviour
    evidence: dict[str, object]
    explanation: list[dict[str, object]]
    samples: str  # the window's sample category holding example transactions
    where: str | None = None
    severity: str | None = None  # None: the catalogue's default


def _floor(cfg: BehaviourConfig, minimum: float, baseline: float) -> float:
    return max(minimum, cfg.baseline_factor * baseline)


def _bola(w: ClientWindow, base: ClientBaseline, cfg: BehaviourConfig) -> list[WindowHit]:
    hits: list[WindowHit] = []
    limit = _floor(cfg, cfg.bola_min_ids, base.q("max_ids_per_template"))
    for endpoint, stats in w.ids.items():
        distinct = len(stats.ids) + stats.overflow
        if distinct < limit:
            continue
        unreturned = stats.never_returned / distinct
        if unreturned < cfg.bola_unreturned_ratio:
            continue
        explanation: list[dict[str, object]] = [
            {"feature": "distinct_object_ids", "value": distinct,
             "baseline": round(base.q("max_ids_per_template"), 1), "threshold": round(limit, 1)},
            {"feature": "ids_never_returned_to_client", "value": round(unreturned, 3),
             "baseline": f">= {cfg.bola_unreturned_ratio} flags"},
        ]
        evidence: dict[str, object] = {"template": endpoint.path_template,
                                       "parameter": stats.parameter,
                                       "distinct_ids": distinct,
                                       "not_found_answers": stats.not_found}
        if stats.numeric >= distinct * 0.9 and stats.numeric_hi > stats.numeric_lo:
            span = stats.numeric_hi - stats.numeric_lo + 1
            density = round(distinct / span, 3)
            evidence["numeric_id_range"] = [int(stats.numeric_lo), int(stats.numeric_hi)]
            explanation.append({"feature": "id_range_density", "value": density,
                                "baseline": "near 1.0 means a sequential walk"})
        if stats.not_found:
            explanation.append({"feature": "not_found_ratio",
                                "value": round(stats.not_found / distinct, 3),
                                "baseline": "ids that do not exist"})
        hits.append(WindowHit("attack.bola_enumeration", endpoint, distinct, evidence,
                              explanation, f"ids:{endpoint_id(endpoint)}", stats.parameter))
    return hits


def _logins(w: ClientWindow, base: ClientBaseline, cfg: BehaviourConfig) -> list[WindowHit]:
    hits: list[WindowHit] = []
    limit = _floor(cfg, cfg.login_min_failures, base.q("login_failures"))
    for endpoint, stats in w.logins.items():
        if stats.failures < limit or stats.failures < cfg.login_failure_ratio * stats.attempts:
            continue
        users = len(stats.failed_users)
        kind = ("attack.credential_stuffing" if users >= cfg.stuffing_min_users
                else "attack.brute_force")
        explanation: list[dict[str, object]] = [
            {"feature": "login_failures", "value": stats.failures,
             "baseline": round(base.q("login_failures"), 1), "threshold": round(limit, 1)},
            {"feature": "failure_ratio", "value": round(stats.failures / stats.attempts, 3),
             "baseline": f">= {cfg.login_failure_ratio} flags"},
            {"feature": "distinct_usernames", "value": users,
             "baseline": f">= {cfg.stuffing_min_users}: many accounts (stuffing)"},
        ]
        evidence: dict[str, object] = {"attempts": stats.attempts, "failures": stats.failures,
                                       "distinct_usernames": users,
                                       "successes": stats.attempts - stats.failures}
        severity = "critical" if stats.attempts > stats.failures else None  # one got in
        hits.append(WindowHit(kind, endpoint, stats.failures, evidence, explanation,
                              "login_failure", None, severity))
    return hits


def _scraping(w: ClientWindow, base: ClientBaseline, cfg: BehaviourConfig) -> list[WindowHit]:
    req_limit = _floor(cfg, cfg.scrape_min_requests, base.q("requests"))
    byte_limit = _floor(cfg, cfg.scrape_min_bytes, base.q("bytes_out"))
    if w.requests < req_limit and w.bytes_out < byte_limit:
        return []
    top = max(w.endpoints.items(), key=lambda kv: (kv[1], str(kv[0])))[0] if w.endpoints else None
    seconds = max(w.last_ts - w.first_ts, 1e-3)
    explanation: list[dict[str, object]] = [
        {"feature": "requests", "value": w.requests, "baseline": round(base.q("requests"), 1),
         "threshold": round(req_limit, 1)},
        {"feature": "bytes_out", "value": w.bytes_out, "baseline": round(base.q("bytes_out")),
         "threshold": round(byte_limit)},
        {"feature": "request_rate_per_s", "value": round(w.requests / seconds, 2),
         "baseline": "window average"},
    ]
    evidence: dict[str, object] = {"requests": w.requests, "bytes_out": w.bytes_out,
                                   "distinct_endpoints": len(w.endpoints),
                                   "top_endpoint_requests": w.endpoints.get(top, 0) if top else 0}
    return [WindowHit("attack.scraping", top, w.requests, evidence, explanation, "all")]


def _recon(w: ClientWindow, base: ClientBaseline, cfg: BehaviourConfig) -> list[WindowHit]:
    errors = w.status_404_405
    if (errors < cfg.recon_min_errors or len(w.error_endpoints) < cfg.recon_min_endpoints
            or errors < cfg.recon_min_ratio * max(w.answered, 1)):
        return []
    explanation: list[dict[str, object]] = [
        {"feature": "not_found_or_not_allowed", "value": errors,
         "baseline": round(base.q("ratio_404_405") * max(w.answered, 1), 1),
         "threshold": cfg.recon_min_errors},
        {"feature": "ratio_404_405", "value": round(errors / max(w.answered, 1), 3),
         "baseline": round(base.q("ratio_404_405"), 3)},
        {"feature": "distinct_endpoints_probed", "value": len(w.error_endpoints),
         "baseline": f">= {cfg.recon_min_endpoints} flags"},
    ]
    probed = sorted(f"{k.method} {k.path_template}" for k in w.error_endpoints)[:20]
    return [WindowHit("attack.recon", None, errors, {"probed_sample": probed,
                                                     "errors": errors}, explanation, "404")]


def evaluate(window: ClientWindow, baseline: ClientBaseline,
             cfg: BehaviourConfig) -> list[WindowHit]:
    """Every behaviour rule that fires on a closed window."""
    return [*_bola(window, baseline, cfg), *_logins(window, baseline, cfg),
            *_scraping(window, baseline, cfg), *_recon(window, baseline, cfg)]
