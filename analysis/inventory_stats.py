"""Per-endpoint statistics and their JSON document (the inventory's public contract).

`EndpointStats` accumulates what one endpoint's transactions showed; `to_doc` renders the
inventory JSON contract (host, method, path_template, count, first_seen, last_seen,
status_codes, auth, sensitive, parameters, clients, ...) plus what the OpenAPI export and
a later merge need (schemas, content types, histograms).  `from_doc` reads it back, so
`merge_docs` can merge two sensors' views of one endpoint without the raw traffic.
Everything is bounded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mirrorscope.analysis.inventory_errors import InventoryError
from mirrorscope.analysis.schema import SchemaStats, dominant_type
from mirrorscope.analysis.templating import confirms_existence

DOC_VERSION = 1
_BUCKETS_PER_OCTAVE = 8  # ~9 % relative resolution of percentiles
_ZERO = -10_000  # the bucket of values <= 0


@dataclass(slots=True)
class StatsLimits:
    """Bounds of one endpoint's statistics."""

    max_clients: int = 256
    max_principals: int = 256
    max_params_per_location: int = 64
    max_sensitive: int = 128
    max_content_types: int = 8
    max_statuses: int = 32
    max_servers: int = 16
    max_issuers: int = 8
    max_anomaly_kinds: int = 16
    max_partners: int = 32


class Histogram:
    """A log-bucketed histogram: bounded, mergeable, percentiles within ~9 %."""

    __slots__ = ("buckets", "maximum", "minimum", "n", "total")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.n = 0
        self.total = 0.0
        self.minimum: float | None = None
        self.maximum: float | None = None

    def add(self, value: float) -> None:
        """Count one value."""
        self.n += 1
        self.total += value
        self.minimum = value if self.minimum is None else min(self.minimum, value)
        self.maximum = value if self.maximum is None else max(self.maximum, value)
        bucket = _ZERO if value <= 0 else math.floor(math.log2(value) * _BUCKETS_PER_OCTAVE)
        self.buckets[bucket] += 1

    def absorb(self, other: Histogram) -> None:
        """Merge another histogram into this one."""
        self.n += other.n
        self.total += other.total
        self.buckets.update(other.buckets)
        for bound in (other.minimum, other.maximum):
            if bound is not None:
                self.minimum = bound if self.minimum is None else min(self.minimum, bound)
                self.maximum = bound if self.maximum is None else max(self.maximum, bound)

    def percentile(self, q: float) -> float | None:
        """The value below which a fraction q of the observations fall (bucket upper bound)."""
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                value = 0.0 if bucket == _ZERO else 2 ** ((bucket + 1) / _BUCKETS_PER_OCTAVE)
                assert self.minimum is not None and self.maximum is not None
                return round(min(max(value, self.minimum), self.maximum), 3)
        return self.maximum

    def to_doc(self) -> dict[str, object]:
        """Percentiles for people, buckets for merging."""
        if not self.n:
            return {"n": 0}
        return {"n": self.n, "p50": self.percentile(0.5), "p90": self.percentile(0.9),
                "p99": self.percentile(0.99), "min": round(self.minimum or 0.0, 3),
                "max": round(self.maximum or 0.0, 3), "sum": round(self.total, 3),
                "buckets": {str(k): v for k, v in sorted(self.buckets.items())}}

    @classmethod
    def from_doc(cls, doc: object) -> Histogram:
        """Rebuild from to_doc() output."""
        hist = cls()
        if not isinstance(doc, dict) or not doc.get("n"):
            return hist
        hist.n = int(doc["n"])
        hist.total = float(doc.get("sum", 0.0))
        hist.minimum = float(doc["min"]) if doc.get("min") is not None else None
        hist.maximum = float(doc["max"]) if doc.get("max") is not None else None
        hist.buckets = Counter({int(k): int(v) for k, v in (doc.get("buckets") or {}).items()})
        return hist


class ParamStats:
    """One named parameter: how often it came and the types of its values."""

    __slots__ = ("count", "formats", "types")

    def __init__(self) -> None:
        self.count = 0
        self.types: Counter[str] = Counter()
        self.formats: Counter[str] = Counter()

    def add(self, kind: str, fmt: str | None) -> None:
        """Count one occurrence with its inferred type and format."""
        self.count += 1
        self.types[kind] += 1
        if fmt:
            self.formats[fmt] += 1

    def absorb(self, other: ParamStats) -> None:
        """Merge another parameter's counts."""
        self.count += other.count
        self.types.update(other.types)
        self.formats.update(other.formats)

    def type_and_format(self) -> tuple[str, str | None]:
        """The dominant type, and a format shared by every string value."""
        kind = dominant_type(self.types)
        fmt = None
        if kind == "string" and len(self.formats) == 1:
            only, n = next(iter(self.formats.items()))
            fmt = only if n >= self.types.get("string", 0) else None
        return kind, fmt


def _counter(doc: object) -> Counter[str]:
    if not isinstance(doc, dict):
        return Counter()
    return Counter({str(k): int(v) for k, v in doc.items()})


def _bounded_add(counter: Counter[str], key: str, limit: int, by: int = 1) -> bool:
    if key in counter or len(counter) < limit:
        counter[key] += by
        return True
    return False


class EndpointStats:
    """Everything the inventory accumulates for one (host, method, path template)."""

    __slots__ = (
        "anomalies",
        "auth",
        "auth_rejected",
        "clients",
        "clients_overflow",
        "count",
        "exposure",
        "first_seen",
        "issuers",
        "jwt_algs",
        "jwt_long_lived",
        "jwt_no_exp",
        "jwt_none",
        "jwt_unsigned",
        "last_seen",
        "latency",
        "limits",
        "params",
        "partial",
        "partners",
        "principals",
        "req_ct",
        "req_schemas",
        "req_size",
        "resp_ct",
        "resp_schemas",
        "resp_size",
        "schema_samples",
        "sensitive",
        "servers",
        "statuses",
        "unauth_2xx",
    )

    def __init__(self, limits: StatsLimits | None = None) -> None:
        self.limits = limits or StatsLimits()
        self.count = 0
        self.first_seen = math.inf
        self.last_seen = -math.inf
        self.statuses: Counter[str] = Counter()
        self.req_ct: Counter[str] = Counter()
        self.resp_ct: Counter[str] = Counter()
        self.latency = Histogram()
        self.req_size = Histogram()
        self.resp_size = Histogram()
        self.clients: dict[str, list[float]] = {}  # ip -> [count, last_seen, internal]
        self.clients_overflow = 0
        self.exposure: Counter[str] = Counter()  # requests per client class
        self.partners: Counter[str] = Counter()  # requests per named partner
        self.principals: Counter[str] = Counter()
        self.params: dict[tuple[str, str], ParamStats] = {}
        self.auth: Counter[str] = Counter()
        self.auth_rejected = 0
        self.unauth_2xx = 0
        self.jwt_algs: Counter[str] = Counter()
        self.jwt_no_exp = 0
        self.jwt_none = 0
        self.jwt_long_lived = 0
        self.jwt_unsigned = 0
        self.issuers: Counter[str] = Counter()
        self.sensitive: Counter[tuple[str, str, str]] = Counter()
        self.req_schemas: dict[str, SchemaStats] = {}
        self.resp_schemas: dict[str, dict[str, SchemaStats]] = {}
        self.schema_samples = 0
        self.servers: set[str] = set()
        self.anomalies: Counter[str] = Counter()
        self.partial = 0

    # ---------------------------------------------------------------- observing

    def observe(self, *, ts: float, status: int | None, client_ip: str, internal: bool,
                server: str, req_ct: str | None, resp_ct: str | None,
                latency_ms: float | None, req_size: int, resp_size: int | None,
                anomalies: Iterable[str], partial: bool, exposure: str | None = None,
                partner: str | None = None) -> None:
        """Count one transaction's envelope (``exposure``: the resolved client's class)."""
        lim = self.limits
        self.count += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        _bounded_add(self.statuses, str(status) if status is not None else "none",
                     lim.max_statuses)
        if req_ct:
            _bounded_add(self.req_ct, req_ct, lim.max_content_types)
        if resp_ct:
            _bounded_add(self.resp_ct, resp_ct, lim.max_content_types)
        if latency_ms is not None:
            self.latency.add(latency_ms)
        self.req_size.add(req_size)
        if resp_size is not None:
            self.resp_size.add(resp_size)
        entry = self.clients.get(client_ip)
        if entry is not None:
            entry[0] += 1
            entry[1] = max(entry[1], ts)
        elif len(self.clients) < lim.max_clients:
            self.clients[client_ip] = [1, ts, 1.0 if internal else 0.0]
        else:
            self.clients_overflow += 1
        if len(self.servers) < lim.max_servers:
            self.servers.add(server)
        for kind in anomalies:
            _bounded_add(self.anomalies, kind, lim.max_anomaly_kinds)
        if partial:
            self.partial += 1
        if exposure is not None:
            self.exposure[exposure] += 1
            if partner is not None:
                _bounded_add(self.partners, partner, lim.max_partners)

    def observe_param(self, location: str, name: str, kind: str, fmt: str | None) -> None:
        """Count one query/header/cookie parameter occurrence."""
        key = (location, name)
        stats = self.params.get(key)
        if stats is None:
            if sum(1 for loc, _ in self.params if loc == location) >= \
                    self.limits.max_params_per_location:
                return
            stats = self.params[key] = ParamStats()
        stats.add(kind, fmt)

    def observe_auth(self, labels: Iterable[str], principals: Iterable[str],
                     status: int | None) -> None:
        """Count the credentials one request carried ("none" when it carried none)."""
        labels = list(labels)
        for label in labels or ["none"]:
            _bounded_add(self.auth, label, 16)
        for principal in principals:
            _bounded_add(self.principals, principal, self.limits.max_principals)
        if status in (401, 403):
            self.auth_rejected += 1
        elif not labels and status is not None and 200 <= status < 300:
            self.unauth_2xx += 1

    def observe_jwt(self, alg: str, has_exp: bool, long_lived: bool, signed: bool,
                    issuer: str | None) -> None:
        """Count one JWT's properties."""
        _bounded_add(self.jwt_algs, alg, 8)
        self.jwt_none += alg.lower() == "none"
        self.jwt_no_exp += not has_exp
        self.jwt_long_lived += long_lived
        self.jwt_unsigned += not signed
        if issuer:
            _bounded_add(self.issuers, issuer, self.limits.max_issuers)

    def observe_sensitive(self, kind: str, location: str, field: str) -> bool:
        """Count a sensitive value; True the first time this (type, location, field) is seen."""
        key = (kind, location, field[:200])
        if key in self.sensitive:
            self.sensitive[key] += 1
            return False
        if len(self.sensitive) >= self.limits.max_sensitive:
            return False
        self.sensitive[key] = 1
        return True

    def request_schema(self, content_type: str) -> SchemaStats | None:
        """The request body schema of a content type (created on demand, bounded)."""
        found = self.req_schemas.get(content_type)
        if found is None and len(self.req_schemas) < self.limits.max_content_types:
            found = self.req_schemas[content_type] = SchemaStats()
        return found

    def response_schema(self, status: int, content_type: str) -> SchemaStats | None:
        """The response body schema of a status and content type (on demand, bounded)."""
        by_ct = self.resp_schemas.get(str(status))
        if by_ct is None:
            if len(self.resp_schemas) >= self.limits.max_statuses:
                return None
            by_ct = self.resp_schemas[str(status)] = {}
        found = by_ct.get(content_type)
        if found is None and len(by_ct) < self.limits.max_content_types:
            found = by_ct[content_type] = SchemaStats()
        return found

    # ------------------------------------------------------------------ merging

    def absorb(self, other: EndpointStats) -> EndpointStats:
        """Merge another endpoint's statistics into this one; returns self."""
        lim = self.limits
        self.count += other.count
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        for key, n in other.statuses.items():
            _bounded_add(self.statuses, key, lim.max_statuses, n)
        for mine, theirs in ((self.req_ct, other.req_ct), (self.resp_ct, other.resp_ct)):
            for key, n in theirs.items():
                _bounded_add(mine, key, lim.max_content_types, n)
        self.latency.absorb(other.latency)
        self.req_size.absorb(other.req_size)
        self.resp_size.absorb(other.resp_size)
        for ip, (n, last, internal) in other.clients.items():
            entry = self.clients.get(ip)
            if entry is not None:
                entry[0] += n
                entry[1] = max(entry[1], last)
            elif len(self.clients) < lim.max_clients:
                self.clients[ip] = [n, last, internal]
            else:
                self.clients_overflow += int(n)
        self.clients_overflow += other.clients_overflow
        self.exposure.update(other.exposure)
        for key, n in other.partners.items():
            _bounded_add(self.partners, key, lim.max_partners, n)
        for key, n in other.principals.items():
            _bounded_add(self.principals, key, lim.max_principals, n)
        for key, stats in other.params.items():
            if key in self.params:
                self.params[key].absorb(stats)
            elif sum(1 for loc, _ in self.params if loc == key[0]) < lim.max_params_per_location:
                fresh = ParamStats()
                fresh.absorb(stats)
                self.params[key] = fresh
        for key, n in other.auth.items():
            _bounded_add(self.auth, key, 16, n)
        self.auth_rejected += other.auth_rejected
        self.unauth_2xx += other.unauth_2xx
        for key, n in other.jwt_algs.items():
            _bounded_add(self.jwt_algs, key, 8, n)
        self.jwt_none += other.jwt_none
        self.jwt_no_exp += other.jwt_no_exp
        self.jwt_long_lived += other.jwt_long_lived
        self.jwt_unsigned += other.jwt_unsigned
        for key, n in other.issuers.items():
            _bounded_add(self.issuers, key, lim.max_issuers, n)
        for skey, n in other.sensitive.items():
            if skey in self.sensitive or len(self.sensitive) < lim.max_sensitive:
                self.sensitive[skey] += n
        for ct, schema in other.req_schemas.items():
            mine_schema = self.request_schema(ct)
            if mine_schema is not None:
                mine_schema.absorb(schema)
        for status, by_ct in other.resp_schemas.items():
            for ct, schema in by_ct.items():
                mine_schema = self.response_schema(int(status), ct)
                if mine_schema is not None:
                    mine_schema.absorb(schema)
        self.schema_samples += other.schema_samples
        for server in other.servers:
            if len(self.servers) < lim.max_servers:
                self.servers.add(server)
        for key, n in other.anomalies.items():
            _bounded_add(self.anomalies, key, lim.max_anomaly_kinds, n)
        self.partial += other.partial
        return self

    # ------------------------------------------------------------ serialisation

    def auth_labels(self) -> list[str]:
        """Scheme labels seen, most used first ("none" included when requests came bare)."""
        return [label for label, _ in sorted(self.auth.items(), key=lambda kv: (-kv[1], kv[0]))]

    def exists(self) -> bool:
        """True when a response showed the route exists (not only 404/405/400s)."""
        return any(key.isdigit() and confirms_existence(int(key)) for key in self.statuses)

    def _exposure_doc(self) -> dict[str, object]:
        """Requests per client class, the named partners, and the widest class seen."""
        widest = next((c for c in ("external", "partner", "internal") if self.exposure[c]),
                      None)
        return {"internal": self.exposure["internal"], "partner": self.exposure["partner"],
                "external": self.exposure["external"],
                "partners": dict(sorted(self.partners.items())), "class": widest}

    def to_doc(self, host: str, method: str, path_template: str, *,
               path_params: list[dict[str, object]] | None = None,
               extra: dict[str, object] | None = None) -> dict[str, object]:
        """The endpoint's JSON document (inventory contract + mergeable detail)."""
        ips = sorted(self.clients.items(), key=lambda kv: (-kv[1][0], kv[0]))
        internal = sum(1 for _, entry in ips if entry[2])
        params: list[dict[str, object]] = list(path_params or [])
        for (location, name), stats in sorted(self.params.items()):
            kind, fmt = stats.type_and_format()
            if location == "path" and path_params is not None:
                continue
            params.append({"name": name, "in": location, "type": kind, "format": fmt,
                           "count": stats.count,
                           "required": location == "path" or stats.count >= self.count,
                           "types": dict(sorted(stats.types.items())),
                           "formats": dict(sorted(stats.formats.items()))})
        doc: dict[str, object] = {
            "host": host,
            "method": method,
            "path_template": path_template,
            "count": self.count,
            "first_seen": self.first_seen if self.count else None,
            "last_seen": self.last_seen if self.count else None,
            "status_codes": dict(sorted(self.statuses.items())),
            "auth": self.auth_labels(),
            "sensitive": [{"type": t, "location": loc, "field": f, "count": n}
                          for (t, loc, f), n in sorted(self.sensitive.items())],
            "parameters": params,
            "clients": {
                "count": len(self.clients),
                "count_is_lower_bound": self.clients_overflow > 0,
                "internal": internal,
                "external": len(ips) - internal,
                "ips": [{"ip": ip, "count": int(e[0]), "last_seen": e[1], "internal": bool(e[2])}
                        for ip, e in ips],
                "principals": [{"id": p, "count": n} for p, n in
                               sorted(self.principals.items(), key=lambda kv: (-kv[1], kv[0]))],
                "overflow_transactions": self.clients_overflow,
            },
            "exposure": self._exposure_doc(),
            "exists": self.exists(),
            "servers": sorted(self.servers),
            "content_types": {"request": dict(sorted(self.req_ct.items())),
                              "response": dict(sorted(self.resp_ct.items()))},
            "latency_ms": self.latency.to_doc(),
            "request_size": self.req_size.to_doc(),
            "response_size": self.resp_size.to_doc(),
            "auth_detail": {
                "counts": dict(sorted(self.auth.items())),
                "unauthenticated_2xx": self.unauth_2xx,
                "rejected_401_403": self.auth_rejected,
                "jwt": {"algs": dict(sorted(self.jwt_algs.items())),
                        "alg_none": self.jwt_none, "no_exp": self.jwt_no_exp,
                        "long_lived": self.jwt_long_lived, "unsigned": self.jwt_unsigned,
                        "issuers": dict(sorted(self.issuers.items()))},
            },
            "schemas": {
                "request": {ct: s.to_doc() for ct, s in sorted(self.req_schemas.items())},
                "responses": {status: {ct: s.to_doc() for ct, s in sorted(by_ct.items())}
                              for status, by_ct in sorted(self.resp_schemas.items())},
                "samples": self.schema_samples,
            },
            "anomalies": dict(sorted(self.anomalies.items())),
            "partial_transactions": self.partial,
            "doc_version": DOC_VERSION,
        }
        if extra:
            doc.update(extra)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, object], limits: StatsLimits | None = None) -> EndpointStats:
        """Rebuild statistics from a document (the inverse of to_doc, for merging)."""
        stats = cls(limits)
        stats.count = int(doc.get("count") or 0)  # type: ignore[arg-type]
        if doc.get("first_seen") is not None:
            stats.first_seen = float(doc["first_seen"])  # type: ignore[arg-type]
            stats.last_seen = float(doc["last_seen"])  # type: ignore[arg-type]
        stats.statuses = _counter(doc.get("status_codes"))
        content_types = doc.get("content_types") or {}
        assert isinstance(content_types, dict)
        stats.req_ct = _counter(content_types.get("request"))
        stats.resp_ct = _counter(content_types.get("response"))
        stats.latency = Histogram.from_doc(doc.get("latency_ms"))
        stats.req_size = Histogram.from_doc(doc.get("request_size"))
        stats.resp_size = Histogram.from_doc(doc.get("response_size"))
        clients = doc.get("clients") or {}
        assert isinstance(clients, dict)
        for entry in clients.get("ips") or ():
            stats.clients[str(entry["ip"])] = [int(entry["count"]), float(entry["last_seen"]),
                                               1.0 if entry.get("internal") else 0.0]
        stats.clients_overflow = int(clients.get("overflow_transactions") or 0)
        exposure = doc.get("exposure") or {}
        assert isinstance(exposure, dict)
        stats.exposure = Counter({c: int(exposure.get(c) or 0)
                                  for c in ("internal", "partner", "external")
                                  if exposure.get(c)})
        stats.partners = _counter(exposure.get("partners"))
        stats.principals = Counter({str(p["id"]): int(p["count"])
                                    for p in clients.get("principals") or ()})
        for param in doc.get("parameters") or ():  # type: ignore[attr-defined]
            ps = ParamStats()
            ps.count = int(param.get("count") or 0)
            ps.types = _counter(param.get("types")) or Counter({str(param.get("type")): ps.count})
            ps.formats = _counter(param.get("formats"))
            stats.params[(str(param["in"]), str(param["name"]))] = ps
        detail = doc.get("auth_detail") or {}
        assert isinstance(detail, dict)
        labels = doc.get("auth") or ()
        stats.auth = _counter(detail.get("counts")) or Counter(
            {str(a): 1 for a in labels})  # type: ignore[union-attr]
        stats.unauth_2xx = int(detail.get("unauthenticated_2xx") or 0)
        stats.auth_rejected = int(detail.get("rejected_401_403") or 0)
        jwt = detail.get("jwt") or {}
        stats.jwt_algs = _counter(jwt.get("algs"))
        stats.jwt_none = int(jwt.get("alg_none") or 0)
        stats.jwt_no_exp = int(jwt.get("no_exp") or 0)
        stats.jwt_long_lived = int(jwt.get("long_lived") or 0)
        stats.jwt_unsigned = int(jwt.get("unsigned") or 0)
        stats.issuers = _counter(jwt.get("issuers"))
        for item in doc.get("sensitive") or ():  # type: ignore[attr-defined]
            key = (str(item["type"]), str(item["location"]), str(item["field"]))
            stats.sensitive[key] = int(item.get("count") or 1)
        schemas = doc.get("schemas") or {}
        assert isinstance(schemas, dict)
        for ct, sdoc in (schemas.get("request") or {}).items():
            stats.req_schemas[ct] = SchemaStats.from_doc(sdoc)
        for status, by_ct in (schemas.get("responses") or {}).items():
            stats.resp_schemas[str(status)] = {ct: SchemaStats.from_doc(s)
                                               for ct, s in by_ct.items()}
        stats.schema_samples = int(schemas.get("samples") or 0)
        stats.servers = {str(s) for s in doc.get("servers") or ()}  # type: ignore[attr-defined]
        stats.anomalies = _counter(doc.get("anomalies"))
        stats.partial = int(doc.get("partial_transactions") or 0)  # type: ignore[arg-type]
        return stats


_KEEP_FROM_FIRST = ("kind", "nonprod", "merge_reasons")


def merge_docs(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    """Merge two documents of one endpoint (two sensors, two runs): counts add, sets union."""
    if (a.get("host"), a.get("method"), a.get("path_template")) != \
            (b.get("host"), b.get("method"), b.get("path_template")):
        raise InventoryError("merge_docs: the documents describe different endpoints")
    merged = EndpointStats.from_doc(a).absorb(EndpointStats.from_doc(b))
    extra: dict[str, object] = {}
    for key in _KEEP_FROM_FIRST:
        if key in a or key in b:
            extra[key] = a.get(key, b.get(key))
    if "nonprod" in extra:
        extra["nonprod"] = bool(a.get("nonprod")) or bool(b.get("nonprod"))
    reasons_a = a.get("merge_reasons") or []
    reasons_b = b.get("merge_reasons") or []
    assert isinstance(reasons_a, list) and isinstance(reasons_b, list)
    extra["merge_reasons"] = reasons_a + [r for r in reasons_b if r not in reasons_a]
    return merged.to_doc(str(a["host"]), str(a["method"]), str(a["path_template"]), extra=extra)
