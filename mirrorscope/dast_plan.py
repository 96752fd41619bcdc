"""What a DAST session replays: recorded requests grouped by inventory endpoint, and principals.

Recorded requests are stored redacted, so their credentials cannot be replayed: real ones
come from a credentials file of named principals.  A recorded request is attributed to the
principal whose credential fingerprints (keyed HMAC, as the store wrote them) it carries,
which tells which object ids each principal used: the BOLA candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mirrorscope import __version__
from mirrorscope.model import EndpointKey
from mirrorscope.store.redact import MARK_PREFIX, is_sensitive_header, redact_header_value

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_EXAMPLES = 4  # distinct recorded URLs kept per endpoint
USER_AGENT = f"mirrorscope-dast/{__version__}"
_DROPPED_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive",
                              "transfer-encoding", "te", "trailer", "upgrade", "user-agent",
                              "accept-encoding", "if-none-match", "if-modified-since", "expect"})
_PARAM = re.compile(r"^\{([^{}/]+)\}$")


class DastConfigError(Exception):
    """A credentials file or plan that cannot be used (the message says why)."""


# ------------------------------------------------------------------------ principals


@dataclass(frozen=True, slots=True)
class Principal:
    """A test identity from the credentials file: its headers, role and declared objects."""

    name: str
    headers: tuple[tuple[str, str], ...]
    role: str = "user"
    owns: tuple[str, ...] = ()  # concrete paths of objects this principal owns

    @property
    def is_admin(self) -> bool:
        """Declared with role admin."""
        return self.role == "admin"


def load_credentials(path: Path) -> tuple[Principal, ...]:
    """Principals from a YAML file: principals: {name: {headers: {...}, role, owns: [...]}}."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DastConfigError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DastConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("principals"), dict) \
            or not doc["principals"]:
        raise DastConfigError(f"{path}: expected a mapping 'principals:' of named principals, "
                              "each with 'headers:' (e.g. Authorization: Bearer ...)")
    return tuple(_principal(path, str(name), spec) for name, spec in doc["principals"].items())


def _principal(path: Path, name: str, spec: Any) -> Principal:
    where = f"{path}: principal {name!r}"
    if not isinstance(spec, dict):
        raise DastConfigError(f"{where}: expected a mapping with 'headers:'")
    unknown = set(spec) - {"headers", "role", "owns"}
    if unknown:
        raise DastConfigError(f"{where}: unknown key(s) {sorted(unknown)}; "
                              "allowed: headers, role, owns")
    headers = spec.get("headers")
    if not isinstance(headers, dict) or not headers:
        raise DastConfigError(f"{where}: 'headers:' must map header names to values")
    pairs = []
    for header, value in headers.items():
        if not isinstance(header, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+",
                                                           header):
            raise DastConfigError(f"{where}: {header!r} is not a header name")
        if not isinstance(value, str | int) or "\r" in str(value) or "\n" in str(value):
            raise DastConfigError(f"{where}: header {header} needs a one-line string value")
        pairs.append((header, str(value)))
    role = spec.get("role", "user")
    if not isinstance(role, str) or not role:
        raise DastConfigError(f"{where}: 'role:' must be a string (user, admin, ...)")
    owns = spec.get("owns", [])
    if not isinstance(owns, list) or not all(isinstance(p, str) and p.startswith("/")
                                             for p in owns):
        raise DastConfigError(f"{where}: 'owns:' must be a list of paths such as /api/notes/1")
    return Principal(name, tuple(pairs), role, tuple(owns))


def credential_fingerprints(principal: Principal, key: bytes) -> dict[str, str]:
    """header name (lowercase) -> the value as the store redacted it, for credential headers."""
    out = {}
    for name, value in principal.headers:
        redacted = redact_header_value(name, value, key)
        if redacted != value:
            out[name.lower()] = redacted
    return out


def attribute(headers: Iterable[tuple[str, str]], fingerprints: dict[str, dict[str, str]]
              ) -> str | None:
    """The principal whose credential fingerprint a recorded request carries, if exactly one."""
    seen = {(name.lower(), value) for name, value in headers}
    names = [principal for principal, marks in fingerprints.items()
             if any((header, mark) in seen for header, mark in marks.items())]
    return names[0] if len(names) == 1 else None


# -------------------------------------------------------------------------- examples


@dataclass(frozen=True, slots=True)
class Example:
    """One recorded request made replayable: origin-form path, safe headers, body."""

    method: str
    path: str  # origin-form: /a/b?x=1
    headers: tuple[tuple[str, str], ...]  # no credentials, no hop-by-hop headers
    body: bytes
    recorded_status: int | None
    recorded_body: bytes
    principal: str | None  # who made it, when the credentials file says so


@dataclass(slots=True)
class PlanEndpoint:
    """An inventory endpoint, the recorded examples of it and what the inventory says."""

    key: EndpointKey
    doc: dict[str, Any]
    examples: list[Example] = field(default_factory=list)

    @property
    def auth_recorded(self) -> bool:
        """The inventory saw credentials on it (any scheme but 'none')."""
        return any(scheme != "none" for scheme in self.doc.get("auth") or [])

    @property
    def path_params(self) -> list[tuple[int, str]]:
        """(segment index, name) of each {param} of the template."""
        segments = self.key.path_template.split("/")
        return [(i, m.group(1)) for i, s in enumerate(segments) if (m := _PARAM.match(s))]

    @property
    def count(self) -> int:
        """Recorded requests of the endpoint (inventory count)."""
        return int(self.doc.get("count") or 0)


def template_regex(template: str) -> re.Pattern[str]:
    """A regex matching the concrete paths of a path template ({x} is one segment)."""
    parts = []
    for segment in template.split("/"):
        parts.append("[^/]+" if _PARAM.match(segment) else re.escape(segment))
    return re.compile("^" + "/".join(parts) + "$")


def origin_form(uri: str) -> str:
    """The path and query of a recorded request target (absolute-form loses its origin)."""
    if uri.startswith("/"):
        return "/" + uri.split("#", 1)[0].lstrip("/")  # "//x" would read as a host
    parts = urlsplit(uri)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def replayable_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Recorded headers minus credentials (fingerprinted anyway), framing and caching ones."""
    kept = [(name, value) for name, value in headers
            if name.lower() not in _DROPPED_HEADERS and not is_sensitive_header(name)
            and MARK_PREFIX not in value]
    return (("User-Agent", USER_AGENT), *kept)


def _literal_segments(template: str) -> int:
    return sum(1 for segment in template.split("/") if not _PARAM.match(segment))


def build_plan(recorded: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]],
               principals: Sequence[Principal], key: bytes) -> list[PlanEndpoint]:
    """Inventory endpoints with up to MAX_EXAMPLES distinct recorded requests each."""
    endpoints = [PlanEndpoint(EndpointKey(d["host"], d["method"], d["path_template"]), d)
                 for d in docs]
    # The most literal template first: /users/me wins over /users/{id}.
    endpoints.sort(key=lambda e: (-_literal_segments(e.key.path_template),
                                  e.key.path_template, e.key.method))
    matchers = [(e, template_regex(e.key.path_template)) for e in endpoints]
    fingerprints = {p.name: credential_fingerprints(p, key) for p in principals}
    seen: set[tuple[EndpointKey, str, str | None]] = set()
    # Successful recordings first, so examples are requests that worked.
    ordered = sorted(recorded, key=lambda r: not (200 <= (r.get("status") or 0) < 300))
    for row in ordered:
        path = origin_form(row["uri"])
        bare = path.split("?", 1)[0]
        for endpoint, matcher in matchers:
            if endpoint.key.host != row["host"] or endpoint.key.method != row["method"] \
                    or not matcher.match(bare):
                continue
            who = attribute(row["request_headers"], fingerprints)
            if (endpoint.key, path, who) in seen or len(endpoint.examples) >= MAX_EXAMPLES:
                break
            seen.add((endpoint.key, path, who))
            endpoint.examples.append(Example(
                row["method"], path, replayable_headers(row["request_headers"]),
                row["request_body"], row.get("status"), row["response_body"], who))
            break
    return sorted((e for e in endpoints if e.examples),
                  key=lambda e: (e.key.host, e.key.path_template, e.key.method))


def declared_objects(endpoint: PlanEndpoint, principals: Sequence[Principal]
                     ) -> list[tuple[str, str]]:
    """(owner, path) of objects the credentials file declares on this endpoint's template."""
    matcher = template_regex(endpoint.key.path_template)
    return [(p.name, path) for p in principals for path in p.owns
            if matcher.match(path.split("?", 1)[0])]
