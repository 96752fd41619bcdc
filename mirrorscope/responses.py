"""Automated responses: YAML rules "finding kind K, severity >= S, recurring N times within W
-> actions", evaluated over the stored findings.

mirrorscope stays out of band: an action never touches traffic, it produces what inline
components consume (a webhook, blocklist files for nginx / nftables / WAFs, ticket payloads).

Three layers, the first two pure:

* the rules model and its strict loader (``load_rules``/``parse_rules``: unknown keys, bad
  severities or durations and missing fields are a RulesError naming the rule and the field);
* evaluation (``evaluate``: which targets recur enough) and planning (``plan``: what fires,
  what the ledger already holds, what the rate limit holds back, what never_block protects);
* ``run_responses``: reads findings and the ledger, fires, records, and regenerates the
  blocklist files from the ledger (the only function here that does I/O).

How recurrence is counted.  The store keeps one finding row per (kind, endpoint, client,
principal, aggregation window) with a count and the first/last time of its occurrences;
an attack recurring over time is therefore several rows, or one row with count > 1.  For
one target, every matching row is an interval [first_seen, last_seen] carrying ``count``
occurrences, assumed evenly spread over it (the store keeps no finer timing: the
occurrence table splits counts per capture run, not per request).  The recurrence is the
largest number of occurrences inside any window of length W (packet time), found by sliding
the window over the intervals' breakpoints.  A row whose whole span fits in W counts fully;
a row spread over much more than W counts only the share that fits, so a slow trickle of
single requests over a day does not pass for a burst.  The rows' totals come from
AnalysisStore.findings(), the public contract, so a deleted run's occurrences drop out too.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mirrorscope.store.lifecycle_repo import SUPPRESSING_STATUSES
from mirrorscope.store.response_repo import fire_key

SEVERITIES = ("info", "low", "medium", "high", "critical")
# Triage verdicts under which a finding must never cause an action.
IGNORED_STATUSES = frozenset(SUPPRESSING_STATUSES)  # triaged away: never acted upon
DEFAULT_NEVER_BLOCK = ("127.0.0.0/8", "::1/128")
DEFAULT_MAX_PER_RUN = 20
DEFAULT_MAX_PER_HOUR = 100
DEFAULT_WEBHOOK_TIMEOUT = 5.0
DEFAULT_WEBHOOK_RETRIES = 2
TARGET_TYPES = ("client_ip", "principal")
BLOCKLIST_TYPES = ("nginx_deny", "nftables_set", "json_blocklist")
ACTION_TYPES = ("webhook", *BLOCKLIST_TYPES, "ticket")
HOUR = 3600.0

# Outcomes recorded in the ledger, and the extra statuses a report shows.
FIRED, FAILED, RATE_LIMITED = "fired", "failed", "rate_limited"
DEDUPLICATED, NEVER_BLOCK, INVALID_TARGET, WOULD_FIRE = (
    "deduplicated", "never_block", "invalid_target", "would_fire")

# Rule and action names end up in file names, nginx comments and nft files: keep them tame.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NFT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": HOUR, "d": 86400.0}
_EPSILON = 1e-9


class RulesError(ValueError):
    """The rules file is unusable; the message names the rule and the field."""


# ------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Match:
    """Which findings a rule looks at."""

    kinds: tuple[str, ...]
    min_severity: str = "info"
    owasp: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recurrence:
    """How many occurrences for one target within how long (seconds of packet time)."""

    count: int = 1
    window: float = 300.0
    target: str = "client_ip"


@dataclass(frozen=True)
class Action:
    """One thing a rule does for a target; ``name`` is unique within its rule."""

    type: str
    name: str
    url: str | None = None  # webhook
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT  # webhook
    retries: int = DEFAULT_WEBHOOK_RETRIES  # webhook
    file: str | None = None  # blocklists
    ttl: float | None = None  # blocklists: an entry expires this long after it fired
    table: str = "mirrorscope"  # nftables_set
    family: str = "inet"  # nftables_set
    set4: str = "blocklist"  # nftables_set
    set6: str = "blocklist6"  # nftables_set
    directory: str | None = None  # ticket

    @property
    def is_blocklist(self) -> bool:
        """True for the actions whose output is a regenerated blocklist file."""
        return self.type in BLOCKLIST_TYPES


@dataclass(frozen=True)
class Rule:
    """A named rule: match, recurrence, actions and its rate limits."""

    name: str
    match: Match
    recurrence: Recurrence
    actions: tuple[Action, ...]
    max_per_run: int = DEFAULT_MAX_PER_RUN
    max_per_hour: int = DEFAULT_MAX_PER_HOUR


@dataclass(frozen=True)
class RuleSet:
    """Every rule plus the global settings."""

    rules: tuple[Rule, ...]
    never_block: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(n) for n in DEFAULT_NEVER_BLOCK))
    max_age: float | None = None  # ignore findings last seen longer ago (wall clock)
    source: str = "<rules>"

    def protected(self, target: str) -> bool:
        """True when target is an address inside a never_block range."""
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            return False
        return any(address.version == net.version and address in net
                   for net in self.never_block)


# ---------------------------------------------------------------------------- loading


def parse_duration(value: object, where: str) -> float:
    """Seconds from 30, "30s", "5m", "1h" or "7d"; RulesError naming `where` otherwise."""
    if isinstance(value, bool):
        raise RulesError(f"{where}: {value!r} is not a duration (e.g. 30s, 5m, 1h, 7d)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value)) if isinstance(value, str) else None
        if found is None:
            raise RulesError(f"{where}: {value!r} is not a duration (e.g. 30s, 5m, 1h, 7d)")
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise RulesError(f"{where}: a duration must be positive, not {value!r}")
    return seconds


def load_rules(path: str | Path) -> RuleSet:
    """Read and strictly validate a rules YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read rules: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rules(document, source=str(path))


def parse_rules(document: object, *, source: str = "<rules>") -> RuleSet:
    """Validate a parsed rules document (a mapping with `rules`, or a bare list of rules)."""
    if isinstance(document, list):
        document = {"rules": document}
    if not isinstance(document, dict):
        raise RulesError(f"{source}: want a mapping with a `rules` list")
    _known(document, {"rules", "never_block", "max_age"}, f"{source}")
    raw_rules = _required(document, "rules", f"{source}")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"{source}: `rules` must be a non-empty list")
    rules = tuple(_parse_rule(raw, i, source) for i, raw in enumerate(raw_rules))
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RulesError(f"{source}: duplicate rule name(s): {', '.join(duplicates)}")
    never_block = _never_block(document.get("never_block", list(DEFAULT_NEVER_BLOCK)), source)
    max_age = document.get("max_age")
    return RuleSet(rules=rules, never_block=never_block,
                   max_age=None if max_age is None
                   else parse_duration(max_age, f"{source}: max_age"),
                   source=source)


def _parse_rule(raw: object, index: int, source: str) -> Rule:
    where = f"{source}: rule #{index + 1}"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RulesError(f"{where}: field `name` is required: letters, digits, '_', '.', '-'")
    where = f"{source}: rule {name!r}"
    _known(raw, {"name", "match", "recurrence", "actions", "rate_limit"}, where)
    match = _parse_match(_required(raw, "match", where), f"{where}: match")
    recurrence = _parse_recurrence(raw.get("recurrence", {}), f"{where}: recurrence")
    raw_actions = _required(raw, "actions", where)
    if not isinstance(raw_actions, list) or not raw_actions:
        raise RulesError(f"{where}: field `actions` must be a non-empty list")
    actions = tuple(_parse_action(item, f"{where}: actions[{i}]")
                    for i, item in enumerate(raw_actions))
    action_names = [action.name for action in actions]
    for action_name in action_names:
        if action_names.count(action_name) > 1:
            raise RulesError(f"{where}: two actions named {action_name!r}: give one a `name`")
    if recurrence.target != "client_ip":
        for action in actions:
            if action.type in ("nginx_deny", "nftables_set"):
                raise RulesError(f"{where}: action {action.name!r} blocks addresses: it needs "
                                 "recurrence.target client_ip")
    limits = raw.get("rate_limit", {})
    if not isinstance(limits, dict):
        raise RulesError(f"{where}: field `rate_limit` must be a mapping")
    _known(limits, {"max_per_run", "max_per_hour"}, f"{where}: rate_limit")
    return Rule(
        name=name, match=match, recurrence=recurrence, actions=actions,
        max_per_run=_positive_int(limits.get("max_per_run", DEFAULT_MAX_PER_RUN),
                                  f"{where}: rate_limit.max_per_run"),
        max_per_hour=_positive_int(limits.get("max_per_hour", DEFAULT_MAX_PER_HOUR),
                                   f"{where}: rate_limit.max_per_hour"),
    )


def _parse_match(raw: object, where: str) -> Match:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping")
    _known(raw, {"kind", "min_severity", "owasp", "host", "path"}, where)
    kinds = _strings(_required(raw, "kind", where), f"{where}.kind")
    if not kinds:
        raise RulesError(f"{where}.kind: at least one kind (glob) is needed")
    severity = raw.get("min_severity", "info")
    if severity not in SEVERITIES:
        raise RulesError(f"{where}.min_severity: {severity!r} is not one of "
                         f"{', '.join(SEVERITIES)}")
    return Match(kinds=kinds, min_severity=severity,
                 owasp=_strings(raw.get("owasp", []), f"{where}.owasp"),
                 hosts=_strings(raw.get("host", []), f"{where}.host"),
                 paths=_strings(raw.get("path", []), f"{where}.path"))


def _parse_recurrence(raw: object, where: str) -> Recurrence:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping")
    _known(raw, {"count", "window", "target"}, where)
    target = raw.get("target", "client_ip")
    if target not in TARGET_TYPES:
        raise RulesError(f"{where}.target: {target!r} is not one of {', '.join(TARGET_TYPES)}")
    return Recurrence(count=_positive_int(raw.get("count", 1), f"{where}.count"),
                      window=parse_duration(raw.get("window", "5m"), f"{where}.window"),
                      target=target)


_ACTION_KEYS = {
    "webhook": {"url", "timeout", "retries"},
    "nginx_deny": {"file", "ttl"},
    "nftables_set": {"file", "ttl", "table", "family", "set", "set6"},
    "json_blocklist": {"file", "ttl"},
    "ticket": {"dir"},
}


def _parse_action(raw: object, where: str) -> Action:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping with a `type`")
    kind = raw.get("type")
    if kind not in ACTION_TYPES:
        raise RulesError(f"{where}.type: {kind!r} is not one of {', '.join(ACTION_TYPES)}")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not _NAME.match(name):
        raise RulesError(f"{where}.name: letters, digits, '_', '.', '-' only")
    where = f"{where} ({name})"
    _known(raw, {"type", "name", *_ACTION_KEYS[kind]}, where)
    options: dict[str, Any] = {"type": kind, "name": name}
    if kind == "webhook":
        url = _required(raw, "url", where)
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise RulesError(f"{where}.url: want an http:// or https:// URL, not {url!r}")
        options["url"] = url
        options["timeout"] = parse_duration(raw.get("timeout", DEFAULT_WEBHOOK_TIMEOUT),
                                            f"{where}.timeout")
        retries = raw.get("retries", DEFAULT_WEBHOOK_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise RulesError(f"{where}.retries: an integer from 0 to 10, not {retries!r}")
        options["retries"] = retries
    elif kind == "ticket":
        options["directory"] = _path_text(_required(raw, "dir", where), f"{where}.dir")
    else:
        options["file"] = _path_text(_required(raw, "file", where), f"{where}.file")
        if raw.get("ttl") is not None:
            options["ttl"] = parse_duration(raw["ttl"], f"{where}.ttl")
    if kind == "nftables_set":
        for key, attribute in (("table", "table"), ("set", "set4"), ("set6", "set6")):
            if key in raw:
                value = raw[key]
                if not isinstance(value, str) or not _NFT_NAME.match(value):
                    raise RulesError(f"{where}.{key}: an nft identifier ([A-Za-z][A-Za-z0-9_]*),"
                                     f" not {value!r}")
                options[attribute] = value
        if "set" in raw and "set6" not in raw:
            options["set6"] = f"{raw['set']}6"
        family = raw.get("family", "inet")
        if family not in ("inet", "ip", "ip6", "bridge", "netdev"):
            raise RulesError(f"{where}.family: {family!r} is not an nftables family")
        options["family"] = family
    return Action(**options)


def _never_block(raw: object, source: str) -> tuple[Any, ...]:
    where = f"{source}: never_block"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RulesError(f"{where}: must be a list of CIDRs (e.g. 10.0.0.0/8)")
    networks = []
    for item in raw:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError as exc:
            raise RulesError(f"{where}: {item!r} is not an address or CIDR: {exc}") from exc
    return tuple(networks)


def _known(raw: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(allowed))})")


def _required(raw: Mapping[str, Any], key: str, where: str) -> Any:
    if raw.get(key) is None:
        raise RulesError(f"{where}: field `{key}` is required")
    return raw[key]


def _strings(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise RulesError(f"{where}: a string or a list of non-empty strings")
    return tuple(items)


def _positive_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulesError(f"{where}: a positive integer, not {value!r}")
    return value


def _path_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise RulesError(f"{where}: a file system path, not {value!r}")
    return value


# ------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Trigger:
    """A rule whose recurrence threshold one target reached, with the findings behind it."""

    rule: Rule
    target: str
    findings: tuple[dict[str, Any], ...]
    occurrences: float  # the peak number within the rule's window

    @property
    def severity(self) -> str:
        """The worst severity among the findings."""
        return max((f["severity"] for f in self.findings), key=SEVERITIES.index)

    @property
    def finding_ids(self) -> list[int]:
        """The findings' ids, ascending."""
        return sorted(int(f["id"]) for f in self.findings)

    @property
    def first_seen(self) -> float:
        """Packet time of the first occurrence."""
        return min(float(f["first_seen"]) for f in self.findings)

    @property
    def last_seen(self) -> float:
        """Packet time of the last occurrence."""
        return max(float(f["last_seen"]) for f in self.findings)

    @property
    def kinds(self) -> list[str]:
        """The distinct finding kinds, sorted."""
        return sorted({f["kind"] for f in self.findings})

    @property
    def reason(self) -> str:
        """One line saying why the rule fired."""
        window = self.rule.recurrence.window
        return (f"{_count_text(self.occurrences)} occurrence(s) of {', '.join(self.kinds)} "
                f"within {_duration_text(window)} (threshold {self.rule.recurrence.count}), "
                f"worst severity {self.severity}")


def matches(rule: Rule, finding: Mapping[str, Any]) -> bool:
    """True when a finding falls under the rule's match (triage status not considered)."""
    m = rule.match
    if SEVERITIES.index(finding["severity"]) < SEVERITIES.index(m.min_severity):
        return False
    if not any(fnmatch.fnmatchcase(finding["kind"], glob) for glob in m.kinds):
        return False
    if m.owasp and finding.get("owasp") not in m.owasp:
        return False
    endpoint = finding.get("endpoint") or {}
    if m.hosts and not any(fnmatch.fnmatchcase(endpoint.get("host") or "", g) for g in m.hosts):
        return False
    return not m.paths or any(
        fnmatch.fnmatchcase(endpoint.get("path_template") or "", glob) for glob in m.paths)


def peak_occurrences(spans: Iterable[tuple[float, float, int]], window: float) -> float:
    """Most occurrences inside any window of `window` seconds.

    spans: (first_seen, last_seen, count), each count spread evenly over its interval (a
    zero-length interval is a point).  The total is piecewise linear in the window's start,
    so its maximum lies on a breakpoint: an interval's start or end, or that minus window.
    """
    items = [(float(a), max(float(a), float(b)), int(c)) for a, b, c in spans]
    starts = {p for a, b, _ in items for p in (a, b, a - window, b - window)}
    best = 0.0
    for start in starts:
        end = start + window
        total = 0.0
        for a, b, count in items:
            if b < start - _EPSILON or a > end + _EPSILON:
                continue
            if b - a <= _EPSILON:
                total += count
            else:
                total += count * max(0.0, min(b, end) - max(a, start)) / (b - a)
        best = max(best, total)
    return best


def evaluate(rules: RuleSet, findings: Sequence[Mapping[str, Any]], *,
             now: float) -> list[Trigger]:
    """Every (rule, target) whose matching findings recur at least `count` times in `window`.

    Findings triaged false_positive or risk_accepted never count; with max_age set, neither
    do findings last seen longer ago than that (findings' times are packet times).
    """
    eligible = [f for f in findings if f.get("status") not in IGNORED_STATUSES
                and (rules.max_age is None or float(f["last_seen"]) >= now - rules.max_age)]
    triggers: list[Trigger] = []
    for rule in rules.rules:
        by_target: dict[str, list[Mapping[str, Any]]] = {}
        for finding in eligible:
            target = finding.get(rule.recurrence.target)
            if target and matches(rule, finding):
                by_target.setdefault(str(target), []).append(finding)
        for target in sorted(by_target):
            group = by_target[target]
            peak = peak_occurrences(((f["first_seen"], f["last_seen"], f["count"])
                                     for f in group), rule.recurrence.window)
            if peak + _EPSILON >= rule.recurrence.count:
                triggers.append(Trigger(rule, target, tuple(dict(f) for f in group), peak))
    return triggers


# ---------------------------------------------------------------------------- planning


@dataclass
class Planned:
    """One (rule, action, target) and what this run does about it."""

    trigger: Trigger
    action: Action
    status: str  # would_fire (→ fired/failed), deduplicated, rate_limited, never_block, ...
    why: str
    previous: dict[str, Any] | None = None  # its ledger row, if any

    @property
    def key(self) -> str:
        """Its fire_key."""
        return fire_key(self.trigger.rule.name, self.action.name, self.trigger.target)


def plan(triggers: Sequence[Trigger], ledger: Mapping[str, Mapping[str, Any]], rules: RuleSet,
         *, now: float) -> list[Planned]:
    """Decide, for each trigger's actions, whether it fires now (pure).

    * A (rule, action, target) whose ledger outcome is "fired" is deduplicated: it never
      fires again, except a blocklist entry whose ttl ran out while new findings arrived.
    * A "failed" or "rate_limited" ledger row is pending: it is tried again.
    * Blocklist actions skip never_block addresses and anything that is not an IP address.
    * Rate limit, per rule: at most max_per_run targets per run and max_per_hour targets
      whose actions were attempted in the last hour; one target is one unit however many
      actions the rule has.  Worst severity and biggest recurrence go first.  The rest are
      recorded as "rate_limited" and fire on a later run once the budget allows: held back,
      never lost.
    """
    hourly: dict[str, set[str]] = {}
    for row in ledger.values():
        if row["outcome"] in (FIRED, FAILED) and float(row["last_fired"]) >= now - HOUR:
            hourly.setdefault(row["rule"], set()).add(row["target"])
    ordered = sorted(triggers, key=lambda t: (t.rule.name, -SEVERITIES.index(t.severity),
                                              -t.occurrences, t.first_seen, t.target))
    used_run: dict[str, int] = {}
    out: list[Planned] = []
    for trigger in ordered:
        rule = trigger.rule
        decided: list[Planned] = []
        for action in rule.actions:
            key = fire_key(rule.name, action.name, trigger.target)
            previous = ledger.get(key)
            decided.append(_decide(trigger, action, previous, rules, now))
        wanting = [p for p in decided if p.status == WOULD_FIRE]
        if wanting:
            in_hour = hourly.setdefault(rule.name, set())
            if used_run.get(rule.name, 0) >= rule.max_per_run:
                limit = f"max_per_run {rule.max_per_run} reached"
            elif trigger.target not in in_hour and len(in_hour) >= rule.max_per_hour:
                limit = f"max_per_hour {rule.max_per_hour} reached"
            else:
                limit = ""
            if limit:
                for p in wanting:
                    p.status, p.why = RATE_LIMITED, f"{limit}; will fire on a later run"
            else:
                used_run[rule.name] = used_run.get(rule.name, 0) + 1
                in_hour.add(trigger.target)
        out.extend(decided)
    return out


def _decide(trigger: Trigger, action: Action, previous: Mapping[str, Any] | None,
            rules: RuleSet, now: float) -> Planned:
    prior = None if previous is None else dict(previous)
    if action.is_blocklist and trigger.rule.recurrence.target == "client_ip":
        if not is_ip(trigger.target):
            return Planned(trigger, action, INVALID_TARGET,
                           f"{trigger.target!r} is not an IP address", prior)
        if rules.protected(trigger.target):
            return Planned(trigger, action, NEVER_BLOCK,
                           "address is in never_block: not put in any blocklist", prior)
    if prior is None:
        return Planned(trigger, action, WOULD_FIRE, trigger.reason, prior)
    if prior["outcome"] == FAILED:
        return Planned(trigger, action, WOULD_FIRE, "retry: the last attempt failed", prior)
    if prior["outcome"] == RATE_LIMITED:
        return Planned(trigger, action, WOULD_FIRE, "was rate-limited: firing now", prior)
    if action.is_blocklist and action.ttl is not None:
        expired = float(prior["last_fired"]) + action.ttl <= now
        fresh = set(trigger.finding_ids) - set(prior.get("finding_ids") or [])
        if expired and fresh:
            return Planned(trigger, action, WOULD_FIRE,
                           f"entry expired and {len(fresh)} new finding(s) arrived", prior)
    return Planned(trigger, action, DEDUPLICATED,
                   f"already fired at {rfc3339(float(prior['first_fired']))}", prior)


# ------------------------------------------------------------------------- formatting


def is_ip(text: str) -> bool:
    """True for a plain IPv4 or IPv6 address (nothing else may reach a blocklist)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def rfc3339(ts: float) -> str:
    """UTC timestamp text with second precision, e.g. 2026-01-02T03:04:05Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _count_text(value: float) -> str:
    return str(int(value)) if abs(value - round(value)) < 1e-6 else f"{value:.1f}"


# ------------------------------------------------------------------------------ running


@dataclass
class ResponseReport:
    """What a run did: one row per (rule, action, target), plus files written and errors."""

    dry_run: bool
    planned: list[Planned] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many rows per status."""
        totals: dict[str, int] = {}
        for p in self.planned:
            totals[p.status] = totals.get(p.status, 0) + 1
        return totals

    def rows(self) -> list[dict[str, Any]]:
        """Plain rows for printing or JSON: rule, action, type, target, status, why."""
        return [{"rule": p.trigger.rule.name, "action": p.action.name, "type": p.action.type,
                 "target": p.trigger.target, "status": p.status, "why": p.why,
                 "findings": p.trigger.finding_ids} for p in self.planned]


def run_responses(db_url: str, rules: RuleSet | str | Path, *, dry_run: bool = False,
                  now: float | None = None, out_dir: str | Path | None = None) -> ResponseReport:
    """Evaluate the rules over the stored findings and fire what is due; never raises for a
    failing action (it is recorded "failed" and retried next run).

    dry_run: plan only; nothing is sent, written or recorded.  out_dir: where relative
    action paths resolve (default: the working directory).  Raises RulesError for bad
    rules and StoreError when the database cannot be used.
    """
    from mirrorscope import response_actions
    from mirrorscope.store.analysis_repo import AnalysisStore
    from mirrorscope.store.response_repo import ResponseLedger

    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    moment = time.time() if now is None else now
    base = Path(out_dir) if out_dir is not None else Path.cwd()
    with AnalysisStore(db_url) as store:
        findings = store.findings()
    with ResponseLedger(db_url) as ledger:
        rows = {row["fire_key"]: row for row in ledger.firings()}
        triggers = evaluate(ruleset, findings, now=moment)
        report = ResponseReport(dry_run=dry_run, planned=plan(triggers, rows, ruleset,
                                                              now=moment))
        if dry_run:
            return report
        records = response_actions.execute(report, base, now=moment)
        if records:
            ledger.upsert(records)
        report.files.extend(response_actions.regenerate_blocklists(
            ruleset, ledger.firings(), base, now=moment, errors=report.errors))
    return report
