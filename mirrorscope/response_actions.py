"""The writers behind automated responses: webhook, ticket files and blocklist files.

Glue: file and network I/O.  Nothing here raises for a failing action: a webhook that does
not answer or a ticket folder that cannot be written becomes outcome "failed" (retried on
the next run) and an error line in the report.

Blocklist files are never appended to: each run rebuilds them from the ledger's "fired"
rows (one entry per target, expired entries dropped) and swaps the whole file in with
os.replace, so a consumer never reads half a file and a re-run leaves them unchanged.
Entries belong to the rules and actions of the current configuration: removing a rule (or
adding its addresses to never_block) takes its entries out of the files on the next run.

Delivery is at least once: a webhook is sent before its ledger row is written, so a crash
in between resends it on the next run.  Two `respond` runs at the same time over the same
database may both fire a new (rule, action, target); run one at a time (cron, or the end
of a replay).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorscope import __version__
from mirrorscope.responses import (
    FAILED,
    FIRED,
    RATE_LIMITED,
    WOULD_FIRE,
    Action,
    Planned,
    RuleSet,
    Trigger,
    is_ip,
    rfc3339,
)

if TYPE_CHECKING:
    from mirrorscope.responses import ResponseReport

BLOCKLIST_MODE = 0o644  # nginx workers and firewall loaders read these; addresses only
TICKET_MODE = 0o600  # tickets carry (redacted) evidence
MAX_EVIDENCE_FINDINGS = 20
MAX_EVIDENCE_TEXT = 300
HEADER = "mirrorscope respond: regenerated from the response ledger on every run; do not edit."


# ------------------------------------------------------------------------------ execute


def execute(report: ResponseReport, base: Path, *, now: float,
            redact: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """Fire every planned action marked would_fire; return the ledger records to upsert.

    Statuses in the report become "fired" or "failed"; rate-limited ones are recorded as
    pending.  redact: scrubs evidence text in tickets (default: the installation's key).
    """
    records: list[dict[str, Any]] = []
    scrub = redact
    for planned in report.planned:
        if planned.status == RATE_LIMITED:
            records.append(_record(planned, RATE_LIMITED, {}, now))
            continue
        if planned.status != WOULD_FIRE:
            continue
        action = planned.action
        payload: dict[str, Any] = {}
        try:
            if action.type == "webhook":
                payload = webhook_payload(planned.trigger, action, now)
                ok, detail = post_webhook(action, payload)
            elif action.type == "ticket":
                if scrub is None:
                    scrub = _default_scrub()
                ticket = ticket_payload(planned.trigger, now, scrub)
                ok, detail = write_ticket(resolve(base, action.directory or "."), planned.key,
                                          planned.trigger.rule.name, ticket)
                payload = {"file": detail if ok else None, "title": ticket["title"]}
            else:
                payload = block_payload(planned.trigger, action, now)
                ok, detail = True, "entry recorded; file regenerated below"
        except Exception as exc:  # one broken action must not stop the others
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        planned.status = FIRED if ok else FAILED
        if ok:
            planned.why = f"{planned.why} -> {detail}" if action.type == "ticket" else planned.why
        else:
            planned.why = f"{detail}; retried on the next run"
            report.errors.append(f"{planned.trigger.rule.name}/{action.name} "
                                 f"{planned.trigger.target}: {detail}")
        records.append(_record(planned, planned.status, payload, now))
    return records


def _record(planned: Planned, outcome: str, payload: Mapping[str, Any],
            now: float) -> dict[str, Any]:
    """The ledger row for one attempt (or one hold-back) of a (rule, action, target)."""
    previous = planned.previous or {}
    attempted = outcome in (FIRED, FAILED)
    earlier = int(previous.get("fired_count") or 0)
    # first_fired: the first attempt; a row that was only ever held back restarts it.
    keep_first = bool(previous) and (earlier > 0 or not attempted)
    first = float(previous["first_fired"]) if keep_first else now
    return {
        "rule": planned.trigger.rule.name,
        "action": planned.action.name,
        "target": planned.trigger.target,
        "kind": ",".join(planned.trigger.kinds)[:500],
        "first_fired": first,
        "last_fired": now if attempted else float(previous.get("last_fired", now)),
        "fired_count": earlier + (1 if attempted else 0),
        "finding_ids": sorted(set(previous.get("finding_ids") or [])
                              | set(planned.trigger.finding_ids)),
        "payload": dict(payload) or dict(previous.get("payload") or {}),
        "outcome": outcome,
    }


def resolve(base: Path, text: str) -> Path:
    """An action path: absolute as given, relative under base (--out-dir)."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


# ------------------------------------------------------------------------------ webhook


def webhook_payload(trigger: Trigger, action: Action, now: float) -> dict[str, Any]:
    """The JSON document POSTed for one (rule, target): what, who, why, which findings."""
    rule = trigger.rule
    return {
        "type": "mirrorscope.response",
        "rule": rule.name,
        "action": action.name,
        "target_type": rule.recurrence.target,
        "target": trigger.target,
        "severity": trigger.severity,
        "kinds": trigger.kinds,
        "owasp": sorted({f["owasp"] for f in trigger.findings if f.get("owasp")}),
        "occurrences": round(trigger.occurrences, 3),
        "threshold": rule.recurrence.count,
        "window_seconds": rule.recurrence.window,
        "first_seen": rfc3339(trigger.first_seen),
        "last_seen": rfc3339(trigger.last_seen),
        "finding_ids": trigger.finding_ids,
        "reason": trigger.reason,
        "fired_at": rfc3339(now),
        "sensor": f"mirrorscope/{__version__}",
    }


def post_webhook(action: Action, payload: Mapping[str, Any]) -> tuple[bool, str]:
    """POST one JSON document (timeout, retries with backoff, no redirects, no env proxy).

    Reuses alerts.WebhookSink: 5xx, 429 and connection errors are retried, other answers
    are not.  Returns (delivered, detail); never raises.
    """
    from mirrorscope.alerts import AlertError, WebhookSink

    backoff = 0.5
    budget = action.timeout * (action.retries + 1) + backoff * (2 ** action.retries) + 1.0
    try:
        sink = WebhookSink(action.url or "", timeout=action.timeout, max_retries=action.retries,
                           backoff=backoff, max_backoff=5.0, close_timeout=budget, max_queue=1)
    except AlertError as exc:
        return False, str(exc)
    try:
        sink.send([dict(payload)])
    finally:
        counters = sink.close()
    if counters.get("sent") == 1:
        return True, f"delivered to {action.url}"
    return False, (f"webhook {action.url}: no 2xx answer after "
                   f"{1 + int(counters.get('retries', 0))} attempt(s)")


# ------------------------------------------------------------------------------ tickets


def ticket_payload(trigger: Trigger, now: float, scrub: Callable[[str], str]) -> dict[str, Any]:
    """A ticket for one (rule, target): title, severity, owasp, description, redacted
    evidence summary, remediation and the finding ids it rests on."""
    rule = trigger.rule
    findings = sorted(trigger.findings, key=lambda f: (-_severity_rank(f), int(f["id"])))
    endpoints = sorted({_endpoint_text(f) for f in findings if f.get("endpoint")})
    description = (
        f"Rule {rule.name!r} fired for {rule.recurrence.target} {trigger.target}: "
        f"{trigger.reason}. Seen from {rfc3339(trigger.first_seen)} to "
        f"{rfc3339(trigger.last_seen)} (packet time)"
        + (f" on {', '.join(endpoints[:10])}" if endpoints else "") + "."
    )
    evidence = [{
        "finding_id": int(f["id"]),
        "kind": f["kind"],
        "severity": f["severity"],
        "owasp": f.get("owasp"),
        "endpoint": _endpoint_text(f) if f.get("endpoint") else None,
        "count": int(f["count"]),
        "first_seen": rfc3339(float(f["first_seen"])),
        "last_seen": rfc3339(float(f["last_seen"])),
        "evidence": _scrubbed(f.get("evidence") or {}, scrub, 0),
        "explanation": _scrubbed((f.get("explanation") or [])[:3], scrub, 0),
    } for f in findings[:MAX_EVIDENCE_FINDINGS]]
    return {
        "title": f"[mirrorscope] {trigger.severity}: {', '.join(trigger.kinds)} from "
                 f"{rule.recurrence.target} {trigger.target}",
        "severity": trigger.severity,
        "owasp": sorted({f["owasp"] for f in findings if f.get("owasp")}),
        "rule": rule.name,
        "target": {"type": rule.recurrence.target, "value": trigger.target},
        "description": description,
        "evidence": evidence,
        "evidence_omitted": max(0, len(findings) - MAX_EVIDENCE_FINDINGS),
        "remediation": sorted({f["remediation"] for f in findings if f.get("remediation")}),
        "links": {
            "finding_ids": trigger.finding_ids,
            "query": f"mirrorscope findings --format json  (ids {trigger.finding_ids[:20]})",
        },
        "created_at": rfc3339(now),
        "sensor": f"mirrorscope/{__version__}",
    }


def write_ticket(directory: Path, key: str, rule: str,
                 payload: Mapping[str, Any]) -> tuple[bool, str]:
    """Write one ticket JSON file (atomically, 0600); (written, path or error)."""
    path = directory / f"{rule}-{key[:16]}.json"
    try:
        atomic_write(path, json.dumps(payload, indent=2, ensure_ascii=True) + "\n", TICKET_MODE)
    except OSError as exc:
        return False, f"cannot write ticket {path}: {exc.strerror or exc}"
    return True, str(path)


def _default_scrub() -> Callable[[str], str]:
    """Secret-shaped text becomes keyed fingerprints (evidence is stored redacted already;
    this is the second line of defence before it leaves the sensor)."""
    from mirrorscope.analysis.detection_redact import scrub
    from mirrorscope.keys import load_or_create_key

    key = load_or_create_key()
    return lambda text: scrub(text, key)


def _scrubbed(value: object, scrub: Callable[[str], str], depth: int) -> object:
    if depth > 8:
        return "...[too deep]"
    if isinstance(value, str):
        text = scrub(value)
        return text if len(text) <= MAX_EVIDENCE_TEXT else text[:MAX_EVIDENCE_TEXT] + "..."
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v, scrub, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub, depth + 1) for v in list(value)[:50]]
    return _scrubbed(str(value), scrub, depth + 1)


def _endpoint_text(finding: Mapping[str, Any]) -> str:
    ep = finding["endpoint"]
    return f"{ep.get('method', '')} {ep.get('host', '')}{ep.get('path_template', '')}".strip()


def _severity_rank(finding: Mapping[str, Any]) -> int:
    from mirrorscope.responses import SEVERITIES

    return SEVERITIES.index(finding["severity"])


# ---------------------------------------------------------------------------- blocklists


def block_payload(trigger: Trigger, action: Action, now: float) -> dict[str, Any]:
    """What the ledger keeps for a blocklist entry (the files are rebuilt from it)."""
    return {
        "type": action.type,
        "reason": trigger.reason,
        "severity": trigger.severity,
        "kinds": trigger.kinds,
        "first_seen": trigger.first_seen,
        "last_seen": trigger.last_seen,
        "expires": None if action.ttl is None else now + action.ttl,
    }


@dataclass
class BlockEntry:
    """One target in one blocklist file, merged over the rules that put it there."""

    target: str
    rules: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    first_seen: float = math.inf
    last_seen: float = -math.inf
    expires: float | None = None
    findings: set[int] = field(default_factory=set)
    permanent: bool = False


def blocklist_entries(rows: Iterable[Mapping[str, Any]], *, now: float,
                      ruleset: RuleSet, addresses_only: bool) -> list[BlockEntry]:
    """Live entries from ledger rows: fired, not expired, not protected; one per target."""
    entries: dict[str, BlockEntry] = {}
    for row in sorted(rows, key=lambda r: (float(r["first_fired"]), r["rule"])):
        if row["outcome"] != FIRED:
            continue
        payload = row.get("payload") or {}
        expires = payload.get("expires")
        if expires is not None and float(expires) <= now:
            continue
        target = row["target"]
        if addresses_only and not is_ip(target):
            continue
        if is_ip(target) and ruleset.protected(target):
            continue  # never_block wins even over what an older configuration blocked
        entry = entries.setdefault(target, BlockEntry(target))
        if row["rule"] not in entry.rules:
            entry.rules.append(row["rule"])
            entry.reasons.append(str(payload.get("reason", "")))
        entry.first_seen = min(entry.first_seen, float(payload.get("first_seen", math.inf)))
        entry.last_seen = max(entry.last_seen, float(payload.get("last_seen", -math.inf)))
        entry.findings.update(int(i) for i in row.get("finding_ids") or [])
        if expires is None:
            entry.permanent, entry.expires = True, None
        elif not entry.permanent:
            entry.expires = max(entry.expires or 0.0, float(expires))
    return [entries[key] for key in sorted(entries, key=_address_order)]


def render_nginx(entries: Sequence[BlockEntry]) -> str:
    """An nginx include file: one `deny ADDRESS;` per entry."""
    lines = [f"# {HEADER}", "# Include it in an http, server or location block, then reload nginx.",
             f"# {len(entries)} address(es)."]
    for e in entries:
        expires = "never" if e.expires is None else rfc3339(e.expires)
        lines.append(f"deny {e.target};  # rules={','.join(e.rules)} expires={expires}")
    return "\n".join(lines) + "\n"


def render_nftables(entries: Sequence[BlockEntry], action: Action, *, now: float) -> str:
    """An `nft -f` file: declare the table and both sets, flush them, add the elements.

    Declaring an existing table or set with the same definition is a no-op for nft, and the
    flush makes loading the file replace the sets' contents rather than add to them.
    Timeouts are what remains of each entry's ttl at generation time.
    """
    fam, table = action.family, action.table
    lines = [f"# {HEADER}", "# Load with: nft -f THIS_FILE", f"table {fam} {table} {{"]
    for name, kind in ((action.set4, "ipv4_addr"), (action.set6, "ipv6_addr")):
        lines += [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags timeout", "\t}"]
    lines.append("}")
    for name, version in ((action.set4, 4), (action.set6, 6)):
        lines.append(f"flush set {fam} {table} {name}")
        elements = []
        for e in entries:
            if ipaddress.ip_address(e.target).version != version:
                continue
            if e.expires is None:
                elements.append(e.target)
            else:
                elements.append(f"{e.target} timeout {max(1, math.ceil(e.expires - now))}s")
        if elements:
            lines.append(f"add element {fam} {table} {name} {{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n"


def render_json(entries: Sequence[BlockEntry], target_type: str = "client_ip") -> str:
    """A generic JSON list for WAFs and API gateways: one object per blocked target."""
    key = "ip" if target_type == "client_ip" else "principal"
    documents = [{
        key: e.target,
        "reason": "; ".join(e.reasons),
        "rule": e.rules[0],
        "rules": e.rules,
        "first_seen": rfc3339(e.first_seen) if math.isfinite(e.first_seen) else None,
        "last_seen": rfc3339(e.last_seen) if math.isfinite(e.last_seen) else None,
        "expires": None if e.expires is None else rfc3339(e.expires),
        "findings": sorted(e.findings),
    } for e in entries]
    return json.dumps(documents, indent=2, ensure_ascii=True) + "\n"


def regenerate_blocklists(ruleset: RuleSet, firings: Sequence[Mapping[str, Any]], base: Path,
                          *, now: float, errors: list[str]) -> list[str]:
    """Rewrite every blocklist file the rules name from the ledger; return their paths.

    Rules sharing one file share its entries (one per target).  A file that cannot be
    written is reported in errors and left as it was; the next run tries again.
    """
    by_file: dict[Path, tuple[Action, str, list[Mapping[str, Any]]]] = {}
    for rule in ruleset.rules:
        mine = {a.name for a in rule.actions if a.is_blocklist}
        rows = [r for r in firings if r["rule"] == rule.name and r["action"] in mine]
        for action in rule.actions:
            if not action.is_blocklist:
                continue
            path = resolve(base, action.file or "")
            chosen = [r for r in rows if r["action"] == action.name]
            earlier = by_file.get(path)
            if earlier is None:
                by_file[path] = (action, rule.recurrence.target, chosen)
            elif earlier[0].type != action.type or earlier[1] != rule.recurrence.target:
                errors.append(f"{path}: named by {earlier[0].type} and {action.type} actions "
                              "(or different targets); kept the first")
            else:
                earlier[2].extend(chosen)
    written: list[str] = []
    for path, (action, target_type, rows) in by_file.items():
        addresses_only = action.type != "json_blocklist" or target_type == "client_ip"
        entries = blocklist_entries(rows, now=now, ruleset=ruleset,
                                    addresses_only=addresses_only)
        if action.type == "nginx_deny":
            text = render_nginx(entries)
        elif action.type == "nftables_set":
            text = render_nftables(entries, action, now=now)
        else:
            text = render_json(entries, target_type)
        try:
            atomic_write(path, text, BLOCKLIST_MODE)
        except OSError as exc:
            errors.append(f"cannot write {path}: {exc.strerror or exc}")
            continue
        written.append(str(path))
    return written


def _address_order(target: str) -> tuple[int, int, str]:
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return (9, 0, target)
    return (address.version, int(address), target)


# ------------------------------------------------------------------------------- files


def atomic_write(path: Path, text: str, mode: int) -> bool:
    """Replace path's content whole (temp file in the same folder, fsync, os.replace).

    Unchanged content is left alone (no new mtime to wake a reload watcher); returns
    whether the file was written.  Creates missing parent folders.
    """
    data = text.encode("utf-8")
    with contextlib.suppress(OSError):
        if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)  # a symlink at path is replaced, never followed
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return True
