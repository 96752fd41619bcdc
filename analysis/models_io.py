"""The fitted detection model and its persistence as JSON (never pickle).

A ``DetectionModel`` is the profiles (counts, ranges, keyed value hashes), the two
IsolationForests as tree arrays (see detection_forest), the calibration of their scores on
held-out baseline traffic, the client-window baseline and the alert thresholds.  Loading
parses JSON and checks shapes and types: a tampered model can be wrong, but it cannot run
code.  The model stores no raw parameter values: known values are keyed hashes, so the
model is only usable with the installation key it was fitted with (checked on load).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mirrorscope.analysis.detection_forest import Forest, ForestError
from mirrorscope.analysis.features_profile import Profiles
from mirrorscope.analysis.rules_behaviour import ClientBaseline
from mirrorscope.analysis.rules_origin import OriginBaseline, OriginModelError

FORMAT = "mirrorscope.detection-model"
VERSION = 1
CALIBRATION_POINTS = 4096


class DetectionError(Exception):
    """The detection API was misused (bad configuration, no baseline, a foreign model)."""


def key_check(key: bytes) -> str:
    """A fingerprint of the HMAC key: tells whether a model was fitted with this key."""
    return hmac.new(key, b"mirrorscope detection model", hashlib.sha256).hexdigest()[:16]


@dataclass(slots=True)
class Calibration:
    """The distribution of a score on held-out baseline traffic (sorted order statistics)."""

    points: list[float] = field(default_factory=list)  # ascending
    n: int = 0  # how many scores the points summarise

    @classmethod
    def of(cls, scores: Sequence[float]) -> Calibration:
        """Summarise scores by at most CALIBRATION_POINTS evenly spaced order statistics."""
        ordered = sorted(float(s) for s in scores)
        if len(ordered) > CALIBRATION_POINTS:
            step = (len(ordered) - 1) / (CALIBRATION_POINTS - 1)
            ordered = [ordered[round(i * step)] for i in range(CALIBRATION_POINTS)]
        return cls(ordered, len(scores))

    def tail(self, score: float) -> float:
        """Share of baseline scores >= score, smoothed: never 0."""
        if not self.points:
            return 1.0
        # A hair of tolerance: the same score computed by numpy (fit) and by plain Python
        # (scoring) may differ in the last bit.
        above = len(self.points) - bisect.bisect_left(self.points, score - 1e-9)
        return (above + 1) / (len(self.points) + 1)

    def surprise(self, score: float) -> float:
        """-log2(tail): bits of surprise of a score against the baseline's."""
        return -math.log2(self.tail(score))

    def quantile(self, q: float) -> float:
        """The q-quantile of the baseline scores (0 when empty)."""
        if not self.points:
            return 0.0
        return self.points[min(len(self.points) - 1, max(0, math.ceil(q * len(self.points)) - 1))]

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"n": self.n, "points": self.points}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Calibration:
        """Inverse of to_dict."""
        points = [float(p) for p in data.get("points") or []]  # type: ignore[attr-defined]
        if points != sorted(points):
            raise DetectionError("calibration points are not sorted")
        return cls(points, int(data.get("n", len(points))))  # type: ignore[call-overload]


@dataclass(slots=True)
class DetectionModel:
    """Everything scoring needs, fitted from a baseline."""

    profiles: Profiles
    threshold: float  # alert threshold of the combined transaction score (bits)
    tx_forest: Forest | None = None
    forest_calibration: Calibration = field(default_factory=Calibration)
    score_calibration: Calibration = field(default_factory=Calibration)  # combined, held out
    client_baseline: ClientBaseline = field(default_factory=ClientBaseline)
    client_forest: Forest | None = None
    client_threshold: float = 1.0  # client forest anomaly above which a window is an outlier
    key_check: str = ""
    learned: int = 0  # baseline transactions
    settings: dict[str, object] = field(default_factory=dict)  # config values used to fit
    # Networks each principal came from; None: a model from before origins were learned
    # (the new-network rule then stays silent).
    origin: OriginBaseline | None = None

    def to_json(self) -> str:
        """The model as a JSON document (numbers, strings, lists, objects only)."""
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "threshold": self.threshold,
            "key_check": self.key_check,
            "learned": self.learned,
            "settings": self.settings,
            "profiles": self.profiles.to_dict(),
            "tx_forest": None if self.tx_forest is None else self.tx_forest.to_dict(),
            "forest_calibration": self.forest_calibration.to_dict(),
            "score_calibration": self.score_calibration.to_dict(),
            "client_baseline": self.client_baseline.to_dict(),
            "client_forest": None if self.client_forest is None else self.client_forest.to_dict(),
            "client_threshold": self.client_threshold,
        }
        if self.origin is not None:
            doc["origin"] = self.origin.to_dict()
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes, *, hmac_key: bytes | None = None) -> DetectionModel:
        """Parse a model written by to_json; with ``hmac_key``, check it was fitted with it."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise DetectionError(f"detection model is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DetectionError("not a mirrorscope detection model")
        if doc.get("version") != VERSION:
            raise DetectionError(f"unsupported detection model version {doc.get('version')!r}")
        if hmac_key is not None and doc.get("key_check") != key_check(hmac_key):
            raise DetectionError("detection model was fitted with a different HMAC key")
        try:
            tx_forest = doc.get("tx_forest")
            client_forest = doc.get("client_forest")
            origin = doc.get("origin")
            return cls(
                profiles=Profiles.from_dict(doc["profiles"]),
                threshold=float(doc["threshold"]),
                tx_forest=None if tx_forest is None else Forest.from_dict(tx_forest),
                forest_calibration=Calibration.from_dict(doc["forest_calibration"]),
                score_calibration=Calibration.from_dict(doc["score_calibration"]),
                client_baseline=ClientBaseline.from_dict(doc["client_baseline"]),
                client_forest=None if client_forest is None else Forest.from_dict(client_forest),
                client_threshold=float(doc["client_threshold"]),
                key_check=str(doc.get("key_check", "")),
                learned=int(doc.get("learned", 0)),
                settings=dict(doc.get("settings") or {}),
                origin=None if origin is None else OriginBaseline.from_dict(origin),
            )
        except (KeyError, TypeError, ValueError, AttributeError, ForestError,
                OriginModelError) as exc:
            raise DetectionError(f"malformed detection model: {exc!r}") from exc
