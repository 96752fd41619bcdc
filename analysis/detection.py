"""Threat detection: the sans-I/O entry point (``Detector``).

Two modes.  *Learn*: ``learn(tx)`` builds per-endpoint profiles, keeps a bounded reservoir
of requests and closes baseline client windows; ``fit()`` turns that into a
``DetectionModel`` (profiles, IsolationForests, calibrations, thresholds).  *Score*:
``feed(tx)`` runs the named rules always and the models when there is one; findings are
aggregated per (kind, endpoint, client, window) and come out when the packet clock closes
the window (``feed``'s return value) or when the caller flushes (``flush(now)``).

The transaction score is in bits of surprise: the larger of the profile deviations' sum
(see features_profile) and the IsolationForest's anomaly expressed as surprise against its
held-out baseline distribution (two calibrated detectors, OR-ed), plus a fixed weight per
signature hit.  The maximum, not the sum: on CSIC 2010 the sum lets the forest's noise on
rare-but-normal requests push them over anomalies at low false-positive rates (TPR 0.48
at 0.2 % FPR vs 0.99 for the maximum).  The alert threshold is set on held-out baseline
traffic (cross-fitting: each fold is scored by profiles that did not see it), never on the
traffic being scored.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mirrorscope.analysis.auth import principal_id
from mirrorscope.analysis.detection_aggregate import Aggregator, Occurrence
from mirrorscope.analysis.detection_catalog import ANOMALY_KINDS
from mirrorscope.analysis.detection_forest import Forest
from mirrorscope.analysis.detection_occurrences import (
    PER_EVENT_MISCONFIG,
    TransactionScore,
    capture_loss,
    outlier_occurrence,
    page_size_occurrence,
    response_occurrences,
    signature_occurrences,
    window_occurrences,
)
from mirrorscope.analysis.detection_redact import is_sensitive_name, scrub
from mirrorscope.analysis.detection_windows import ActivityTracker, TrackerLimits, WindowSet
from mirrorscope.analysis.features import RequestView, request_view
from mirrorscope.analysis.features_client import CLIENT_FEATURES, ClientWindow
from mirrorscope.analysis.features_profile import (
    SOFT_FEATURES,
    TX_FEATURES,
    ProfileLimits,
    Profiles,
    feature_vector,
)
from mirrorscope.analysis.models_io import (
    Calibration,
    DetectionError,
    DetectionModel,
    key_check,
)
from mirrorscope.analysis.origin import OriginConfig, OriginResolver
from mirrorscope.analysis.rules_behaviour import BehaviourConfig, ClientBaseline
from mirrorscope.analysis.rules_injection import check_request
from mirrorscope.analysis.rules_origin import OriginLearner, OriginRules
from mirrorscope.analysis.rules_response import ResponseHit
from mirrorscope.model import Anomaly, EndpointKey, Finding, HttpTransaction, is_security_anomaly

# Keyed hashes of recent values (parameter values, ids, user agents repeat across requests);
# a bounded per-Detector cache, dropped whole when full.
_HASH_CACHE_ENTRIES = 4096
_HASH_CACHE_MAX_VALUE = 256  # characters
_MAX_INTERNED_CLIENTS = 8192

__all__ = ["DetectionConfig", "DetectionError", "DetectionModel", "DetectionStats", "Detector",
           "TransactionScore"]


@dataclass(slots=True)
class DetectionConfig:
    """Knobs of detection; the defaults suit a mirrored production API."""

    window_seconds: float = 60.0  # client windows and finding aggregation
    grace_seconds: float = 5.0  # late transactions still count into a window this long
    # Transaction level.
    max_baseline: int = 50_000  # reservoir of baseline requests kept for cross-fitting
    # Live mode: unflagged scored traffic (and windows without behaviour hits) also goes
    # into the baseline, replacing old entries, so that a later fit() follows the API.
    learn_unflagged: bool = False
    folds: int = 4
    n_estimators: int = 100
    max_samples: int = 256
    random_state: int = 0
    alert_fpr: float = 0.002  # share of held-out baseline requests allowed above threshold
    min_alert_bits: float = 8.0  # never alert on less surprise than this (1 in 256)
    rule_bits: float = 24.0  # weight of one signature hit in the transaction score
    min_forest_samples: int = 200  # fewer baseline requests: no transaction forest
    page_size_min: int = 1000  # a page size above this (and above 4x baseline) is flagged
    page_size_factor: float = 4.0
    # Client level.
    min_client_windows: int = 30  # fewer baseline windows: no client forest
    client_min_requests: int = 10  # smaller windows are not judged by the client forest
    client_alert_fpr: float = 0.01
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    origin: OriginConfig = field(default_factory=OriginConfig)  # proxies, networks, rules
    login_path: str = (r"(?:^|[/_.-])(?:log-?in|sign-?in|logon|auth|authenticate|"
                       r"sessions?|token|oauth2?)(?:$|[/_.-])")
    # Bounds.
    limits: ProfileLimits = field(default_factory=ProfileLimits)
    max_open_windows: int = 20_000
    max_ids_per_template: int = 2048
    max_returned_ids: int = 4096  # per subject
    max_tracked_subjects: int = 20_000
    # conn_id -> client address, to place protocol anomalies.  A connection is dropped when
    # it closes (kept while a finding still waits to name its client, and among the
    # recently closed for late anomalies); at this bound the least recently used open one
    # is evicted (stats.connections_evicted: an anomaly on it has no client).
    max_connections: int = 16_384
    recently_closed_connections: int = 1024
    max_open_findings: int = 100_000
    max_baseline_windows: int = 100_000
    max_reported_misconfig: int = 10_000  # (kind, host, detail) already reported

    def check(self) -> None:
        """Raise DetectionError on values that cannot work."""
        if not self.window_seconds > 0 or self.grace_seconds < 0:
            raise DetectionError("window_seconds must be > 0 and grace_seconds >= 0")
        if self.folds < 2:
            raise DetectionError("folds must be >= 2 (cross-fitting needs held-out data)")
        if not 0 < self.alert_fpr < 1 or not 0 < self.client_alert_fpr < 1:
            raise DetectionError("alert_fpr and client_alert_fpr must be in (0, 1)")
        if self.max_baseline < 1 or self.max_open_windows < 1 or self.max_open_findings < 1:
            raise DetectionError("bounds must be >= 1")
        try:
            re.compile(self.login_path)
        except re.error as exc:
            raise DetectionError(f"login_path is not a valid regular expression: {exc}") from exc


@dataclass(slots=True)
class DetectionStats:
    """Counters (bounds hit, work done)."""

    learned: int = 0
    scored: int = 0
    no_request: int = 0
    reservoir_replaced: int = 0
    windows_dropped: int = 0
    ids_dropped: int = 0
    returned_ids_dropped: int = 0
    findings_dropped: int = 0
    connections_evicted: int = 0


class Detector:
    """Learns baselines, scores transactions, aggregates findings (sans-I/O, deterministic)."""

    def __init__(self, *, endpoint_of: Callable[[HttpTransaction], EndpointKey],
                 config: DetectionConfig | None = None, hmac_key: bytes = b"",
                 model: DetectionModel | None = None) -> None:
        self.config = config or DetectionConfig()
        self.config.check()
        if model is not None and model.key_check and model.key_check != key_check(hmac_key):
            raise DetectionError("detection model was fitted with a different HMAC key")
        self.endpoint_of = endpoint_of
        self.model = model
        self.stats = DetectionStats()
        self._key = hmac_key
        self._login_path = re.compile(self.config.login_path, re.IGNORECASE)
        self._rng = random.Random(self.config.random_state)
        self._hash_cache: dict[str, str] = {}  # recent values' keyed hashes (bounded)
        # Learning state.
        self._known_endpoints: set[EndpointKey] = set()  # seen while learning (bounded)
        self._reservoir: list[tuple[EndpointKey, RequestView]] = []
        self._seen = 0
        self._tracker = ActivityTracker(self._hash, self._login_path, TrackerLimits(
            self.config.max_ids_per_template, self.config.max_returned_ids,
            self.config.max_tracked_subjects))
        self._learn_windows = WindowSet(self.config.window_seconds, self.config.max_open_windows)
        self._baseline_rows: list[dict[str, float]] = []
        self._baseline_vectors: list[list[float]] = []
        self._learn_clock = -math.inf
        # Scoring state.
        self._windows = WindowSet(self.config.window_seconds, self.config.max_open_windows)
        self._aggregator = Aggregator(max_open=self.config.max_open_findings)
        self._clock = -math.inf
        self._connections: OrderedDict[str, str] = OrderedDict()  # open connections
        self._closed: OrderedDict[str, str] = OrderedDict()  # recently closed (bounded)
        self._held: dict[str, str] = {}  # closed, a finding still to resolve its client
        self._clients: dict[str, str] = {}  # interned client addresses (bounded)
        self._reported: set[tuple[str, str, str]] = set()
        # Origins: learned per principal with the baseline, judged while scoring.
        self._origins = OriginResolver(self.config.origin)
        self._origin_learner = OriginLearner(self.config.origin)
        self._origin_rules = OriginRules(self._origins, hmac_key)

    # ----------------------------------------------------------------- helpers

    def _hash(self, value: str) -> str:
        """Keyed hash of a value (profiles and id sets never keep raw values)."""
        cache = self._hash_cache
        found = cache.get(value)
        if found is None:
            found = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8,
                                    key=self._key[:64]).hexdigest()
            if len(value) <= _HASH_CACHE_MAX_VALUE:
                if len(cache) >= _HASH_CACHE_ENTRIES:
                    cache.clear()
                cache[value] = found
        return found

    def principal_of(self, credential: str | None) -> str | None:
        """The keyed-HMAC id of a credential (what findings call the principal)."""
        if not credential:
            return None
        return principal_id(credential, self._key)

    def _view(self, tx: HttpTransaction) -> tuple[EndpointKey, RequestView] | None:
        if tx.request is None:
            self.stats.no_request += 1
            return None
        endpoint = self.endpoint_of(tx)
        view = request_view(tx, endpoint.path_template)
        if view is None:  # pragma: no cover - request_view only fails without a request
            return None
        return endpoint, view

    # ------------------------------------------------------------------- learn

    def learn(self, tx: HttpTransaction) -> None:
        """Add one baseline transaction (assumed benign)."""
        if not isinstance(tx, HttpTransaction):
            raise DetectionError(f"learn() takes an HttpTransaction, not {type(tx).__name__}")
        pair = self._view(tx)
        if pair is None:
            return
        endpoint, view = pair
        principal = self.principal_of(view.credential)
        first_time = endpoint not in self._known_endpoints
        self._learn_origin(tx, principal)
        self._keep(endpoint, view, recent=False)
        self._observe(self._learn_windows, tx, endpoint, view, principal, first_time)
        self._learn_clock = max(self._learn_clock, view.ts)
        before = self._learn_windows.index(self._learn_clock - self.config.grace_seconds)
        for window in self._learn_windows.close(before):
            self._baseline_window(window)

    def _keep(self, endpoint: EndpointKey, view: RequestView, *, recent: bool) -> None:
        """Put a request into the baseline reservoir that fit() learns from."""
        self.stats.learned += 1
        view.credential = None  # the reservoir keeps no tokens
        if len(self._known_endpoints) < self.config.limits.max_endpoints:
            self._known_endpoints.add(endpoint)
        self._seen += 1
        pair = (endpoint, view)
        if len(self._reservoir) < self.config.max_baseline:
            self._reservoir.append(pair)
            return
        if recent:  # live traffic replaces a random slot: old baseline fades out
            slot = self._rng.randrange(self.config.max_baseline)
        else:  # reservoir sampling (seeded): a uniform sample of the whole baseline
            slot = self._rng.randrange(self._seen)
        if slot < self.config.max_baseline:
            self._reservoir[slot] = pair
            self.stats.reservoir_replaced += 1

    def _baseline_window(self, window: ClientWindow) -> None:
        if not window.subject.startswith("ip:"):
            return  # the client forest models addresses; principals share its baseline
        if len(self._baseline_rows) < self.config.max_baseline_windows:
            self._baseline_rows.append(window.raw_features())
            self._baseline_vectors.append(window.vector())

    def fit(self) -> DetectionModel:
        """Fit profiles, forests and thresholds from what was learned; the new model is used."""
        cfg = self.config
        if not self._reservoir:
            raise DetectionError("fit() needs baseline traffic: call learn() first")
        for window in self._learn_windows.close(None):
            self._baseline_window(window)
        self._learn_windows = WindowSet(cfg.window_seconds, cfg.max_open_windows)
        self._learn_clock = -math.inf
        # The model's profiles are learned from the reservoir: all of a baseline that fits
        # in max_baseline, else a uniform (or, live, a recency-weighted) sample of it.
        profiles = Profiles(cfg.limits)
        for endpoint, view in self._reservoir:
            profiles.learn(endpoint, view, self._hash, is_sensitive_name)
        profiles.freeze()
        vectors, profile_bits = self._cross_fit()
        X = np.asarray(vectors, dtype=np.float64)
        forest = None
        forest_cal = Calibration()
        forest_bits = np.zeros(len(X))
        if len(X) >= cfg.min_forest_samples:
            forest = Forest.fit(X, TX_FEATURES, n_estimators=cfg.n_estimators,
                                max_samples=cfg.max_samples, random_state=cfg.random_state)
            anomalies = forest.anomaly(X)
            forest_cal = Calibration.of(anomalies)
            forest_bits = np.array([_forest_bits(forest_cal, a) for a in anomalies])
        combined = np.maximum(np.asarray(profile_bits), forest_bits)
        score_cal = Calibration.of(combined)
        threshold = max(cfg.min_alert_bits, score_cal.quantile(1.0 - cfg.alert_fpr) + 1e-9)
        client_baseline = ClientBaseline.from_windows(self._baseline_rows)
        client_forest = None
        client_threshold = 1.0
        if len(self._baseline_vectors) >= cfg.min_client_windows:
            CX = np.asarray(self._baseline_vectors, dtype=np.float64)
            client_forest = Forest.fit(CX, CLIENT_FEATURES, n_estimators=cfg.n_estimators,
                                       max_samples=cfg.max_samples,
                                       random_state=cfg.random_state)
            scores = client_forest.anomaly(CX)
            client_threshold = max(0.6, float(np.quantile(scores, 1.0 - cfg.client_alert_fpr)))
        self.model = DetectionModel(
            profiles=profiles,
            threshold=float(threshold),
            tx_forest=forest,
            forest_calibration=forest_cal,
            score_calibration=score_cal,
            client_baseline=client_baseline,
            client_forest=client_forest,
            client_threshold=client_threshold,
            key_check=key_check(self._key),
            learned=self._seen,
            settings={"alert_fpr": cfg.alert_fpr, "min_alert_bits": cfg.min_alert_bits,
                      "window_seconds": cfg.window_seconds, "folds": cfg.folds,
                      "random_state": cfg.random_state, "n_estimators": cfg.n_estimators},
            origin=self._origin_learner.baseline(),
        )
        return self.model

    def _cross_fit(self) -> tuple[list[list[float]], list[float]]:
        """Deviation vectors of every reservoir request, each scored by profiles that were
        learned without its fold: what normal traffic the profiles never saw looks like."""
        folds = min(self.config.folds, len(self._reservoir))
        vectors: list[list[float]] = []
        totals: list[float] = []
        if folds < 2:
            return vectors, totals
        # Folds by a seeded shuffle, never by position: traffic is periodic (CSIC's is
        # exactly), and index % folds would put whole endpoints into one fold.
        fold_of = np.random.default_rng(self.config.random_state).permutation(
            len(self._reservoir)) % folds
        for fold in range(folds):
            profiles = Profiles(self.config.limits)
            held_out: list[tuple[EndpointKey, RequestView]] = []
            for index, pair in enumerate(self._reservoir):
                if fold_of[index] != fold:
                    profiles.learn(pair[0], pair[1], self._hash, is_sensitive_name)
                else:
                    held_out.append(pair)
            profiles.freeze()
            for endpoint, view in held_out:
                soft = [0.0] * len(SOFT_FEATURES)
                devs = profiles.deviations(endpoint, view, self._hash, is_sensitive_name, soft)
                vectors.append(feature_vector(devs, soft))
                totals.append(sum(d.bits for d in devs))
        return vectors, totals

    # ------------------------------------------------------------------- score

    def score_transaction(self, tx: HttpTransaction) -> TransactionScore:
        """Score one transaction without touching windows or findings (pure w.r.t. state)."""
        pair = self._view(tx)
        if pair is None:
            return TransactionScore(None)
        endpoint, view = pair
        return self._score(tx, endpoint, view)

    def _score(self, tx: HttpTransaction, endpoint: EndpointKey,
               view: RequestView) -> TransactionScore:
        result = TransactionScore(endpoint, view=view)
        assert tx.request is not None
        result.rule_hits = check_request(view, tx.request.headers)
        kinds = {hit.kind for hit in result.rule_hits}
        result.rule_score = self.config.rule_bits * len(kinds)
        model = self.model
        if model is not None:
            soft = [0.0] * len(SOFT_FEATURES)
            devs = model.profiles.deviations(endpoint, view, self._hash, is_sensitive_name, soft)
            result.profile_bits = sum(d.bits for d in devs)
            if model.tx_forest is not None:
                anomaly = model.tx_forest.anomaly_one(feature_vector(devs, soft))
                result.forest_score = anomaly
                result.forest_bits = _forest_bits(model.forest_calibration, anomaly)
            devs.sort(key=lambda d: -d.bits)
            result.deviations = devs
            model_score = max(result.profile_bits, result.forest_bits)
            result.outlier = model_score >= model.threshold
        else:
            model_score = 0.0
        result.score = model_score + result.rule_score
        result.flagged = result.outlier or bool(kinds)
        return result

    def feed(self, tx: HttpTransaction) -> list[Finding]:
        """Score one transaction; return the findings of windows the packet clock closed."""
        if not isinstance(tx, HttpTransaction):
            raise DetectionError(f"feed() takes an HttpTransaction, not {type(tx).__name__}")
        self._remember_connection(tx)
        pair = self._view(tx)
        ts = _ts_of(tx)
        if pair is not None:
            endpoint, view = pair
            self.stats.scored += 1
            result = self._score(tx, endpoint, view)
            principal = self.principal_of(view.credential)
            penalty = capture_loss(tx)
            self._transaction_occurrences(tx, result, endpoint, view, principal, penalty)
            known = self.model is None or endpoint in self.model.profiles.endpoints
            window = self._observe(self._windows, tx, endpoint, view, principal, not known)
            if window is not None:
                window.confidence_penalty = max(window.confidence_penalty, penalty)
            origin_flagged = self._origin_occurrences(tx, endpoint, view.ts, principal, penalty)
            if (self.config.learn_unflagged and not result.flagged and not penalty
                    and not origin_flagged):
                self._learn_origin(tx, principal)
                self._keep(endpoint, view, recent=True)
        elif tx.response is not None:
            self._response_occurrences(tx, None, None, capture_loss(tx))
        return self._advance(ts)

    def feed_anomaly(self, a: Anomaly) -> list[Finding]:
        """Promote a security-relevant protocol anomaly (desync, smuggling, evasion)."""
        if not isinstance(a, Anomaly):
            raise DetectionError(f"feed_anomaly() takes an Anomaly, not {type(a).__name__}")
        if not is_security_anomaly(a.kind):
            return self._advance(a.ts)
        kind = ANOMALY_KINDS.get(a.kind, "attack.request_smuggling")
        client = self.client_of(a.conn_id) if a.conn_id else None
        occ = Occurrence(
            kind, None, client, a.ts, confidence=0.8,
            evidence={"anomaly": a.kind, "detail": scrub(a.detail[:200], self._key),
                      "conn_id": a.conn_id},
            explanation=[{"feature": "protocol_anomaly", "value": a.kind,
                          "baseline": "never in well-formed traffic",
                          "detail": scrub(a.detail[:200], self._key)}],
            where=a.kind, conn_id=a.conn_id, score=1.0)
        self._add(occ)
        return self._advance(a.ts)

    def flush(self, now: float) -> list[Finding]:
        """Close every window that ends at or before ``now`` (math.inf: all) and emit."""
        if math.isnan(now):
            raise DetectionError("flush() needs a time, not NaN")
        if now == math.inf:
            return self._close(None)
        self._clock = max(self._clock, now)
        # Window i spans [i*W, (i+1)*W): it has ended when i < floor(now / W).
        return self._close(math.floor(now / self.config.window_seconds))

    # ------------------------------------------------------------- internals

    def _advance(self, ts: float) -> list[Finding]:
        if ts <= self._clock:
            return []
        self._clock = ts
        before = math.floor((ts - self.config.grace_seconds) / self.config.window_seconds)
        if before <= self._windows.closed_below:
            return []  # nothing open can be older than what was closed already
        return self._close(before)

    def _close(self, before: int | None) -> list[Finding]:
        for window in self._windows.close(before):
            self._window_occurrences(window)
        if before is not None:
            self._windows.closed_below = max(self._windows.closed_below, before)
        found = self._aggregator.close(before, self.client_of)
        held = self._held
        if held:
            pending = self._aggregator.pending_conns
            for conn_id in [c for c in held if c not in pending]:
                del held[conn_id]
        return found

    def _add(self, occ: Occurrence) -> None:
        # A late occurrence goes into the oldest window still open, never a closed one.
        window = max(math.floor(occ.ts / self.config.window_seconds), self._windows.closed_below)
        self._aggregator.add(occ, window)
        self.stats.findings_dropped = self._aggregator.dropped

    def client_of(self, conn_id: str) -> str | None:
        """The client address of a connection seen carrying a transaction, if remembered."""
        return (self._connections.get(conn_id) or self._held.get(conn_id)
                or self._closed.get(conn_id))

    def forget_connection(self, conn_id: str) -> None:
        """A connection closed: its memory goes, unless a finding still needs its client.

        The map then holds the open connections, not the last max_connections ever seen
        (memory in proportion to concurrency, not to traffic); the last
        recently_closed_connections stay for anomalies that trail the close."""
        client = self._connections.pop(conn_id, None)
        if client is None:
            return
        if conn_id in self._aggregator.pending_conns:
            self._held[conn_id] = client
        closed = self._closed
        closed[conn_id] = client
        if len(closed) > self.config.recently_closed_connections:
            closed.popitem(last=False)

    def _remember_connection(self, tx: HttpTransaction) -> None:
        conns = self._connections
        if tx.conn_id in conns:
            conns.move_to_end(tx.conn_id)
            return
        client = tx.client[0]
        # One string per address, not one per connection: the map holds tens of thousands.
        conns[tx.conn_id] = self._clients.setdefault(client, client) \
            if len(self._clients) < _MAX_INTERNED_CLIENTS else client
        if len(conns) > self.config.max_connections:
            conns.popitem(last=False)
            self.stats.connections_evicted += 1

    def _transaction_occurrences(self, tx: HttpTransaction, result: TransactionScore,
                                 endpoint: EndpointKey, view: RequestView,
                                 principal: str | None, penalty: float) -> None:
        """Signatures, outliers, page sizes and response misconfigurations of one request."""
        ref = ((tx.conn_id, tx.trans_depth),)
        client = tx.client[0]
        for occ in signature_occurrences(result, endpoint, view, client, principal, ref,
                                         penalty, self._key):
            self._add(occ)
        if result.outlier and self.model is not None:
            self._add(outlier_occurrence(result, self.model, endpoint, view, client, principal,
                                         ref, penalty))
        page = page_size_occurrence(view, endpoint, client, principal, ref, penalty,
                                    self.model, self.config.page_size_min,
                                    self.config.page_size_factor)
        if page is not None:
            self._add(page)
        self._response_occurrences(tx, endpoint, principal, penalty)

    def _learn_origin(self, tx: HttpTransaction, principal: str | None) -> None:
        """Remember the network a principal came from (the baseline of auth.new_network)."""
        if principal is None or tx.request is None:
            return
        origin = self._origins.resolve(tx.client[0], tx.request.headers)
        self._origin_learner.add(principal, self._origins.network_of(origin.client))

    def _origin_occurrences(self, tx: HttpTransaction, endpoint: EndpointKey, ts: float,
                            principal: str | None, penalty: float) -> bool:
        """Forged forwarding chains, new networks and shared tokens; True when any fired."""
        assert tx.request is not None
        origin = self._origins.resolve(tx.client[0], tx.request.headers)
        baseline = self.model.origin if self.model is not None else None
        occurrences = self._origin_rules.check(origin, principal, endpoint, ts, baseline,
                                               ((tx.conn_id, tx.trans_depth),), penalty)
        for occ in occurrences:
            self._add(occ)
        return bool(occurrences)

    def _response_occurrences(self, tx: HttpTransaction, endpoint: EndpointKey | None,
                              principal: str | None, penalty: float) -> None:
        host = endpoint.host if endpoint is not None else tx.server[0]
        reported = self._reported
        room = self.config.max_reported_misconfig

        def keep(hit: ResponseHit) -> bool:
            if hit.kind in PER_EVENT_MISCONFIG:
                return True
            # A server property (banner, headers, CORS): reported once per host and
            # detail for the detector's lifetime, not once per endpoint and window.
            mark = (hit.kind, host, hit.detail)
            if mark in reported:
                return False
            if len(reported) < room:
                reported.add(mark)
            return True

        for _hit, occ in response_occurrences(tx, endpoint, principal, penalty, self._key,
                                              keep):
            self._add(occ)

    def _observe(self, windows: WindowSet, tx: HttpTransaction, endpoint: EndpointKey,
                 view: RequestView, principal: str | None,
                 new_endpoint: bool) -> ClientWindow | None:
        tracker = self._tracker
        window = tracker.observe(windows, tx, endpoint, view, principal, new_endpoint)
        self.stats.windows_dropped = tracker.windows_dropped
        self.stats.ids_dropped = tracker.ids_dropped
        self.stats.returned_ids_dropped = tracker.returned_ids_dropped
        return window

    def _window_occurrences(self, window: ClientWindow) -> None:
        """Behaviour rules and the client forest over one closed window."""
        occurrences = window_occurrences(window, self.model, self.config.behaviour,
                                         self.config.client_min_requests)
        if self.config.learn_unflagged and not occurrences:
            self._baseline_window(window)
        for occ in occurrences:
            self._add(occ)


def _forest_bits(calibration: Calibration, anomaly: float) -> float:
    """Forest anomaly as surprise beyond the typical: the median baseline request is 0."""
    return max(0.0, calibration.surprise(anomaly) - 1.0)


def _ts_of(tx: HttpTransaction) -> float:
    if tx.request is not None:
        return tx.request.ts_start
    if tx.response is not None:
        return tx.response.ts_start
    return 0.0
