"""Origin rules: forged forwarding chains, a principal on a new network, a shared token.

* ``attack.forged_forwarding`` (per request): the forwarding headers carry what only a
  forger writes (see origin.ChainIssue).  Filed under API8:2023: the weakness exploited is
  a proxy or application that trusts client-supplied forwarding headers (a configuration
  fault), and junk or markup injected into them follows the catalogue's convention of
  filing injection under API8.
* ``auth.new_network`` (needs a baseline): a principal the baseline knows, used from a
  network the baseline never saw it use.  API2:2023: a stolen credential replayed from
  elsewhere is broken authentication in action.  Reported once per (principal, network).
* ``auth.token_sharing`` (baseline or not): one principal used from many networks within a
  short window: one token in many hands (shared, leaked or stolen).  API2:2023.

Without a baseline the new-network rule stays silent: a first sighting is not news.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from mirrorscope.analysis.detection_aggregate import Occurrence
from mirrorscope.analysis.detection_catalog import SEVERITIES
from mirrorscope.analysis.detection_redact import scrub
from mirrorscope.analysis.origin import EXPOSURE_CLASSES, Origin, OriginConfig, OriginResolver
from mirrorscope.model import EndpointKey

MAX_ISSUES_SHOWN = 5
MAX_NETWORKS_SHOWN = 10


class OriginModelError(ValueError):
    """A stored origin baseline that does not have the expected shape."""


@dataclass(slots=True)
class OriginBaseline:
    """Per principal, the networks the baseline saw it use (bounded; JSON-serialisable)."""

    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    networks: dict[str, list[str]] = field(default_factory=dict)  # principal -> networks
    roaming: list[str] = field(default_factory=list)  # too many networks to judge
    principals_dropped: int = 0  # principals beyond the bound (never judged)

    def knows(self, principal: str) -> bool:
        """True when the baseline saw this principal and can judge its networks."""
        return principal in self.networks

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"ipv4_prefix": self.ipv4_prefix, "ipv6_prefix": self.ipv6_prefix,
                "networks": self.networks, "roaming": self.roaming,
                "principals_dropped": self.principals_dropped}

    @classmethod
    def from_dict(cls, data: object) -> OriginBaseline:
        """Inverse of to_dict; OriginModelError on a wrong shape."""
        if not isinstance(data, dict):
            raise OriginModelError("origin baseline is not an object")
        networks = data.get("networks") or {}
        roaming = data.get("roaming") or []
        if not isinstance(networks, dict) or not isinstance(roaming, list) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
                for k, v in networks.items()):
            raise OriginModelError("origin baseline networks must map principals to lists")
        try:
            return cls(int(data.get("ipv4_prefix", 24)), int(data.get("ipv6_prefix", 48)),
                       {k: list(v) for k, v in networks.items()}, [str(r) for r in roaming],
                       int(data.get("principals_dropped", 0)))
        except (TypeError, ValueError) as exc:
            raise OriginModelError(f"malformed origin baseline: {exc}") from exc


class OriginLearner:
    """Collects (principal, network) pairs while learning; bounded per principal and total."""

    def __init__(self, config: OriginConfig) -> None:
        self.config = config
        self._networks: dict[str, set[str]] = {}
        self._roaming: set[str] = set()
        self.principals_dropped = 0

    def add(self, principal: str | None, network: str | None) -> None:
        """Remember that ``principal`` came from ``network``."""
        if principal is None or network is None or principal in self._roaming:
            return
        nets = self._networks.get(principal)
        if nets is None:
            if len(self._networks) + len(self._roaming) >= self.config.max_principals:
                self.principals_dropped += 1
                return
            nets = self._networks[principal] = set()
        if network in nets:
            return
        if len(nets) >= self.config.max_networks_per_principal:
            # Too many networks to say what is normal (a mobile fleet, a shared key): keep
            # only the mark, so the baseline stays small and the principal is never judged.
            del self._networks[principal]
            self._roaming.add(principal)
            return
        nets.add(network)

    def baseline(self) -> OriginBaseline:
        """What was learned, in a deterministic order."""
        return OriginBaseline(
            self.config.ipv4_prefix, self.config.ipv6_prefix,
            {p: sorted(nets) for p, nets in sorted(self._networks.items())},
            sorted(self._roaming), self.principals_dropped)


@dataclass(slots=True)
class _Sharing:
    """One principal's recent networks (network -> last seen), for the token-sharing rule."""

    recent: OrderedDict[str, float] = field(default_factory=OrderedDict)
    quiet_until: float = float("-inf")  # reported: silent until the window has passed


class OriginRules:
    """Scores the origin of scored transactions (stateful, bounded)."""

    def __init__(self, resolver: OriginResolver, key: bytes) -> None:
        self.resolver = resolver
        self.config = resolver.config
        self._key = key
        self._reported: set[tuple[str, str]] = set()
        self._sharing: OrderedDict[str, _Sharing] = OrderedDict()
        self.reported_dropped = 0

    def check(self, origin: Origin, principal: str | None, endpoint: EndpointKey | None,
              ts: float, baseline: OriginBaseline | None, ref: tuple[tuple[str, int], ...],
              penalty: float) -> list[Occurrence]:
        """Every origin occurrence of one request."""
        out: list[Occurrence] = []
        forged = self.forged(origin, principal, endpoint, ts, ref, penalty)
        if forged is not None:
            out.append(forged)
        if principal is None:
            return out
        network = self.resolver.network_of(
            origin.client, baseline.ipv4_prefix if baseline else None,
            baseline.ipv6_prefix if baseline else None)
        if network is None:
            return out
        if baseline is not None:
            new = self._new_network(origin, principal, network, endpoint, ts, baseline, ref,
                                    penalty)
            if new is not None:
                out.append(new)
        roaming = baseline is not None and principal in baseline.roaming
        if not roaming:
            shared = self._shared(origin, principal, network, endpoint, ts, ref, penalty)
            if shared is not None:
                out.append(shared)
        return out

    # ------------------------------------------------------------------ rules

    def forged(self, origin: Origin, principal: str | None, endpoint: EndpointKey | None,
               ts: float, ref: tuple[tuple[str, int], ...], penalty: float) -> Occurrence | None:
        """attack.forged_forwarding when the forwarding headers look forged."""
        if not origin.issues:
            return None
        issues = sorted(origin.issues, key=lambda i: -SEVERITIES.index(i.severity))
        severity = issues[0].severity
        explanation: list[dict[str, object]] = []
        for issue in issues[:MAX_ISSUES_SHOWN]:
            explanation.append({
                "feature": f"forwarding.{issue.code}", "header": issue.header,
                "entry": issue.index, "value": scrub(issue.value, self._key),
                "baseline": issue.reason})
        client_class, _ = self.resolver.exposure(origin.client)
        evidence: dict[str, object] = {
            "issues": sorted({i.code for i in issues}),
            "peer": origin.peer, "peer_trusted": origin.trusted_peer,
            "client": origin.client, "client_exposure": client_class,
            "headers": sorted(origin.chains),
        }
        return Occurrence(
            "attack.forged_forwarding", endpoint, origin.client, ts, principal,
            severity=severity, confidence=0.9 * (1 - penalty), evidence=evidence,
            explanation=explanation, where=issues[0].header, refs=ref,
            score=float(len(issues)))

    def _new_network(self, origin: Origin, principal: str, network: str,
                     endpoint: EndpointKey | None, ts: float, baseline: OriginBaseline,
                     ref: tuple[tuple[str, int], ...], penalty: float) -> Occurrence | None:
        known = baseline.networks.get(principal)
        if known is None or network in known:
            return None
        mark = (principal, network)
        if mark in self._reported:
            return None
        if len(self._reported) >= self.config.max_reported:
            self.reported_dropped += 1
            return None
        self._reported.add(mark)
        resolver = self.resolver
        client_class, partner = resolver.exposure(origin.client)
        known_classes = sorted({resolver.exposure(n.split("/", 1)[0])[0] for n in known},
                               key=EXPOSURE_CLASSES.index)
        # A principal that only ever came from inside, now from the internet: more telling.
        escalated = client_class == "external" and "external" not in known_classes
        explanation: list[dict[str, object]] = [
            {"feature": "principal.network", "value": network,
             "baseline": f"{len(known)} network(s) seen for this principal, not this one"},
            {"feature": "principal.exposure", "value": client_class,
             "baseline": ",".join(known_classes)},
        ]
        evidence: dict[str, object] = {
            "new_network": network, "baseline_networks": len(known),
            "baseline_sample": known[:MAX_NETWORKS_SHOWN], "client": origin.client,
            "client_exposure": client_class, "baseline_exposure": known_classes}
        if partner:
            evidence["partner"] = partner
        if origin.header:
            evidence["resolved_from"] = origin.header
        return Occurrence(
            "auth.new_network", endpoint, origin.client, ts, principal,
            severity="medium" if escalated else None,
            confidence=0.7 * (1 - penalty), evidence=evidence, explanation=explanation,
            refs=ref, score=1.0)

    def _shared(self, origin: Origin, principal: str, network: str,
                endpoint: EndpointKey | None, ts: float, ref: tuple[tuple[str, int], ...],
                penalty: float) -> Occurrence | None:
        cfg = self.config
        state = self._sharing.get(principal)
        if state is None:
            state = self._sharing[principal] = _Sharing()
            if len(self._sharing) > cfg.max_tracked_principals:
                self._sharing.popitem(last=False)
        else:
            self._sharing.move_to_end(principal)
        recent = state.recent
        recent[network] = ts
        recent.move_to_end(network)
        horizon = ts - cfg.shared_window_seconds
        while recent and next(iter(recent.values())) < horizon:
            recent.popitem(last=False)
        while len(recent) > 4 * cfg.shared_min_networks:  # enough to count, bounded
            recent.popitem(last=False)
        if len(recent) < cfg.shared_min_networks or ts < state.quiet_until:
            return None
        state.quiet_until = ts + cfg.shared_window_seconds
        networks = list(recent)
        classes = sorted({self.resolver.exposure(n.split("/", 1)[0])[0] for n in networks},
                         key=EXPOSURE_CLASSES.index)
        explanation: list[dict[str, object]] = [
            {"feature": "principal.distinct_networks", "value": len(networks),
             "baseline": f"< {cfg.shared_min_networks} within {cfg.shared_window_seconds:g} s",
             "threshold": cfg.shared_min_networks},
            {"feature": "principal.exposure", "value": ",".join(classes),
             "baseline": "one user, one place at a time"},
        ]
        return Occurrence(
            "auth.token_sharing", None, origin.client, ts, principal,
            confidence=0.8 * (1 - penalty),
            evidence={"distinct_networks": len(networks),
                      "networks": networks[-MAX_NETWORKS_SHOWN:],
                      "window_seconds": cfg.shared_window_seconds, "exposure": classes},
            explanation=explanation, refs=ref, score=float(len(networks)),
            count=len(networks), window_level=True)
