"""Client-level windows: what one client (address or principal) did in one time window.

A window counts requests, endpoints, object ids per endpoint template, status classes,
bytes sent to the client, login attempts and failures, and the regularity of the
inter-arrival times.  Everything is bounded: past a bound a set stops growing and an
overflow counter says so.  ``vector()`` is the client IsolationForest's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mirrorscope.model import EndpointKey

CLIENT_FEATURES: tuple[str, ...] = (
    "requests",
    "distinct_endpoints",
    "max_ids_per_template",
    "ratio_4xx",
    "ratio_401_403",
    "ratio_404_405",
    "ratio_5xx",
    "bytes_out",
    "new_endpoints",
    "login_failures",
    "interarrival_cv",
)
# Counts enter the forest on a log scale (a 10x burst is one step, not a cliff).
_LOG_FEATURES = frozenset({"requests", "distinct_endpoints", "max_ids_per_template",
                           "bytes_out", "new_endpoints", "login_failures"})
MAX_SAMPLES = 10  # (conn_id, trans_depth) kept per category


@dataclass(slots=True)
class IdStats:
    """Object ids one client used on one endpoint template."""

    ids: set[str] = field(default_factory=set)  # keyed hashes of the ids
    overflow: int = 0
    never_returned: int = 0  # distinct ids the server had not sent to this client before
    numeric_lo: float = math.inf
    numeric_hi: float = -math.inf
    numeric: int = 0
    not_found: int = 0  # 404 answers to those requests
    parameter: str = ""


@dataclass(slots=True)
class LoginStats:
    """Login attempts of one client on one endpoint."""

    attempts: int = 0
    failures: int = 0
    users: set[str] = field(default_factory=set)  # keyed hashes of the submitted usernames
    failed_users: set[str] = field(default_factory=set)


@dataclass(slots=True)
class ClientWindow:
    """One client's activity in one window [start, start + length)."""

    subject: str  # "ip:<addr>" or "principal:<hmac>"
    start: float
    end: float
    requests: int = 0
    answered: int = 0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    gaps: int = 0
    gap_sum: float = 0.0
    gap_sumsq: float = 0.0
    endpoints: dict[EndpointKey, int] = field(default_factory=dict)
    endpoint_overflow: int = 0
    new_endpoints: set[EndpointKey] = field(default_factory=set)
    status_4xx: int = 0
    status_401_403: int = 0
    status_404_405: int = 0
    status_5xx: int = 0
    error_endpoints: dict[EndpointKey, int] = field(default_factory=dict)  # 404/405 per endpoint
    bytes_out: int = 0
    logins: dict[EndpointKey, LoginStats] = field(default_factory=dict)
    ids: dict[EndpointKey, IdStats] = field(default_factory=dict)
    ips: dict[str, int] = field(default_factory=dict)
    principals: dict[str, int] = field(default_factory=dict)
    max_page: tuple[float, EndpointKey, str] | None = None  # (value, endpoint, parameter)
    samples: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    confidence_penalty: float = 0.0  # worst capture-loss penalty seen in the window

    def sample(self, category: str, ref: tuple[str, int]) -> None:
        """Keep (conn_id, trans_depth) as an example of ``category`` (bounded)."""
        bucket = self.samples.setdefault(category, [])
        if len(bucket) < MAX_SAMPLES:
            bucket.append(ref)

    def arrival(self, ts: float) -> None:
        """Account one request's start time (for the inter-arrival regularity)."""
        if self.last_ts > -math.inf and ts >= self.last_ts:
            gap = ts - self.last_ts
            self.gaps += 1
            self.gap_sum += gap
            self.gap_sumsq += gap * gap
        self.first_ts = min(self.first_ts, ts)
        self.last_ts = max(self.last_ts, ts)

    def interarrival_cv(self) -> float:
        """Coefficient of variation of the gaps (0 = machine-regular); 1 with too few gaps."""
        if self.gaps < 3 or self.gap_sum <= 0:
            return 1.0
        mean = self.gap_sum / self.gaps
        var = max(0.0, self.gap_sumsq / self.gaps - mean * mean)
        return math.sqrt(var) / mean

    def max_ids(self) -> tuple[int, EndpointKey | None]:
        """The most distinct object ids used on one template, and that template."""
        best, where = 0, None
        for key, stats in self.ids.items():
            count = len(stats.ids) + stats.overflow
            if count > best:
                best, where = count, key
        return best, where

    def login_failures(self) -> int:
        """Failed logins in the window, all login endpoints together."""
        return sum(s.failures for s in self.logins.values())

    def raw_features(self) -> dict[str, float]:
        """The window's features, unscaled (explanations show these)."""
        answered = max(self.answered, 1)
        return {
            "requests": self.requests,
            "distinct_endpoints": len(self.endpoints) + self.endpoint_overflow,
            "max_ids_per_template": self.max_ids()[0],
            "ratio_4xx": self.status_4xx / answered,
            "ratio_401_403": self.status_401_403 / answered,
            "ratio_404_405": self.status_404_405 / answered,
            "ratio_5xx": self.status_5xx / answered,
            "bytes_out": self.bytes_out,
            "new_endpoints": len(self.new_endpoints),
            "login_failures": self.login_failures(),
            "interarrival_cv": self.interarrival_cv(),
        }

    def vector(self) -> list[float]:
        """The client IsolationForest's input (counts on a log2 scale)."""
        raw = self.raw_features()
        return [math.log2(1 + raw[name]) if name in _LOG_FEATURES else raw[name]
                for name in CLIENT_FEATURES]

    def main_ip(self) -> str | None:
        """The address that sent most of the window's requests."""
        return max(self.ips.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.ips else None

    def main_principal(self) -> str | None:
        """The principal that sent most of the window's requests."""
        if not self.principals:
            return None
        return max(self.principals.items(), key=lambda kv: (kv[1], kv[0]))[0]


def bump(counter: dict[str, int], key: str, limit: int = 64) -> None:
    """counter[key] += 1, ignoring new keys past ``limit`` distinct ones."""
    if key in counter:
        counter[key] += 1
    elif len(counter) < limit:
        counter[key] = 1
