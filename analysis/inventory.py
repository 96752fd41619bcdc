"""The API inventory: endpoints with parameters, schemas, auth, sensitive data, and findings.

Sans-I/O: `feed(tx)` takes one HttpTransaction and returns the findings it created (a
finding is announced once, when its aggregate is created); `summaries()`, `to_json()` and
`findings()` read the current state.  Endpoints are host + method + path template; the
templates come from a trie per host (templating.py) whose decisions are explained in each
endpoint document's "merge_reasons".
"""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import parse_qsl

from mirrorscope.analysis.auth import PASSWORD_PARAMS, AuthObservation, detect_auth
from mirrorscope.analysis.inventory_config import (
    InventoryConfig,
    InventoryError,
    NetworkClassifier,
)
from mirrorscope.analysis.inventory_findings import (
    Aggregate,
    FindingBook,
    max_severity,
    raise_severity,
    to_finding,
)
from mirrorscope.analysis.inventory_request import (
    STANDARD_REQUEST_HEADERS,
    RequestView,
    decode_json,
    is_json_media,
    parse_request,
)
from mirrorscope.analysis.inventory_stats import EndpointStats, merge_docs
from mirrorscope.analysis.openapi_diff import diff_against_spec
from mirrorscope.analysis.origin import OriginResolver
from mirrorscope.analysis.schema import LeafVisitor, infer_scalar
from mirrorscope.analysis.sensitive import PII_TYPES, SECRET_TYPES, classify, mask, scan_text
from mirrorscope.analysis.templating import (
    Node,
    PathTrie,
    path_params,
    split_path,
    template_and_params,
    template_of,
)
from mirrorscope.model import EndpointKey, EndpointSummary, Finding, HttpBody, HttpTransaction

__all__ = ["Inventory", "InventoryConfig", "InventoryError", "merge_docs"]

OTHER_HOSTS = "~other-hosts"
_KIND_TYPES = {"integer": ("integer", None), "uuid": ("string", "uuid"),
               "email": ("string", "email"), "date": ("string", "date"),
               "date-time": ("string", "date-time"), "ipv4": ("string", "ipv4")}
_STATIC_MEDIA = re.compile(r"(text/(css|javascript)|application/(x-)?javascript|image/|font/|"
                           r"application/font|audio/|video/|application/wasm)")
_TEXT_MEDIA = re.compile(r"text/|[/+]xml$|application/(x-www-form-urlencoded|javascript)")
_MULTIPART_NAME = re.compile(rb'Content-Disposition:[^\r\n]*?\bname="([^"\r\n]{1,100})"'
                             rb'([^\r\n]*?filename=)?', re.IGNORECASE)
_PII_SEVERITY = {"credit_card": "high", "ssn": "high", "iban": "medium",
                 "date_of_birth": "medium", "postal_address": "low", "email": "low",
                 "phone": "low"}
_TLS_PORTS = (443, 8443, 9443)


def _kinds_type(kinds: Counter[str]) -> tuple[str, str | None]:
    mapped = {_KIND_TYPES.get(k, ("string", None)) for k in kinds}
    if len(mapped) == 1:
        return next(iter(mapped))
    return "string", None


class _Bodies:
    """Lazily decoded JSON bodies of one transaction (parsed at most once)."""

    __slots__ = ("_request", "_response", "request_body", "request_media", "response_body",
                 "response_media", "status")

    def __init__(self, tx: HttpTransaction, view: RequestView) -> None:
        self.request_body = tx.request.body if tx.request else HttpBody()
        self.response_body = tx.response.body if tx.response else HttpBody()
        self.request_media = view.request_media
        self.response_media = view.response_media
        self.status = tx.response.status if tx.response else None
        self._request: object = ...
        self._response: object = ...

    @staticmethod
    def _maybe_json(media: str | None) -> bool:
        return media is None or is_json_media(media) or media == "text/plain"

    def request_json(self) -> object | None:
        """The request body as JSON, or None."""
        if self._request is ...:
            self._request = decode_json(self.request_body) \
                if self._maybe_json(self.request_media) else None
        return self._request

    def response_json(self) -> object | None:
        """The response body as JSON, or None."""
        if self._response is ...:
            self._response = decode_json(self.response_body) \
                if self._maybe_json(self.response_media) else None
        return self._response

    def response_keys(self) -> frozenset[str] | None:
        """Top-level keys of a 2xx JSON response (a list's first object, marked "[]")."""
        if self.status is None or not 200 <= self.status < 300:
            return None
        value = self.response_json()
        if isinstance(value, dict):
            return frozenset(str(k) for k in value)
        if isinstance(value, list):
            first = value[0] if value else None
            inner = frozenset(str(k) for k in first) if isinstance(first, dict) else frozenset()
            return inner | {"[]"}
        return None


class Inventory:
    """Builds the API inventory from HTTP transactions (sans-I/O)."""

    def __init__(self, *, config: InventoryConfig | None = None, hmac_key: bytes = b"") -> None:
        if not isinstance(hmac_key, bytes):
            raise InventoryError("hmac_key must be bytes")
        self.config = config or InventoryConfig()
        self._key = hmac_key
        self._tries: dict[str, PathTrie[EndpointStats]] = {}
        self._networks = NetworkClassifier(self.config.internal_networks)
        self._origins = OriginResolver(self.config.origin)
        self._nonprod_re = re.compile(self.config.nonprod_pattern, re.IGNORECASE)
        self._nonprod_cache: dict[str, str | None] = {}
        self._book = FindingBook(self.config.max_findings, self.config.finding_transactions)
        self._endpoints = 0
        self._counters: Counter[str] = Counter()
        # The key of the transaction fed last: detection asks endpoint_of() right after feed().
        self._last: tuple[tuple[int, str, int], EndpointKey] | None = None

    # ------------------------------------------------------------------ public

    @property
    def counters(self) -> dict[str, int]:
        """What was skipped or bounded (orphans, untracked endpoints, truncated paths ...)."""
        out = dict(self._counters)
        out["endpoints"] = sum(1 for trie in self._tries.values() for _ in trie.endpoints())
        out["template_merges"] = sum(t.merges for t in self._tries.values())
        out["template_splits"] = sum(t.splits for t in self._tries.values())
        out["template_overflows"] = sum(t.overflows for t in self._tries.values())
        out["findings_dropped"] = self._book.dropped
        return out

    def feed(self, tx: HttpTransaction) -> list[Finding]:
        """Account one transaction; return the findings it created (announced once each)."""
        view = parse_request(tx)
        if view is None:
            self._counters["orphan_responses"] += 1
            return []
        self._counters["transactions"] += 1
        trie = self._trie(view.host)
        segments, cut = split_path(view.path, self.config.templating.max_depth)
        if cut:
            self._counters["paths_truncated"] += 1
        bodies = _Bodies(tx, view)
        status = bodies.status
        node = trie.insert(segments, view.method, status, bodies.response_keys)
        stats = node.payloads.get(view.method)
        if stats is None:
            if self._endpoints >= self.config.max_endpoints and \
                    self._counters["transactions_untracked"] % 1024 == 0:
                self._endpoints = self.counters["endpoints"]  # merges may have freed room
            if self._endpoints >= self.config.max_endpoints:
                self._counters["transactions_untracked"] += 1
                return []
            stats = node.payloads[view.method] = EndpointStats(self.config.stats_limits)
            self._endpoints += 1
        new: list[Finding] = []
        # Observing changes no template: render it (and find the path parameters) once.
        template, params = template_and_params(node)
        self._observe(tx, view, bodies, node, template, params, segments, stats, new)
        self._last = ((id(tx), tx.conn_id, tx.trans_depth),
                      EndpointKey(view.host, view.method, template))
        return new

    def endpoint_of(self, tx: HttpTransaction) -> EndpointKey:
        """The endpoint a transaction belongs to under the current templates (no update)."""
        if self._last is not None and self._last[0] == (id(tx), tx.conn_id, tx.trans_depth):
            return self._last[1]
        view = parse_request(tx)
        if view is None:
            server = f"{tx.server[0]}:{tx.server[1]}"
            return EndpointKey(server, "", "")
        host = view.host if view.host in self._tries or len(self._tries) < \
            self.config.max_hosts else OTHER_HOSTS
        segments, _ = split_path(view.path, self.config.templating.max_depth)
        trie = self._tries.get(host)
        if trie is None:
            trie = PathTrie(_absorb, self.config.templating)  # classification only
        bodies = _Bodies(tx, view)
        return EndpointKey(host, view.method,
                           trie.lookup(segments, view.method, bodies.response_keys))

    def summaries(self) -> list[EndpointSummary]:
        """Every endpoint with its document, sorted by host, path and method."""
        by_key: dict[EndpointKey, dict[str, object]] = {}
        for host, trie in self._tries.items():
            nonprod = self._nonprod_reason(host)
            for node, method, stats in trie.endpoints():
                template = template_of(node)
                key = EndpointKey(host, method, template)
                doc = stats.to_doc(host, method, template,
                                   path_params=self._path_params(node, stats),
                                   extra={"merge_reasons": trie.decisions(node),
                                          "nonprod": nonprod is not None,
                                          "kind": self._endpoint_kind(stats)})
                by_key[key] = merge_docs(by_key[key], doc) if key in by_key else doc
        out = [EndpointSummary(key, int(doc["count"]), float(doc["first_seen"]),  # type: ignore[arg-type]
                               float(doc["last_seen"]), doc)  # type: ignore[arg-type]
               for key, doc in by_key.items()]
        out.sort(key=lambda s: (s.key.host, s.key.path_template, s.key.method))
        return out

    def findings(self) -> list[Finding]:
        """Every inventory finding with final counts (shadow/zombie when a spec is configured)."""
        out = self._book.findings(template_of)
        if self.config.spec is not None:
            out += self._spec_findings(self.config.spec)
        return out

    def to_json(self) -> dict[str, object]:
        """The public inventory contract: {"endpoints": [...]}."""
        return {"endpoints": [s.doc for s in self.summaries()]}

    # ----------------------------------------------------------------- helpers

    def _trie(self, host: str) -> PathTrie[EndpointStats]:
        trie = self._tries.get(host)
        if trie is None:
            if len(self._tries) >= self.config.max_hosts:
                self._counters["hosts_overflow"] += 1
                host = OTHER_HOSTS
                trie = self._tries.get(host)
            if trie is None:
                trie = self._tries[host] = PathTrie(_absorb, self.config.templating)
        return trie

    def _nonprod_reason(self, host: str) -> str | None:
        if host in self._nonprod_cache:
            return self._nonprod_cache[host]
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        reason: str | None = None
        if name in self.config.prod_hosts or host in self.config.prod_hosts:
            reason = None
        elif name in self.config.nonprod_hosts or host in self.config.nonprod_hosts:
            reason = "configured as non-production"
        elif not name.replace(".", "").isdigit() and not name.startswith("["):
            m = self._nonprod_re.search(name)
            if m:
                reason = f"host name contains '{m.group(0).strip('.-')}'"
        if len(self._nonprod_cache) < 4096:
            self._nonprod_cache[host] = reason
        return reason

    @staticmethod
    def _endpoint_kind(stats: EndpointStats) -> str:
        media = [m for m in stats.resp_ct if m]
        if media and all(_STATIC_MEDIA.match(m) for m in media):
            return "static"
        if media and all(m == "text/html" for m in media):
            return "page"
        return "api"

    @staticmethod
    def _path_params(node: Node[EndpointStats],
                     stats: EndpointStats) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for _, name, param in path_params(node):
            kind, fmt = _kinds_type(param.kinds)
            out.append({"name": name, "in": "path", "type": kind, "format": fmt,
                        "count": stats.count, "required": True,
                        "types": dict(sorted(param.kinds.items())), "formats": {}})
        return out

    # ------------------------------------------------------------- observation

    def _observe(self, tx: HttpTransaction, view: RequestView, bodies: _Bodies,
                 node: Node[EndpointStats], template: str,
                 params: list[tuple[int, str, Node[EndpointStats]]], segments: list[str],
                 stats: EndpointStats, new: list[Finding]) -> None:
        req = tx.request
        resp = tx.response
        assert req is not None
        status = bodies.status
        ts = req.ts_start
        client_ip = tx.client[0]
        internal = self._networks.is_internal(client_ip)
        # Exposure is about who really called: the client behind trusted proxies.
        resolved = self._origins.resolve(client_ip, req.headers).client
        exposure, partner = self._origins.exposure(resolved)
        latency = None
        if resp is not None and resp.ts_start and req.ts_end:
            latency = max(0.0, (resp.ts_start - req.ts_end) * 1000.0)
        stats.observe(ts=ts, status=status, client_ip=client_ip, internal=internal,
                      server=view.server, req_ct=view.request_media,
                      resp_ct=view.response_media, latency_ms=latency,
                      req_size=req.body.length, resp_size=resp.body.length if resp else None,
                      anomalies=tx.anomalies, partial=tx.partial, exposure=exposure,
                      partner=partner)
        confidence = 0.7 if tx.partial or tx.anomalies else 1.0
        ctx = _Context(self, tx, view, node, template, stats, ts, client_ip, confidence, new)
        for name, value in view.query:
            kind, fmt = infer_scalar(value)
            stats.observe_param("query", name[:100], kind, fmt)
            ctx.check_value("request.query", name, value)
            if name.lower() in PASSWORD_PARAMS and value:
                ctx.cleartext("password in query", f"query:{name.lower()}")
        for name in view.header_names:
            if name in STANDARD_REQUEST_HEADERS or name.startswith("sec-"):
                continue
            value = view.headers[name]
            kind, fmt = infer_scalar(value)
            stats.observe_param("header", name[:100], kind, fmt)
            ctx.check_value("request.header", name, value)
        for name, _ in view.cookies:
            stats.observe_param("cookie", name[:100], "string", None)
        for position, name, _ in params:
            if position < len(segments):
                ctx.check_value("request.path", name, segments[position])
        observations = detect_auth(view.headers, view.query, view.cookies, self._key)
        self._observe_auth(ctx, observations, status)
        sample = stats.schema_samples < self.config.schema_full_samples or \
            stats.count % self.config.schema_sample_every == 0
        if sample:
            stats.schema_samples += 1
            self._observe_bodies(ctx, bodies)
        ctx.flush()
        reason = self._nonprod_reason(view.host)
        if reason is not None:
            ctx.record("api.nonprod_exposed", "low" if internal else "medium",
                       {"host": view.host, "reason": reason,
                        "external_clients": [] if internal else [client_ip]},
                       subkey=view.host, host_level=True)

    def _observe_auth(self, ctx: _Context, observations: list[AuthObservation],
                      status: int | None) -> None:
        stats = ctx.stats
        ctx.authenticated = bool(observations)
        stats.observe_auth((o.label for o in observations), (o.principal for o in observations),
                           status)
        for obs in observations:
            if obs.scheme == "basic":
                ctx.cleartext("HTTP Basic credentials", "basic")
            if obs.location == "query":
                ctx.secret_in_url(obs.name, "api_key", obs.principal)
            info = obs.jwt
            if info is None:
                continue
            stats.observe_jwt(info.alg, info.has_exp, info.long_lived, info.signed, info.iss)
            accepted = status is not None and 200 <= status < 300
            weak: list[tuple[str, str]] = []
            if info.alg_none:
                weak.append(("alg_none", "critical" if accepted else "high"))
            elif not info.signed:
                weak.append(("unsigned", "high"))
            if not info.has_exp:
                weak.append(("no_exp", "medium"))
            elif info.long_lived:
                weak.append(("long_lived", "low"))
            for weakness, severity in weak:
                evidence: dict[str, object] = {
                    "weakness": weakness, "alg": info.alg, "claims": list(info.claims),
                    "issuer": info.iss, "sub_ids": [info.sub_id], "location": obs.location,
                    "accepted_statuses": [status] if status is not None else []}
                if info.lifetime is not None:
                    evidence["lifetime_days"] = round(info.lifetime / 86400, 1)
                # One finding per host, weakness and issuer (a token family), listing the
                # endpoints that accepted such tokens: per endpoint it would repeat itself.
                evidence["endpoints"] = [f"{ctx.view.method} {ctx.template}"]
                ctx.record("api.jwt_weak", severity, evidence,
                           subkey=f"{weakness}:{info.iss or ''}", principal=obs.principal,
                           host_level=True)

    def _observe_bodies(self, ctx: _Context, bodies: _Bodies) -> None:
        status = bodies.status
        req_value = bodies.request_json()
        media = bodies.request_media or "application/octet-stream"
        if req_value is not None:
            schema = ctx.stats.request_schema(media if is_json_media(media) else
                                              "application/json")
            if schema is not None:
                schema.observe(req_value, self.config.schema_limits,
                               ctx.visitor("request.body"))
        elif media == "application/x-www-form-urlencoded" and bodies.request_body.head:
            text = bodies.request_body.head.decode("latin-1")
            form = dict(parse_qsl(text, keep_blank_values=True, errors="replace",
                                  max_num_fields=None)[:128])
            schema = ctx.stats.request_schema(media)
            if schema is not None:
                schema.observe(form, self.config.schema_limits, ctx.visitor("request.body"))
            for name, value in form.items():
                if name.lower() in PASSWORD_PARAMS and value:
                    ctx.cleartext("password in form body", f"form:{name.lower()}")
        elif media.startswith("multipart/form-data") and bodies.request_body.head:
            fields = {m.group(1).decode("latin-1"): "<file>" if m.group(2) else ""
                      for m in _MULTIPART_NAME.finditer(bodies.request_body.head[:65536])}
            schema = ctx.stats.request_schema("multipart/form-data")
            if schema is not None and fields:
                schema.observe(dict(list(fields.items())[:128]), self.config.schema_limits)
        elif bodies.request_body.head and _TEXT_MEDIA.match(media):
            ctx.scan_free_text("request.body", bodies.request_body.head)
        if status is None:
            return
        resp_value = bodies.response_json()
        resp_media = bodies.response_media or "application/octet-stream"
        if resp_value is not None:
            schema = ctx.stats.response_schema(
                status, resp_media if is_json_media(resp_media) else "application/json")
            if schema is not None:
                schema.observe(resp_value, self.config.schema_limits,
                               ctx.visitor("response.body"))
        elif bodies.response_body.head and _TEXT_MEDIA.match(resp_media) and \
                not _STATIC_MEDIA.match(resp_media):
            ctx.scan_free_text("response.body", bodies.response_body.head)

    def _spec_findings(self, spec: dict) -> list[Finding]:
        summaries = self.summaries()
        result = diff_against_spec(summaries, spec)
        out: list[Finding] = []
        docs = {(s.key.host, s.key.method, s.key.path_template): s.doc for s in summaries}
        for kind, entries in (("api.shadow_endpoint", result["shadow"]),
                              ("api.zombie_endpoint", result["zombie"])):
            for entry in entries:
                doc = docs.get((entry["host"], entry["method"], entry["path_template"]), {})
                severity = "medium"
                if doc.get("auth_detail", {}).get("unauthenticated_2xx") or any(
                        s.get("type") in PII_TYPES for s in doc.get("sensitive", [])):
                    severity = "high"
                evidence = {k: v for k, v in entry.items() if k not in ("host", "method")}
                agg = Aggregate(kind, severity, entry["host"], entry["method"], None, None, "",
                                float(entry.get("first_seen") or 0.0),
                                float(entry.get("last_seen") or 0.0),
                                count=int(entry.get("count") or 1), evidence=evidence)
                out.append(to_finding(agg, EndpointKey(entry["host"], entry["method"],
                                                       entry["path_template"])))
        return out


def _absorb(mine: EndpointStats, theirs: EndpointStats) -> EndpointStats:
    return mine.absorb(theirs)


class _Context:
    """Per-transaction helper: sensitive hits, findings, with the transaction's identity."""

    __slots__ = ("authenticated", "client_ip", "confidence", "done", "hits", "inv", "new",
                 "node", "stats", "template", "ts", "tx", "view")

    def __init__(self, inv: Inventory, tx: HttpTransaction, view: RequestView,
                 node: Node[EndpointStats], template: str, stats: EndpointStats, ts: float,
                 client_ip: str, confidence: float, new: list[Finding]) -> None:
        self.inv = inv
        self.tx = tx
        self.view = view
        self.node = node
        self.template = template  # template_of(node), rendered once for the transaction
        self.stats = stats
        self.ts = ts
        self.client_ip = client_ip
        self.confidence = confidence
        self.new = new
        self.hits: list[tuple[str, str, str, str]] = []  # (type, location, field, masked)
        self.authenticated = False
        self.done: set[tuple[str, str]] = set()  # (kind, subkey) counted for this transaction

    def record(self, kind: str, severity: str, evidence: dict[str, object], *,
               subkey: str = "", principal: str | None = None,
               host_level: bool = False) -> None:
        """Count a finding occurrence (once per transaction); announce it when it is new."""
        if (kind, subkey) in self.done:
            return
        self.done.add((kind, subkey))
        inv = self.inv
        tx_ref = (self.tx.conn_id, self.tx.trans_depth)
        agg = inv._book.record(
            kind=kind, severity=severity, host=self.view.host,
            method=None if host_level else self.view.method,
            node=None if host_level else self.node, ts=self.ts, tx=tx_ref, evidence=evidence,
            subkey=subkey, principal=principal, confidence=self.confidence)
        if agg is not None:
            endpoint = None if host_level else EndpointKey(self.view.host, self.view.method,
                                                           self.template)
            self.new.append(to_finding(agg, endpoint))

    def visitor(self, location: str) -> LeafVisitor:
        """A JSON leaf visitor that records sensitive values found at `location`."""
        hits = self.hits

        def visit(path: str, name: str, value: object) -> bool:
            kind = classify(name, value)
            if kind is None:
                return False
            hits.append((kind, location, path, mask(kind, str(value))))
            return True

        return visit

    def check_value(self, location: str, name: str, value: str) -> None:
        """Classify one parameter value (query, header, path)."""
        kind = classify(name, value)
        if kind is not None:
            self.hits.append((kind, location, name[:100], mask(kind, value)))

    def scan_free_text(self, location: str, head: bytes) -> None:
        """Scan a textual body for strongly-shaped sensitive values."""
        text = head[:65536].decode("utf-8", errors="replace")
        for kind, value in scan_text(text):
            self.hits.append((kind, location, "", mask(kind, value)))

    def cleartext(self, what: str, subkey: str) -> None:
        """Credentials seen in clear text on the wire."""
        if ("api.cleartext_credentials", subkey) in self.done:
            return
        self.done.add(("api.cleartext_credentials", subkey))
        port = self.tx.server[1]
        confidence = self.confidence
        evidence: dict[str, object] = {"credential": what, "server_port": port}
        if port in _TLS_PORTS:
            # Clear text on a TLS port means the capture was decrypted upstream.
            confidence = min(confidence, 0.3)
            evidence["note"] = "clear text on a TLS port: probably a decrypted capture"
        inv = self.inv
        agg = inv._book.record(
            kind="api.cleartext_credentials", severity="high", host=self.view.host,
            method=self.view.method, node=self.node, ts=self.ts,
            tx=(self.tx.conn_id, self.tx.trans_depth), evidence=evidence, subkey=subkey,
            confidence=confidence)
        if agg is not None:
            self.new.append(to_finding(agg, EndpointKey(self.view.host, self.view.method,
                                                        self.template)))

    def secret_in_url(self, name: str, kind: str, fingerprint: str | None = None) -> None:
        """A credential in the request target."""
        severity = "high" if kind == "password" else "medium"
        evidence: dict[str, object] = {"parameter": name[:100], "credential_type": kind}
        if fingerprint:
            evidence["fingerprint"] = fingerprint
        self.record("api.secret_in_url", severity, evidence, subkey=f"{name[:100]}:{kind}")

    def flush(self) -> None:
        """Turn this transaction's sensitive hits into statistics and findings."""
        if not self.hits:
            return
        status = self.tx.response.status if self.tx.response else None
        authenticated = self.authenticated
        pii: dict[str, list[object]] = {"types": [], "fields": [], "examples": []}
        severity = "info"
        seen: set[tuple[str, str, str]] = set()
        for kind, location, field, masked in self.hits:
            key = (kind, location, field)
            if key in seen:
                continue
            seen.add(key)
            self.stats.observe_sensitive(kind, location, field)
            if location in ("request.query", "request.path") and kind in SECRET_TYPES:
                self.secret_in_url(field, kind)
            if location == "request.body" and kind == "password":
                self.cleartext("password in request body", f"body:{field}")
            if location.startswith("response.") and kind in PII_TYPES and status is not None \
                    and 200 <= status < 300:
                if kind not in pii["types"]:
                    pii["types"].append(kind)
                pii["fields"].append({"type": kind, "location": location, "field": field})
                if len(pii["examples"]) < 5:
                    pii["examples"].append({"type": kind, "masked": masked})
                severity = max_severity(severity, _PII_SEVERITY.get(kind, "low"))
        if pii["types"]:
            if not authenticated:
                severity = raise_severity(severity)
            evidence: dict[str, object] = dict(pii)
            evidence["authenticated"] = [authenticated]
            evidence["status"] = [status]
            self.record("api.pii_exposure", severity, evidence)
