"""Endpoint ownership: a YAML file of rules (host, path prefix, methods) -> team, contact, tags.

Format::

    owners:
      - team: payments
        contact: payments-oncall@example.com
        tags: [pci]
        match:
          host: "*.example.com"        # exact, or a glob (fnmatch: * also spans dots)
          path_prefix: /v1/payments    # segment-aware: /v1/pay does not cover /v1/payments
          methods: [GET, POST]

Every key of ``match`` is optional; a rule without ``match`` covers every endpoint (a
default owner).  The most specific matching rule wins: the longest path prefix (in
segments), then an exact host over a glob over no host, then a method list over any method;
remaining ties go to the rule written first.  Hosts compare case-insensitively and without
their port, unless the rule names a port (``api.example.com:8443``), when the port must match.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

RULE_KEYS = frozenset({"team", "contact", "tags", "match"})
MATCH_KEYS = frozenset({"host", "path_prefix", "methods"})
# An HTTP method is an RFC 9110 token; upper case is the convention the inventory stores.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Owner:
    """Who answers for an endpoint."""

    team: str
    contact: str = ""
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: {"team", "contact", "tags"}."""
        return {"team": self.team, "contact": self.contact, "tags": list(self.tags)}


class OwnershipError(ValueError):
    """An ownership file that cannot be read or does not follow the format."""


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    owner: Owner
    host: str | None  # lower case, without port
    port: str | None  # only when the rule names one
    host_is_glob: bool
    path_prefix: str | None  # normalised: leading "/", no trailing "/" (except the root)
    methods: frozenset[str] | None

    def specificity(self) -> tuple[int, int, int]:
        """Higher sorts first: prefix segments, exact/glob/absent host, method list."""
        segments = -1 if self.path_prefix is None else len(_segments(self.path_prefix))
        host_rank = 0 if self.host is None else (1 if self.host_is_glob else 2)
        return (segments, host_rank, 0 if self.methods is None else 1)

    def matches(self, host: str, port: str | None, path: str, method: str) -> bool:
        """Whether this rule covers the (already normalised) endpoint."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is not None:
            if self.port is not None and port != self.port:
                return False
            if self.host_is_glob:
                if not fnmatch.fnmatchcase(host, self.host):
                    return False
            elif host != self.host:
                return False
        return self.path_prefix is None or _under(path, self.path_prefix)


class OwnershipRules:
    """Parsed ownership rules; owner_for() answers which team owns an endpoint."""

    def __init__(self, rules: list[_Rule], source: str) -> None:
        """Keep rules ordered most specific first (stable: file order breaks ties)."""
        self.source = source
        self._rules = sorted(rules, key=lambda rule: tuple(-n for n in rule.specificity()))

    @classmethod
    def load(cls, path: str | Path) -> OwnershipRules:
        """Read and validate an ownership YAML file."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OwnershipError(f"{source}: cannot read ownership file: {exc}") from exc
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise OwnershipError(f"{source}: not valid YAML{at}: {problem}") from exc
        return cls.from_document(doc, source)

    @classmethod
    def from_document(cls, doc: object, source: str = "<memory>") -> OwnershipRules:
        """Validate an already parsed document ({"owners": [...]})."""
        if not isinstance(doc, Mapping):
            raise OwnershipError(f"{source}: expected a mapping with an 'owners' list at the top")
        unknown = sorted(str(key) for key in doc if key != "owners")
        if unknown:
            raise OwnershipError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; "
                                 "only 'owners' is allowed")
        if "owners" not in doc:
            raise OwnershipError(f"{source}: missing the 'owners' list")
        entries = doc["owners"]
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise OwnershipError(f"{source}: 'owners' must be a list of rules, "
                                 f"not {_type_name(entries)}")
        rules = [_parse_rule(entry, index, source) for index, entry in enumerate(entries)]
        return cls(rules, source)

    def owner_for(self, host: str, path: str, method: str) -> Owner | None:
        """The owner of the most specific rule covering this endpoint, or None."""
        bare_host, port = split_host_port(host or "")
        clean_path = _clean_path(path or "")
        verb = (method or "").upper()
        for rule in self._rules:
            if rule.matches(bare_host, port, clean_path, verb):
                return rule.owner
        return None

    def owner_for_finding(self, finding: Mapping[str, object]) -> Owner | None:
        """The owner of a public finding dict's endpoint (None without an endpoint)."""
        endpoint = finding.get("endpoint")
        if not isinstance(endpoint, Mapping):
            return None
        return self.owner_for(str(endpoint.get("host") or ""),
                              str(endpoint.get("path_template") or ""),
                              str(endpoint.get("method") or ""))

    def __len__(self) -> int:
        """Number of rules."""
        return len(self._rules)

    def __repr__(self) -> str:
        return f"OwnershipRules({len(self)} rule(s) from {self.source})"


# --------------------------------------------------------------------- parsing


def _parse_rule(entry: object, index: int, source: str) -> _Rule:
    where = f"{source}: owners[{index}]"
    if not isinstance(entry, Mapping):
        raise OwnershipError(f"{where}: a rule must be a mapping, not {_type_name(entry)}")
    _no_unknown_keys(entry, RULE_KEYS, where)
    team = entry.get("team")
    if not isinstance(team, str) or not team.strip():
        raise OwnershipError(f"{where}.team: required, a non-empty string")
    contact = entry.get("contact", "")
    if contact is None:
        contact = ""
    if not isinstance(contact, str):
        raise OwnershipError(f"{where}.contact: must be a string, not {_type_name(contact)}")
    tags = entry.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise OwnershipError(f"{where}.tags: must be a list of non-empty strings")
    match = entry.get("match", {})
    if match is None:
        match = {}
    if not isinstance(match, Mapping):
        raise OwnershipError(f"{where}.match: must be a mapping, not {_type_name(match)}")
    _no_unknown_keys(match, MATCH_KEYS, f"{where}.match")
    host, port, is_glob = _parse_host(match.get("host"), f"{where}.match.host")
    prefix = _parse_prefix(match.get("path_prefix"), f"{where}.match.path_prefix")
    methods = _parse_methods(match.get("methods"), f"{where}.match.methods")
    owner = Owner(team.strip(), contact.strip(), tuple(t.strip() for t in tags))
    return _Rule(index, owner, host, port, is_glob, prefix, methods)


def _parse_host(value: object, where: str) -> tuple[str | None, str | None, bool]:
    if value is None:
        return None, None, False
    if not isinstance(value, str) or not value.strip():
        raise OwnershipError(f"{where}: must be a non-empty string (a host or a glob)")
    text = value.strip().lower()
    if any(ch.isspace() for ch in text) or "/" in text:
        raise OwnershipError(f"{where}: {value!r} is not a host name or glob")
    host, port = split_host_port(text)
    if port is not None and not port.isdigit():
        raise OwnershipError(f"{where}: port in {value!r} must be a number")
    if not host:
        raise OwnershipError(f"{where}: {value!r} names no host")
    return host, port, any(ch in _GLOB_CHARS for ch in host)


def _parse_prefix(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise OwnershipError(f"{where}: must be a string starting with '/'")
    if "?" in value or "#" in value or any(ch.isspace() for ch in value):
        raise OwnershipError(f"{where}: {value!r} must be a bare path (no query, no spaces)")
    return _clean_path(value)


def _parse_methods(value: object, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]  # a single method written without a list
    if not isinstance(value, list) or not value:
        raise OwnershipError(f"{where}: must be a non-empty list of HTTP methods")
    methods = set()
    for item in value:
        if not isinstance(item, str) or not item or not set(item.upper()) <= _TOKEN_CHARS:
            raise OwnershipError(f"{where}: {item!r} is not an HTTP method")
        methods.add(item.upper())
    return frozenset(methods)


def _no_unknown_keys(mapping: Mapping, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise OwnershipError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(allowed))}")


def _type_name(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


# -------------------------------------------------------------------- matching


def split_host_port(host: str) -> tuple[str, str | None]:
    """Lower-cased host without its port, and the port if one was given ([v6]:port too)."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("["):
        end = text.find("]")
        if end != -1:
            rest = text[end + 1 :]
            port = rest[1:] if rest.startswith(":") and rest[1:] else None
            return text[1:end], port
        return text, None
    if text.count(":") == 1:  # more than one colon: a bare IPv6 address, no port
        name, _, port = text.partition(":")
        return name.rstrip("."), port or None
    return text, None


def _clean_path(path: str) -> str:
    """Path without query or fragment and without trailing slashes ("/" stays "/")."""
    for mark in ("?", "#"):
        path = path.split(mark, 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    stripped = path.rstrip("/")
    return stripped or "/"


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _under(path: str, prefix: str) -> bool:
    """Segment-aware prefix test: /v1/pay covers /v1/pay and /v1/pay/x, not /v1/payments."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")
