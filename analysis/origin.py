"""Where a request came from: client address behind proxies, its network, its exposure class.

Pure functions over a connection's peer address and the request's headers.  The client
address is resolved the standard way: the forwarding chain (``X-Forwarded-For``, RFC 7239
``Forwarded``, or ``X-Real-IP``) is walked right to left starting at the TCP peer, and the
walk stops at the first hop that is not a configured trusted proxy: that hop is the
client.  Everything left of it was written by the client (or by proxies nobody vouches
for), so it is reported when it looks forged (an external client claiming an internal
address, junk or markup, conflicting or over-long chains, two headers that disagree).

Addresses are grouped into networks (/24 for IPv4, /48 for IPv6 by default) and classed
as ``internal`` (RFC 1918, ULA, loopback ... or configured), ``partner`` (configured,
named) or ``external``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mirrorscope.model import Headers

__all__ = [
    "DEFAULT_INTERNAL_NETWORKS",
    "EXPOSURE_CLASSES",
    "ChainEntry",
    "ChainIssue",
    "Origin",
    "OriginConfig",
    "OriginError",
    "OriginResolver",
    "parse_address",
    "parse_forwarded",
    "parse_partner",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_INTERNAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                             "100.64.0.0/10", "169.254.0.0/16", "::1/128", "fc00::/7",
                             "fe80::/10")
EXPOSURE_CLASSES = ("internal", "partner", "external")  # narrowest to widest
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
MAX_SHOWN = 64  # characters of a header entry kept as evidence
MAX_ENTRIES = 256  # entries parsed per header: a hostile header cannot make us do more work
_CACHE = 65_536
_MARKUP = re.compile(r"[<>\"'`;(){}]|script|javascript:|\$\{", re.IGNORECASE)
_OBFUSCATED = re.compile(r"^_[A-Za-z0-9._-]+$")  # RFC 7239 obfuscated identifier
_PARTNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class OriginError(ValueError):
    """A bad origin configuration (CIDR, partner name, prefix length, bound)."""


def parse_partner(text: str) -> tuple[str, str]:
    """``NAME=CIDR`` as (name, canonical CIDR); OriginError when malformed."""
    name, sep, cidr = text.partition("=")
    name, cidr = name.strip(), cidr.strip()
    if not sep or not name or not cidr:
        raise OriginError(f"partner network {text!r} is not NAME=CIDR")
    if not _PARTNER_NAME.match(name):
        raise OriginError(f"partner name {name!r}: use letters, digits, '.', '_' or '-'")
    return name, str(_network(cidr))


def _network(cidr: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise OriginError(f"{cidr!r} is not an IP network (CIDR): {exc}") from exc


@dataclass(frozen=True, slots=True)
class OriginConfig:
    """Proxies to trust, networks to class, and the bounds and thresholds of the origin rules."""

    trusted_proxies: tuple[str, ...] = ()  # CIDRs of proxies whose forwarding headers count
    internal_cidrs: tuple[str, ...] = DEFAULT_INTERNAL_NETWORKS
    partner_cidrs: tuple[tuple[str, str], ...] = ()  # (name, CIDR)
    ipv4_prefix: int = 24  # a principal's "network" is the address's /24 ...
    ipv6_prefix: int = 48  # ... or /48 (a site; /64 is one LAN and privacy addresses roam)
    # Which header names the client when several are present (a proxy maintains one).
    header_order: tuple[str, ...] = FORWARDING_HEADERS
    max_chain: int = 10  # more hops than this in one header is reported
    # New-network rule (needs a baseline).
    max_networks_per_principal: int = 32  # beyond: the principal roams, never judged
    max_principals: int = 20_000  # principals the baseline keeps networks of
    max_reported: int = 100_000  # (principal, network) pairs already reported
    # Token-sharing rule (runs with or without a baseline).
    shared_min_networks: int = 5  # distinct networks of one principal within the window
    shared_window_seconds: float = 300.0
    max_tracked_principals: int = 20_000

    def __post_init__(self) -> None:
        for cidr in (*self.trusted_proxies, *self.internal_cidrs):
            _network(cidr)
        for pair in self.partner_cidrs:
            if len(pair) != 2:
                raise OriginError(f"partner network {pair!r} is not (name, CIDR)")
            parse_partner(f"{pair[0]}={pair[1]}")
        if not 8 <= self.ipv4_prefix <= 32 or not 16 <= self.ipv6_prefix <= 128:
            raise OriginError("network prefixes: IPv4 8..32, IPv6 16..128")
        unknown = set(self.header_order) - set(FORWARDING_HEADERS)
        if unknown:
            raise OriginError(f"unknown forwarding header(s): {', '.join(sorted(unknown))}")
        if min(self.max_chain, self.max_networks_per_principal, self.max_principals,
               self.max_reported, self.max_tracked_principals) < 1:
            raise OriginError("origin bounds must be >= 1")
        if self.shared_min_networks < 2 or not self.shared_window_seconds > 0:
            raise OriginError("shared_min_networks must be >= 2 and shared_window_seconds > 0")


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One hop of a forwarding header as the request carried it."""

    header: str  # x-forwarded-for | forwarded | x-real-ip
    index: int  # position in that header's chain (0 = leftmost, the claimed client)
    raw: str  # the entry, cut to MAX_SHOWN characters (not yet made printable)
    ip: IpAddress | None
    status: str  # ip | unknown | obfuscated | malformed

    def shown(self) -> str:
        """The entry as evidence: cut and printable (control characters escaped)."""
        text = self.raw if self.raw.isprintable() else \
            self.raw.encode("unicode_escape").decode("ascii")
        return text[:MAX_SHOWN] + ("…" if len(text) > MAX_SHOWN else "")


@dataclass(frozen=True, slots=True)
class ChainIssue:
    """Something forged-looking about the forwarding headers, with the entry it is about."""

    code: str  # spoofed_internal | malformed_entry | conflicting_headers | chain_too_long
    #            | headers_disagree
    header: str
    index: int | None  # the entry it is about (None: the header as a whole)
    value: str  # printable, cut; the caller scrubs secrets
    reason: str
    severity: str


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a request: the TCP peer, the resolved client and what the chain showed."""

    peer: str
    client: str  # the resolved client address (the peer when no trusted proxy vouches)
    header: str | None = None  # the header the client was taken from
    trusted_peer: bool = False
    chains: dict[str, tuple[ChainEntry, ...]] = field(default_factory=dict)
    issues: tuple[ChainIssue, ...] = ()


# Inventory and detection resolve each request in turn, with resolvers built from the same
# OriginConfig: the last answer is kept, keyed by the identity of the config and of the
# header tuple (held here, so the identity cannot be reused).  Origin is immutable.
_last_resolved: tuple[OriginConfig, str, Headers, Origin] | None = None

# Every request resolves its peer (and the networks of its clients) at least twice: the
# parsed addresses of recent texts are kept (addresses are immutable), dropped whole when full.
_ADDRESS_CACHE_ENTRIES = 16_384
_address_cache: dict[str, IpAddress | None] = {}


def parse_address(text: str) -> IpAddress | None:
    """An address from a header entry: bare, quoted, ``v4:port``, ``[v6]`` or ``[v6]:port``."""
    try:
        return _address_cache[text]
    except KeyError:
        pass
    found = _parse_address(text)
    if len(text) <= 100:
        if len(_address_cache) >= _ADDRESS_CACHE_ENTRIES:
            _address_cache.clear()
        _address_cache[text] = found
    return found


def _parse_address(text: str) -> IpAddress | None:
    value = text.strip().strip('"').strip()
    if not value or len(value) > 100:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (end + 1 < len(value) and not value[end + 1:].startswith(":")):
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # IPv4 with a port (a bare IPv6 has at least two colons)
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _entry(header: str, index: int, raw: str) -> ChainEntry:
    value = raw.strip().strip('"').strip()
    ip = parse_address(value)
    if ip is not None:
        status = "ip"
    elif value.lower() == "unknown":
        status = "unknown"  # RFC 7239 (and Squid's XFF): the hop did not disclose it
    elif header == "forwarded" and _OBFUSCATED.match(value):
        status = "obfuscated"
    else:
        status = "malformed"
    return ChainEntry(header, index, raw.strip()[:MAX_SHOWN + 1], ip, status)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            parts.append("".join(current))
            current = []
            if len(parts) >= MAX_ENTRIES:
                return parts
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_forwarded(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 Forwarded header, left to right ("" when absent)."""
    out: list[str] = []
    for element in _split_outside_quotes(value, ","):
        found = ""
        for pair in _split_outside_quotes(element, ";"):
            name, sep, param = pair.partition("=")
            if sep and name.strip().lower() == "for":
                found = param.strip()
                break
        out.append(found or element.strip())  # no for=: keep the element (it is junk)
    return out[:MAX_ENTRIES]


def _chain(header: str, values: list[str]) -> tuple[ChainEntry, ...]:
    """Every hop of one header; repeated fields are one comma-joined list (RFC 9110)."""
    joined = ", ".join(values)
    if header == "forwarded":
        items = parse_forwarded(joined)
    elif header == "x-real-ip":
        items = [v for v in values][:MAX_ENTRIES]
    else:
        items = joined.split(",", MAX_ENTRIES)[:MAX_ENTRIES]
    return tuple(_entry(header, i, item) for i, item in enumerate(items))


class OriginResolver:
    """Resolves, classes and groups client addresses under one configuration (cached)."""

    def __init__(self, config: OriginConfig | None = None) -> None:
        self.config = config or OriginConfig()
        cfg = self.config
        self._trusted = [_network(c) for c in cfg.trusted_proxies]
        self._internal = [_network(c) for c in cfg.internal_cidrs]
        self._partners = [(name, _network(c)) for name, c in cfg.partner_cidrs]
        self._class_cache: dict[str, tuple[str, str | None]] = {}
        self._trust_cache: dict[IpAddress, bool] = {}
        self._network_cache: dict[tuple[str, int | None, int | None], str | None] = {}

    # ----------------------------------------------------------------- classes

    def is_trusted(self, ip: IpAddress | None) -> bool:
        """True for an address inside a configured trusted proxy network."""
        if ip is None or not self._trusted:
            return False
        found = self._trust_cache.get(ip)
        if found is None:
            found = _inside(ip, self._trusted)
            if len(self._trust_cache) < _CACHE:
                self._trust_cache[ip] = found
        return found

    def exposure(self, address: str) -> tuple[str, str | None]:
        """(internal | partner | external, partner name or None) of an address."""
        found = self._class_cache.get(address)
        if found is not None:
            return found
        ip = parse_address(address)
        found = ("external", None)
        if ip is not None:
            partner = next((name for name, net in self._partners
                            if ip.version == net.version and ip in net), None)
            if partner is not None:  # a partner range inside private space is still the partner
                found = ("partner", partner)
            elif _inside(ip, self._internal):
                found = ("internal", None)
        if len(self._class_cache) < _CACHE:
            self._class_cache[address] = found
        return found

    def network_of(self, address: str, ipv4_prefix: int | None = None,
                   ipv6_prefix: int | None = None) -> str | None:
        """The network an address belongs to ("203.0.113.0/24"); None when not an address."""
        cache_key = (address, ipv4_prefix, ipv6_prefix)
        found = self._network_cache.get(cache_key, ...)
        if found is not ...:
            return found  # type: ignore[return-value]
        ip = parse_address(address)
        if ip is None:
            found = None
        else:
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            prefix = (ipv4_prefix or self.config.ipv4_prefix) if ip.version == 4 else \
                (ipv6_prefix or self.config.ipv6_prefix)
            found = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        if len(self._network_cache) >= _CACHE:
            self._network_cache.clear()
        self._network_cache[cache_key] = found
        return found

    # --------------------------------------------------------------- resolving

    def resolve(self, peer: str, headers: Headers) -> Origin:
        """The client behind the peer, walking the chain right to left over trusted hops."""
        global _last_resolved
        last = _last_resolved
        if last is not None and last[2] is headers and last[0] is self.config and \
                last[1] == peer:
            return last[3]
        origin = self._resolve(peer, headers)
        _last_resolved = (self.config, peer, headers, origin)
        return origin

    def _resolve(self, peer: str, headers: Headers) -> Origin:
        values: dict[str, list[str]] = {}
        for name, value in headers:
            lowered = name.lower()
            if lowered in FORWARDING_HEADERS:
                values.setdefault(lowered, []).append(value)
        peer_ip = parse_address(peer)
        trusted_peer = self.is_trusted(peer_ip)
        if not values:
            return Origin(peer, peer, trusted_peer=trusted_peer)
        chains = {name: _chain(name, vals) for name, vals in values.items()}
        client, used, positions = peer, None, {}
        for name in self.config.header_order:
            if name in chains:
                positions[name] = self._walk(chains[name], trusted_peer)
        for name in self.config.header_order:
            if name in positions:
                index = positions[name]
                if index is not None and trusted_peer:
                    entry = chains[name][index]
                    if entry.ip is not None:
                        client, used = str(entry.ip), name
                break
        issues = self._issues(peer, client, trusted_peer, values, chains, positions)
        return Origin(peer, client, used, trusted_peer, chains, tuple(issues))

    def _walk(self, chain: tuple[ChainEntry, ...], trusted_peer: bool) -> int | None:
        """Index of the client in a chain: the first untrusted hop from the right.

        None when the peer itself is untrusted (nothing in the chain is vouched for).  A
        hop that is not an address (unknown, obfuscated, junk) stops the walk at the last
        trusted hop to its right, which is then the best known client.
        """
        if not trusted_peer:
            return None
        index = len(chain) - 1
        while index >= 0:
            entry = chain[index]
            if entry.ip is None:
                return index + 1 if index + 1 < len(chain) else None
            if not self.is_trusted(entry.ip):
                return index
            index -= 1
        return 0  # every hop is a trusted proxy: the leftmost is as far as we can see

    def _issues(self, peer: str, client: str, trusted_peer: bool,
                values: dict[str, list[str]], chains: dict[str, tuple[ChainEntry, ...]],
                positions: dict[str, int | None]) -> list[ChainIssue]:
        cfg = self.config
        issues: list[ChainIssue] = []
        client_class, _ = self.exposure(client)
        for name, chain in chains.items():
            # Entries left of the resolved hop were written by the client (or by proxies
            # nobody vouches for): those are the ones a forger controls.
            stop = positions.get(name)
            unverified = chain if stop is None else chain[:stop]
            for entry in unverified:
                if entry.status == "malformed":
                    markup = _MARKUP.search(entry.raw) is not None
                    control = not entry.raw.isprintable()
                    reason = ("markup or script characters (log / dashboard injection)"
                              if markup else "control characters" if control
                              else "not an IP address")
                    issues.append(ChainIssue("malformed_entry", name, entry.index,
                                             entry.shown(), reason,
                                             "medium" if markup or control else "low"))
                elif entry.ip is not None and client_class == "external" and (
                        entry.ip.is_loopback or self.exposure(str(entry.ip))[0] == "internal"):
                    what = "loopback" if entry.ip.is_loopback else "internal"
                    issues.append(ChainIssue(
                        "spoofed_internal", name, entry.index, entry.shown(),
                        f"external client {client} claims the {what} address {entry.ip} "
                        f"(IP allow-list bypass attempt)", "high"))
            if len(chain) > cfg.max_chain:
                issues.append(ChainIssue("chain_too_long", name, None, str(len(chain)),
                                         f"{len(chain)} hops (more than {cfg.max_chain})",
                                         "low"))
        if len(set(values.get("x-forwarded-for", ()))) > 1 and not trusted_peer:
            issues.append(ChainIssue(
                "conflicting_headers", "x-forwarded-for", None,
                str(len(values["x-forwarded-for"])),
                f"{len(values['x-forwarded-for'])} different X-Forwarded-For fields from an "
                f"untrusted peer: frameworks that read the first and the last disagree",
                "medium"))
        if len(set(values.get("x-real-ip", ()))) > 1:
            issues.append(ChainIssue("conflicting_headers", "x-real-ip", None,
                                     str(len(values["x-real-ip"])),
                                     "several different X-Real-IP fields", "medium"))
        xff, fwd = chains.get("x-forwarded-for"), chains.get("forwarded")
        if xff is not None and fwd is not None:
            left = [e.ip for e in xff if e.ip is not None]
            right = [e.ip for e in fwd if e.ip is not None]
            if left != right:
                issues.append(ChainIssue(
                    "headers_disagree", "forwarded", None,
                    f"forwarded={_shown_list(right)} x-forwarded-for={_shown_list(left)}",
                    "Forwarded and X-Forwarded-For name different clients: one was "
                    "supplied by the client", "medium"))
        return issues


def _shown_list(ips: list[IpAddress]) -> str:
    text = ",".join(str(ip) for ip in ips[:4]) + (",…" if len(ips) > 4 else "")
    return text[:MAX_SHOWN]


def _inside(ip: IpAddress, networks: list[IpNetwork]) -> bool:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)

