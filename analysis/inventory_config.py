"""Configuration of the inventory: bounds, networks, non-production naming, an optional spec."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mirrorscope.analysis.inventory_errors import InventoryError
from mirrorscope.analysis.inventory_stats import StatsLimits
from mirrorscope.analysis.origin import DEFAULT_INTERNAL_NETWORKS, OriginConfig
from mirrorscope.analysis.schema import SchemaLimits
from mirrorscope.analysis.templating import TemplatingConfig

__all__ = ["DEFAULT_INTERNAL_NETWORKS", "InventoryConfig", "InventoryError",
           "NetworkClassifier"]

# Host-name labels that mark a development or staging deployment.
DEFAULT_NONPROD_PATTERN = (
    r"(^|[.\-])(dev|devel|develop|development|stg|stag|stage|staging|test|testing|tst|qa|uat|"
    r"sandbox|sbx|preprod|pre-prod|preview|demo|int|integration|perf|canary|local|localhost)"
    r"\d*([.\-]|$)|\.(local|localhost|test|example|invalid|internal)$|^localhost$")


@dataclass(slots=True)
class InventoryConfig:
    """Everything the inventory can be told; every bound has a default."""

    templating: TemplatingConfig = field(default_factory=TemplatingConfig)
    schema_limits: SchemaLimits = field(default_factory=SchemaLimits)
    stats_limits: StatsLimits = field(default_factory=StatsLimits)
    internal_networks: tuple[str, ...] = DEFAULT_INTERNAL_NETWORKS
    nonprod_pattern: str = DEFAULT_NONPROD_PATTERN
    nonprod_hosts: tuple[str, ...] = ()  # always non-production (exact names, lowercase)
    prod_hosts: tuple[str, ...] = ()  # never non-production, whatever their name says
    spec: dict | None = None  # a user's OpenAPI document: enables shadow/zombie findings
    # Trusted proxies and internal/partner networks: each endpoint's exposure class counts
    # (which kinds of clients called it) come from the client resolved behind proxies.
    origin: OriginConfig = field(default_factory=OriginConfig)
    max_hosts: int = 1024  # beyond, new hosts share the "~other-hosts" bucket
    max_endpoints: int = 20_000  # beyond, new endpoints are counted but not tracked
    schema_full_samples: int = 200  # bodies inferred per endpoint before sampling starts
    schema_sample_every: int = 16  # then one body in this many
    max_findings: int = 10_000
    finding_transactions: int = 10  # (conn_id, trans_depth) samples kept per finding

    def __post_init__(self) -> None:
        try:
            re.compile(self.nonprod_pattern)
            for cidr in self.internal_networks:
                ipaddress.ip_network(cidr, strict=False)
        except (re.error, ValueError) as exc:
            raise InventoryError(f"bad inventory configuration: {exc}") from exc
        if self.max_endpoints < 1 or self.max_hosts < 1 or self.schema_sample_every < 1:
            raise InventoryError("inventory bounds must be positive")


class NetworkClassifier:
    """Internal vs external client addresses, with a bounded cache."""

    __slots__ = ("_cache", "_networks")

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        self._networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def is_internal(self, ip: str) -> bool:
        """True when the address falls in a configured internal network."""
        found = self._cache.get(ip)
        if found is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                found = False
            else:
                found = any(addr.version == net.version and addr in net
                            for net in self._networks)
            if len(self._cache) < 65536:
                self._cache[ip] = found
        return found
