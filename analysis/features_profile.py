"""Per-endpoint, per-parameter baselines (Kruegel & Vigna style) and the deviations from them.

An ``EndpointProfile`` learns, from baseline traffic, each parameter's value length,
character classes, punctuation counts, token shape, known values (as keyed hashes, never
the values) and numeric range, plus the endpoint's parameter names and name sets, status
codes, body kinds and sizes, response sizes and latency.  ``Profiles.deviations`` scores one
request against them: a list of ``Deviation``, each with its surprise in bits (see
features_stats) and a redacted value/baseline pair for the finding's explanation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from mirrorscope.analysis.features import RequestView
from mirrorscope.analysis.features_stats import BoundedCounter, Range, bits, unseen_bits
from mirrorscope.analysis.features_values import ValueSignature, describe_class, signature
from mirrorscope.model import EndpointKey

# Deviation features: surprise bits, summed per request (what explanations list).
DEVIATION_FEATURES: tuple[str, ...] = (
    "endpoint.new",
    "endpoint.method_unusual",
    "param.new_name",
    "param.unusual_set",
    "value.new_char_class",
    "value.char_count",
    "value.length",
    "value.shape",
    "value.unknown",
    "value.numeric_range",
    "body.kind",
    "body.size",
    "response.status",
    "response.size",
    "response.latency",
)
# Soft features: continuous and non-zero for normal traffic too, so that the forest can
# learn their normal joint range (a forest cannot split on a feature that was constant in
# its training data, and the deviation bits of held-out normal requests nearly always are).
# Each is the maximum over the request's parameters.
SOFT_FEATURES: tuple[str, ...] = (
    "soft.length_z",  # |length - mean| / sd of the parameter's baseline lengths
    "soft.punct_ratio",  # share of characters that are neither letters nor digits
    "soft.rare_class",  # -log2 frequency of the rarest character class present
    "soft.rare_shape",  # -log2 frequency of the value's shape (open sets: 0)
    "soft.rare_value",  # -log2 frequency of the value itself (open sets: 0)
    "soft.params",  # log2(1 + number of parameters)
)
TX_FEATURES: tuple[str, ...] = DEVIATION_FEATURES + SOFT_FEATURES  # the forest's input
_COLUMN = {name: index for index, name in enumerate(DEVIATION_FEATURES)}
_SOFT_PARAMS = len(SOFT_FEATURES) - 1
# Weak signals (timing and size vary with load and content): capped so that they can
# support a finding but never make one alone.
_CAPS = {"body.size": 6.0, "response.size": 4.0, "response.latency": 3.0}

ValueHasher = Callable[[str], str]
_REDACTED = "[redacted]"


@dataclass(slots=True)
class Deviation:
    """One feature that deviated from the baseline."""

    feature: str  # a DEVIATION_FEATURES name
    bits: float
    parameter: str | None  # "query:id", "json:items[].sku", ... or None
    value: object  # redacted: a length, a shape, the unseen classes; never a raw value
    baseline: object

    def as_dict(self) -> dict[str, object]:
        """The explanation entry of a finding."""
        out: dict[str, object] = {"feature": self.feature, "value": self.value,
                                  "baseline": self.baseline, "surprise_bits": round(self.bits, 1)}
        if self.parameter is not None:
            out["parameter"] = self.parameter
        return out


@dataclass(slots=True)
class ProfileLimits:
    """Bounds of the profiles' memory."""

    max_values: int = 64  # distinct values before a parameter counts as free-form
    max_shapes: int = 48
    max_params: int = 128  # per endpoint
    max_name_sets: int = 64
    max_endpoints: int = 5000
    max_statuses: int = 32


class ParamProfile:
    """What one parameter's values looked like in the baseline."""

    __slots__ = (
        "_class_singletons",
        "_shape_singletons",
        "_value_singletons",
        "classes",
        "length",
        "n",
        "numeric",
        "punct_max",
        "shapes",
        "values",
    )

    def __init__(self, limits: ProfileLimits, secret: bool = False) -> None:
        self.n = 0
        self.length = Range()
        self.classes: dict[str, int] = {}  # class -> values containing it
        self.punct_max: dict[str, int] = {}  # punctuation -> most occurrences in one value
        # A secret (password, token) is an open set by nature: its values and shapes say
        # nothing, and the model must not keep even their hashes.
        self.shapes = BoundedCounter(limits.max_shapes, saturated=secret)
        self.values = BoundedCounter(limits.max_values, saturated=secret)
        self.numeric: Range | None = Range()  # None once a non-numeric value was seen
        self._class_singletons = self._shape_singletons = self._value_singletons = -1

    def learn(self, value: str, hashed: str) -> None:
        """Add one baseline value."""
        sig = signature(value)
        self.n += 1
        self.length.add(sig.length)
        for cls in sig.classes:
            self.classes[cls] = self.classes.get(cls, 0) + 1
        for char, count in sig.punct_counts:
            if count > self.punct_max.get(char, 0):
                self.punct_max[char] = count
        self.shapes.add(sig.shape)
        self.values.add(hashed)
        if self.numeric is not None:
            if sig.number is None or not math.isfinite(sig.number):
                self.numeric = None
            else:
                self.numeric.add(sig.number)
        self._class_singletons = -1

    def freeze(self) -> None:
        """Precompute the singleton counts the scores need."""
        self._class_singletons = sum(1 for c in self.classes.values() if c == 1)
        self._shape_singletons = self.shapes.singletons()
        self._value_singletons = self.values.singletons()

    def deviations(self, value: str, hashed: str, where: str, sensitive: bool,
                   out: list[Deviation], soft: list[float]) -> None:
        """Append how ``value`` deviates from this parameter's baseline; raise ``soft``."""
        if self.n == 0:
            return
        if self._class_singletons < 0:
            self.freeze()
        n = self.n
        sig = signature(value)
        self._soft(sig, hashed, soft)
        unseen = sorted(c for c in sig.classes if c not in self.classes)
        if unseen:
            extra = min(len(unseen) - 1, 4)  # each further new class adds a bit
            # A secret's properties are not shown, only that they deviated.
            out.append(Deviation("value.new_char_class",
                                 unseen_bits(self._class_singletons, n) + extra, where,
                                 _REDACTED if sensitive else [describe_class(c) for c in unseen],
                                 sorted(describe_class(c) for c in self.classes)))
        worst = 0.0
        worst_detail: tuple[str, int, int] | None = None
        for char, count in sig.punct_counts:
            best = self.punct_max.get(char)
            if best is not None and count > best:
                # Exceeding the maximum of n exchangeable values: p <= 1/(n+1), however
                # many values sat at the maximum; 3 vs a maximum of 2 counts half.
                surprise = math.log2(n + 1) * min(1.0, (count - best) / best)
                if surprise > worst:
                    worst, worst_detail = surprise, (char, count, best)
        if worst_detail is not None and worst > 0.5:
            char, count, best = worst_detail
            out.append(Deviation("value.char_count", worst, where,
                                 _REDACTED if sensitive else f"{count} x {char!r}",
                                 f"at most {best} x {char!r}"))
        surprise = self.length.outside_bits(sig.length)
        if surprise:
            out.append(Deviation("value.length", surprise, where,
                                 _REDACTED if sensitive else sig.length, self.length.describe()))
        if not self.shapes.saturated and sig.shape not in self.shapes.counts:
            out.append(Deviation("value.shape", unseen_bits(self._shape_singletons, n), where,
                                 sig.shape, f"{len(self.shapes.counts)} known shapes"))
        if not self.values.saturated and hashed not in self.values.counts:
            out.append(Deviation("value.unknown", unseen_bits(self._value_singletons, n), where,
                                 "a value never seen",
                                 f"{len(self.values.counts)} known values"))
        if self.numeric is not None and sig.number is not None and math.isfinite(sig.number):
            surprise = self.numeric.outside_bits(sig.number)
            if surprise:
                out.append(Deviation("value.numeric_range", surprise, where,
                                     _REDACTED if sensitive else _short_number(sig.number),
                                     self.numeric.describe()))

    def _soft(self, sig: ValueSignature, hashed: str, soft: list[float]) -> None:
        n = self.n
        z = abs(sig.length - self.length.mean) / math.sqrt(self.length.var + 1.0)
        punct = sum(count for _, count in sig.punct_counts)
        ratio = punct / sig.length if sig.length else 0.0
        rare_class = 0.0
        for cls in sig.classes:
            count = self.classes.get(cls, 0)
            surprise = bits(count / n) if count else unseen_bits(self._class_singletons, n)
            rare_class = max(rare_class, surprise)
        rare_shape = rare_value = 0.0
        if not self.shapes.saturated:
            count = self.shapes.counts.get(sig.shape, 0)
            rare_shape = bits(count / n) if count else unseen_bits(self._shape_singletons, n)
        if not self.values.saturated:
            count = self.values.counts.get(hashed, 0)
            rare_value = bits(count / n) if count else unseen_bits(self._value_singletons, n)
        for index, x in enumerate((z, ratio, rare_class, rare_shape, rare_value)):
            if x > soft[index]:
                soft[index] = x

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "n": self.n,
            "length": self.length.to_list(),
            "classes": self.classes,
            "punct_max": self.punct_max,
            "shapes": self.shapes.to_dict(),
            "values": self.values.to_dict(),
            "numeric": None if self.numeric is None else self.numeric.to_list(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object], limits: ProfileLimits) -> ParamProfile:
        """Inverse of to_dict."""
        prof = cls(limits)
        prof.n = int(data["n"])  # type: ignore[call-overload]
        prof.length = Range.from_list(data["length"])  # type: ignore[arg-type]
        prof.classes = {str(k): int(v) for k, v in dict(data["classes"]).items()}  # type: ignore[call-overload]
        prof.punct_max = {str(k): int(v) for k, v in dict(data["punct_max"]).items()}  # type: ignore[call-overload]
        prof.shapes = BoundedCounter.from_dict(data["shapes"])  # type: ignore[arg-type]
        prof.values = BoundedCounter.from_dict(data["values"])  # type: ignore[arg-type]
        numeric = data.get("numeric")
        prof.numeric = None if numeric is None else Range.from_list(numeric)  # type: ignore[arg-type]
        prof.freeze()
        return prof


def _short_number(x: float) -> object:
    return int(x) if x.is_integer() and abs(x) < 1e15 else round(x, 6)


@dataclass(slots=True)
class EndpointProfile:
    """One endpoint's baseline: its parameters, bodies, statuses, sizes and latency."""

    limits: ProfileLimits
    n: int = 0
    names: dict[str, int] = field(default_factory=dict)  # "loc:name" -> requests having it
    params: dict[str, ParamProfile] = field(default_factory=dict)
    name_sets: BoundedCounter | None = None
    statuses: BoundedCounter | None = None
    body_kinds: dict[str, int] = field(default_factory=dict)
    body_size: Range = field(default_factory=Range)
    response_size: Range = field(default_factory=Range)  # log2(1 + bytes)
    latency: Range = field(default_factory=Range)  # log2 of milliseconds
    dropped_params: int = 0
    _frozen: tuple[int, int, int] | None = None  # singletons of names, name sets, statuses

    def __post_init__(self) -> None:
        if self.name_sets is None:
            self.name_sets = BoundedCounter(self.limits.max_name_sets)
        if self.statuses is None:
            self.statuses = BoundedCounter(self.limits.max_statuses)

    def learn(self, view: RequestView, hasher: ValueHasher,
              is_sensitive: Callable[[str], bool] = lambda name: False) -> None:
        """Add one baseline request."""
        self.n += 1
        self._frozen = None
        seen: set[str] = set()
        for location, name, value in view.params:
            where = f"{location}:{name}"
            prof = self.params.get(where)
            if prof is None:
                if len(self.params) >= self.limits.max_params:
                    self.dropped_params += 1
                    continue
                prof = self.params[where] = ParamProfile(self.limits, is_sensitive(name))
            prof.learn(value, "" if prof.values.saturated else hasher(value))
            seen.add(where)
        for where in seen:
            self.names[where] = self.names.get(where, 0) + 1
        assert self.name_sets is not None and self.statuses is not None
        self.name_sets.add("&".join(sorted(seen)))
        kind = _body_kind(view)
        self.body_kinds[kind] = self.body_kinds.get(kind, 0) + 1
        if view.body_kind not in ("none",):
            self.body_size.add(view.body_length)
        if view.status is not None:
            self.statuses.add(str(view.status))
            self.response_size.add(math.log2(1 + view.response_length))
        if view.latency is not None:
            self.latency.add(math.log2(1 + view.latency * 1000))

    def freeze(self) -> None:
        """Precompute singleton counts (and those of every parameter)."""
        assert self.name_sets is not None and self.statuses is not None
        self._frozen = (sum(1 for c in self.names.values() if c == 1),
                        self.name_sets.singletons(), self.statuses.singletons())
        for prof in self.params.values():
            prof.freeze()

    def deviations(self, view: RequestView, hasher: ValueHasher,
                   is_sensitive: Callable[[str], bool],
                   soft: list[float]) -> list[Deviation]:
        """How one request deviates from this endpoint's baseline (``soft`` is filled in)."""
        if self._frozen is None:
            self.freeze()
        assert self._frozen is not None and self.name_sets is not None
        assert self.statuses is not None
        name_singletons, set_singletons, status_singletons = self._frozen
        n = self.n
        out: list[Deviation] = []
        seen: set[str] = set()
        new_names: list[str] = []
        for location, name, value in view.params:
            where = f"{location}:{name}"
            if where in seen:
                prof = self.params.get(where)
            else:
                seen.add(where)
                prof = self.params.get(where)
                if prof is None and where not in self.names:
                    new_names.append(where)
                    continue
            if prof is not None:
                hashed = "" if prof.values.saturated else hasher(value)
                prof.deviations(value, hashed, where, is_sensitive(name), out, soft)
        if new_names:
            surprise = unseen_bits(name_singletons, n)
            out.append(Deviation("param.new_name", surprise + min(len(new_names) - 1, 4),
                                 None, sorted(new_names)[:10],
                                 sorted(self.names)[:20]))
        elif not self.name_sets.saturated:
            key = "&".join(sorted(seen))
            if key not in self.name_sets.counts:
                missing = sorted(w for w, c in self.names.items() if c == n and w not in seen)
                out.append(Deviation("param.unusual_set", unseen_bits(set_singletons, n), None,
                                     {"missing": missing[:10], "present": sorted(seen)[:10]},
                                     f"{len(self.name_sets.counts)} known parameter sets"))
        kinds = self.body_kinds
        kind = _body_kind(view)
        if kind not in kinds:
            singles = sum(1 for c in kinds.values() if c == 1)
            out.append(Deviation("body.kind", unseen_bits(singles, n), None, kind,
                                 sorted(kinds)))
        elif kind == "json_invalid":
            out.append(Deviation("body.kind", bits((kinds[kind] + 1) / (n + 2)), None,
                                 kind, sorted(kinds)))
        if view.body_kind != "none":
            surprise = self.body_size.outside_bits(view.body_length)
            if surprise:
                out.append(Deviation("body.size", min(surprise, _CAPS["body.size"]), None,
                                     view.body_length, self.body_size.describe()))
        statuses = self.statuses
        if (view.status is not None and statuses.counts and not statuses.saturated
                and str(view.status) not in statuses.counts):
            out.append(Deviation("response.status", unseen_bits(status_singletons, n), None,
                                 view.status, sorted(int(s) for s in statuses.counts)))
        if view.status is not None:
            surprise = self.response_size.outside_bits(math.log2(1 + view.response_length), 0.25)
            if surprise:
                out.append(Deviation("response.size", min(surprise, _CAPS["response.size"]),
                                     None, view.response_length,
                                     _describe_log_range(self.response_size, "bytes")))
        if view.latency is not None:
            surprise = self.latency.outside_bits(math.log2(1 + view.latency * 1000), 0.25)
            if surprise:
                out.append(Deviation("response.latency",
                                     min(surprise, _CAPS["response.latency"]), None,
                                     f"{view.latency * 1000:.1f} ms",
                                     _describe_log_range(self.latency, "ms")))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        assert self.name_sets is not None and self.statuses is not None
        return {
            "n": self.n,
            "names": self.names,
            "params": {where: prof.to_dict() for where, prof in self.params.items()},
            "name_sets": self.name_sets.to_dict(),
            "statuses": self.statuses.to_dict(),
            "body_kinds": self.body_kinds,
            "body_size": self.body_size.to_list(),
            "response_size": self.response_size.to_list(),
            "latency": self.latency.to_list(),
            "dropped_params": self.dropped_params,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object], limits: ProfileLimits) -> EndpointProfile:
        """Inverse of to_dict."""
        prof = cls(
            limits,
            n=int(data["n"]),  # type: ignore[call-overload]
            names={str(k): int(v) for k, v in dict(data["names"]).items()},  # type: ignore[call-overload]
            params={str(k): ParamProfile.from_dict(v, limits)
                    for k, v in dict(data["params"]).items()},  # type: ignore[call-overload]
            name_sets=BoundedCounter.from_dict(data["name_sets"]),  # type: ignore[arg-type]
            statuses=BoundedCounter.from_dict(data["statuses"]),  # type: ignore[arg-type]
            body_kinds={str(k): int(v) for k, v in dict(data["body_kinds"]).items()},  # type: ignore[call-overload]
            body_size=Range.from_list(data["body_size"]),  # type: ignore[arg-type]
            response_size=Range.from_list(data["response_size"]),  # type: ignore[arg-type]
            latency=Range.from_list(data["latency"]),  # type: ignore[arg-type]
            dropped_params=int(data.get("dropped_params", 0)),  # type: ignore[call-overload]
        )
        prof.freeze()
        return prof


def _body_kind(view: RequestView) -> str:
    """The body's kind, with the JSON top-level type: schema conformance at the root."""
    return f"json:{view.json_type}" if view.body_kind == "json" else view.body_kind


def _describe_log_range(rng: Range, unit: str) -> str:
    if rng.n == 0:
        return "no baseline"
    lo, hi = 2 ** rng.lo - 1, 2 ** rng.hi - 1
    return f"{lo:.0f}..{hi:.0f} {unit} (n={rng.n})"


def endpoint_id(key: EndpointKey) -> str:
    """A stable text id of an endpoint key (JSON object keys, explanations)."""
    return f"{key.method} {key.host}{key.path_template}"


class Profiles:
    """All endpoints' baselines, plus what is needed to judge an endpoint never seen."""

    def __init__(self, limits: ProfileLimits | None = None) -> None:
        self.limits = limits or ProfileLimits()
        self.endpoints: dict[EndpointKey, EndpointProfile] = {}
        self.host_requests: dict[str, int] = {}
        self.total = 0
        self.dropped_endpoints = 0
        self._methods: dict[tuple[str, str], set[str]] | None = None
        self._host_singletons: dict[str, int] | None = None

    def learn(self, key: EndpointKey, view: RequestView, hasher: ValueHasher,
              is_sensitive: Callable[[str], bool] = lambda name: False) -> None:
        """Add one baseline request of endpoint ``key`` (``is_sensitive`` names secrets)."""
        self.total += 1
        self.host_requests[key.host] = self.host_requests.get(key.host, 0) + 1
        prof = self.endpoints.get(key)
        if prof is None:
            if len(self.endpoints) >= self.limits.max_endpoints:
                self.dropped_endpoints += 1
                return
            prof = self.endpoints[key] = EndpointProfile(self.limits)
        prof.learn(view, hasher, is_sensitive)
        self._methods = None

    def freeze(self) -> None:
        """Precompute what scoring needs (call after learning, before scoring)."""
        methods: dict[tuple[str, str], set[str]] = {}
        singles: dict[str, int] = {}
        for key, prof in self.endpoints.items():
            methods.setdefault((key.host, key.path_template), set()).add(key.method)
            if prof.n == 1:
                singles[key.host] = singles.get(key.host, 0) + 1
            prof.freeze()
        self._methods = methods
        self._host_singletons = singles

    def deviations(self, key: EndpointKey, view: RequestView, hasher: ValueHasher,
                   is_sensitive: Callable[[str], bool],
                   soft: list[float] | None = None) -> list[Deviation]:
        """How one request deviates from its endpoint's baseline (or that it has none).

        ``soft``, when given, must hold len(SOFT_FEATURES) zeros; it receives the request's
        soft features.
        """
        if self._methods is None or self._host_singletons is None:
            self.freeze()
        assert self._methods is not None and self._host_singletons is not None
        if soft is None:
            soft = [0.0] * len(SOFT_FEATURES)
        soft[_SOFT_PARAMS] = math.log2(1 + len(view.params))
        prof = self.endpoints.get(key)
        if prof is not None:
            return prof.deviations(view, hasher, is_sensitive, soft)
        n_host = self.host_requests.get(key.host)
        if n_host is None:  # a host never seen: judged against all traffic
            singles = sum(1 for count in self.host_requests.values() if count == 1)
            surprise = unseen_bits(singles, self.total)
        else:
            surprise = unseen_bits(self._host_singletons.get(key.host, 0), n_host)
        others = self._methods.get((key.host, key.path_template))
        if others:
            return [Deviation("endpoint.method_unusual", surprise, None, key.method,
                              sorted(others))]
        return [Deviation("endpoint.new", surprise, None, endpoint_id(key),
                          f"{sum(1 for k in self.endpoints if k.host == key.host)} endpoints "
                          f"known on {key.host or 'this host'}")]

    def to_dict(self) -> dict[str, object]:
        """JSON form (endpoint keys become objects: JSON keys must be strings)."""
        return {
            "total": self.total,
            "host_requests": self.host_requests,
            "dropped_endpoints": self.dropped_endpoints,
            "limits": {name: getattr(self.limits, name)
                       for name in ProfileLimits.__dataclass_fields__},
            "endpoints": [{"host": k.host, "method": k.method, "path_template": k.path_template,
                           "profile": p.to_dict()} for k, p in self.endpoints.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Profiles:
        """Inverse of to_dict."""
        limits = ProfileLimits(**dict(data["limits"]))  # type: ignore[call-overload]
        out = cls(limits)
        out.total = int(data["total"])  # type: ignore[call-overload]
        out.host_requests = {str(k): int(v) for k, v in dict(data["host_requests"]).items()}  # type: ignore[call-overload]
        out.dropped_endpoints = int(data.get("dropped_endpoints", 0))  # type: ignore[call-overload]
        for item in data["endpoints"]:  # type: ignore[attr-defined]
            key = EndpointKey(item["host"], item["method"], item["path_template"])
            out.endpoints[key] = EndpointProfile.from_dict(item["profile"], limits)
        out.freeze()
        return out


def feature_vector(devs: list[Deviation], soft: list[float]) -> list[float]:
    """The transaction's IsolationForest input: deviation bits summed per column, then the
    soft features."""
    vector = [0.0] * len(DEVIATION_FEATURES)
    for dev in devs:
        vector[_COLUMN[dev.feature]] += dev.bits
    return vector + list(soft)
