"""Small streaming statistics with an honest measure of surprise, shared by the profiles.

Every deviation is scored in bits of surprise, -log2(p), where p is an upper estimate of
how often normal traffic would show it:

* something never seen (a value, a shape, a status): the Good-Turing estimate of the mass
  of unseen events, (items seen exactly once + 1) / (n + 2).  An endpoint whose baseline
  values are all different makes a new value unsurprising; one with two values makes it rare.
* a number beyond everything seen: at most 1/(n+1) by exchangeability, softened by
  Chebyshev's bound var/(x-mean)^2 for values just past the edge (Kruegel & Vigna).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def bits(p: float) -> float:
    """Surprise of an event of probability p, in bits."""
    return -math.log2(min(1.0, max(p, 1e-12)))


def unseen_bits(singletons: int, n: int) -> float:
    """Surprise of a never-seen item after n observations with ``singletons`` seen once."""
    return bits((singletons + 1) / (n + 2))


@dataclass(slots=True)
class Range:
    """Count, mean, variance (Welford), min and max of a stream of numbers."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: float) -> None:
        """Learn one number."""
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        if x < self.lo:
            self.lo = x
        if x > self.hi:
            self.hi = x

    @property
    def var(self) -> float:
        """Sample variance (0 with fewer than two numbers)."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    def outside_bits(self, x: float, floor_var: float = 1.0) -> float:
        """Surprise of x when it lies outside [min, max]; 0 inside (or with no data)."""
        if self.n == 0 or self.lo <= x <= self.hi:
            return 0.0
        distance = x - self.mean
        chebyshev = max(self.var, floor_var) / (distance * distance) if distance else 1.0
        # Exchangeability: a new value beyond the max of n has probability <= 1/(n+1).
        return bits(max(chebyshev, 1.0 / (self.n + 1)))

    def to_list(self) -> list[float]:
        """[n, mean, m2, lo, hi] for JSON (infinities as None)."""
        return [self.n, self.mean, self.m2, _finite(self.lo), _finite(self.hi)]

    @classmethod
    def from_list(cls, data: list[float | None]) -> Range:
        """Inverse of to_list."""
        n, mean, m2, lo, hi = data
        return cls(int(n or 0), float(mean or 0.0), float(m2 or 0.0),
                   math.inf if lo is None else float(lo), -math.inf if hi is None else float(hi))

    def describe(self) -> str:
        """"lo..hi (mean m)" for explanations."""
        if self.n == 0:
            return "no baseline"
        return f"{_num(self.lo)}..{_num(self.hi)} (mean {_num(self.mean)}, n={self.n})"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


class BoundedCounter:
    """Counts of distinct items up to a bound; past it, the counter is *saturated* (open set).

    A saturated counter no longer says whether an item is new: the set it describes is open
    (free text, ids), so novelty is not evidence of anything.
    """

    __slots__ = ("counts", "limit", "saturated")

    def __init__(self, limit: int, counts: dict[str, int] | None = None,
                 saturated: bool = False) -> None:
        self.limit = limit
        self.counts: dict[str, int] = counts if counts is not None else {}
        self.saturated = saturated

    def add(self, item: str) -> None:
        """Count one item (ignored once saturated)."""
        if self.saturated:
            return
        counts = self.counts
        if item in counts:
            counts[item] += 1
        elif len(counts) >= self.limit:
            self.saturated = True
            self.counts = {}  # an open set: the counts would only waste memory
        else:
            counts[item] = 1

    def singletons(self) -> int:
        """Items seen exactly once."""
        return sum(1 for c in self.counts.values() if c == 1)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"limit": self.limit, "saturated": self.saturated, "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BoundedCounter:
        """Inverse of to_dict."""
        counts = {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}  # type: ignore[call-overload]
        return cls(int(data["limit"]), counts, bool(data.get("saturated")))  # type: ignore[call-overload]
