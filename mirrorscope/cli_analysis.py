"""CLI commands over the analysis results: inventory, openapi, diff, findings, baseline."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.table import Table

from mirrorscope.cli_options import EXIT_BAD_INPUT
from mirrorscope.model import EndpointKey, EndpointSummary

SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


# The store's lifecycle statuses (store/lifecycle_repo.STATUSES, checked equal by a test),
# spelled here so the CLI starts without importing SQLAlchemy.
TRIAGE_STATUSES = ("open", "acknowledged", "resolved", "false_positive", "risk_accepted")


def _consoles():
    from mirrorscope.cli import err, out

    return err, out


def _fail(message: str) -> None:
    from mirrorscope.cli import print_error

    print_error(message)
    sys.exit(EXIT_BAD_INPUT)


def _analysis_store(db_url: str):
    from mirrorscope.store.analysis_repo import AnalysisStore
    from mirrorscope.store.db import StoreError

    try:
        return AnalysisStore(db_url)
    except StoreError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def merged_summaries(db_url: str) -> list[EndpointSummary]:
    """Every endpoint seen in any run, each run's document merged into one."""
    from mirrorscope.analysis.inventory_stats import merge_docs

    store = _analysis_store(db_url)
    try:
        observations = store.endpoint_observations()
    finally:
        store.close()
    docs: dict[EndpointKey, dict] = {}
    for row in observations:
        key = EndpointKey(row["host"], row["method"], row["path_template"])
        docs[key] = merge_docs(docs[key], row["doc"]) if key in docs else row["doc"]
    summaries = [EndpointSummary(key, int(doc.get("count", 0)), float(doc.get("first_seen", 0)),
                                 float(doc.get("last_seen", 0)), doc)
                 for key, doc in docs.items()]
    summaries.sort(key=lambda s: (s.key.host, s.key.path_template, s.key.method))
    return summaries


def db_option(func):
    from mirrorscope.cli import DEFAULT_DB

    return click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
                        envvar="MIRRORSCOPE_DB", help="SQLAlchemy database URL.")(func)


@click.command("inventory")
@db_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--host", default=None, help="Only this host.")
def inventory_command(db_url: str, fmt: str, host: str | None) -> None:
    """The API inventory: endpoints with templates, parameters, auth and sensitive data."""
    summaries = [s for s in merged_summaries(db_url) if host is None or s.key.host == host]
    _, out = _consoles()
    if fmt == "json":
        sys.stdout.write(json.dumps({"endpoints": [s.doc for s in summaries]}, default=str,
                                    ensure_ascii=True) + "\n")
        return
    table = Table(title="API inventory")
    for name in ("host", "method", "path template", "count", "status", "auth", "exposure",
                 "sensitive", "params"):
        table.add_column(name, overflow="fold")
    for s in summaries:
        doc = s.doc
        exposure_doc = doc.get("exposure") or {}
        # "external:12,internal:3": which kinds of clients called it, widest first.
        exposure = ",".join(f"{c}:{exposure_doc[c]}" for c in ("external", "partner", "internal")
                            if exposure_doc.get(c))
        statuses = ",".join(sorted(str(code) for code in (doc.get("status_codes") or {})))
        sensitive = ",".join(sorted({f"{x['type']}@{x['location']}"
                                     for x in doc.get("sensitive") or []}))
        params = ",".join(p["name"] for p in (doc.get("parameters") or [])[:8])
        table.add_row(s.key.host, s.key.method, s.key.path_template, str(s.count), statuses,
                      ",".join(doc.get("auth") or []), exposure, sensitive, params)
    out.print(table)
    out.print(f"{len(summaries)} endpoint(s)")


@click.command("openapi")
@db_option
@click.option("--host", default=None, help="Only this host.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of standard output.")
def openapi_command(db_url: str, host: str | None, output: Path | None) -> None:
    """Export the observed API as an OpenAPI 3.1 document."""
    from mirrorscope.analysis.openapi import export_openapi

    document = json.dumps(export_openapi(merged_summaries(db_url), host=host), indent=2,
                          default=str)
    if output is None:
        sys.stdout.write(document + "\n")
    else:
        output.write_text(document + "\n", encoding="utf-8")


@click.command("diff")
@db_option
@click.option("--spec", "spec_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The documented API: OpenAPI 3.0/3.1, YAML or JSON.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def diff_command(db_url: str, spec_path: Path, fmt: str) -> None:
    """Drift between observed traffic and a spec: shadow, zombie, unused, drift."""
    from mirrorscope.analysis.inventory_errors import InventoryError
    from mirrorscope.analysis.openapi import load_spec
    from mirrorscope.analysis.openapi_diff import diff_against_spec

    try:
        spec = load_spec(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, InventoryError) as exc:
        _fail(f"{spec_path}: {exc}")
        return
    result = diff_against_spec(merged_summaries(db_url), spec)
    _, out = _consoles()
    if fmt == "json":
        sys.stdout.write(json.dumps(result, default=str, ensure_ascii=True) + "\n")
        return
    table = Table(title=f"drift against {spec_path}")
    for name in ("class", "host", "method", "path template", "detail"):
        table.add_column(name, overflow="fold")
    for category in ("shadow", "zombie", "unused", "drift"):
        for entry in result.get(category, []):
            detail = {k: v for k, v in entry.items()
                      if k not in ("host", "method", "path_template")}
            table.add_row(category, str(entry.get("host", "")), str(entry.get("method", "")),
                          str(entry.get("path_template", "")),
                          json.dumps(detail, default=str)[:160])
    out.print(table)


def _findings_owners_option(func):
    from mirrorscope.cli_owners import owners_option

    return owners_option(func)


@click.group("findings", invoke_without_command=True)
@db_option
@click.option("--severity", type=click.Choice(SEVERITY_ORDER), default=None,
              help="This severity and above.")
@click.option("--kind", default=None, help="A kind or a dotted prefix (attack, api.pii_exposure).")
@click.option("--owasp", default=None, help="An OWASP API Top 10 2023 category, e.g. API1:2023.")
@click.option("--since", default=None, help="Last seen at or after: seconds ago (3600, 24h, 7d).")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(TRIAGE_STATUSES),
              help="Only findings in this triage status (repeatable).")
@click.option("--owner", "owner_team", default=None, metavar="TEAM",
              help="Only findings owned by TEAM (needs --owners; '-' for unowned ones).")
@click.option("--sla", "sla_text", default=None, envvar="MIRRORSCOPE_SLA", metavar="SPEC",
              help="SLA days per severity, e.g. critical=3,high=14,info=none "
                   "(default critical=7,high=30,medium=90,low=180).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_findings_owners_option
@click.pass_context
def findings_command(ctx: click.Context, db_url: str, severity: str | None, kind: str | None,
                     owasp: str | None, since: str | None, statuses: tuple[str, ...],
                     owner_team: str | None, sla_text: str | None, fmt: str,
                     owners_path: Path | None) -> None:
    """Security findings, each mapped to the OWASP API Security Top 10 (2023), with triage
    status, owner and SLA; subcommands change a status and show its history."""
    ctx.obj = {**(ctx.obj or {}), "findings_db_url": db_url}
    if ctx.invoked_subcommand is not None:
        return
    from mirrorscope.cli_owners import load_owners
    from mirrorscope.lifecycle import parse_sla_days, sla_status

    try:
        sla_days = parse_sla_days(sla_text or "")
    except ValueError as exc:
        _fail(f"--sla: {exc}")
        return
    rules = load_owners(owners_path)
    if owner_team is not None and rules is None:
        _fail("--owner needs an ownership file: --owners FILE or MIRRORSCOPE_OWNERS")
    since_ts = None if since is None else time.time() - _seconds(since)
    store = _analysis_store(db_url)
    try:
        rows = store.findings(min_severity=severity, kind=kind, owasp=owasp, since=since_ts,
                              status=list(statuses) or None)
    finally:
        store.close()
    now = time.time()
    for row in rows:
        owner = None if rules is None else rules.owner_for_finding(row)
        row["owner"] = None if owner is None else owner.to_dict()
        sla = sla_status(row, now, sla_days)
        row["sla"] = {"age_days": round(sla.age_days, 3), "due_at": sla.due_at,
                      "breached": sla.breached,
                      "days_left": None if sla.days_left is None else round(sla.days_left, 3)}
    if owner_team is not None:
        rows = [r for r in rows if _owned_by(r["owner"], owner_team)]
    _, out = _consoles()
    if fmt == "json":
        sys.stdout.write(json.dumps({"findings": rows}, default=str, ensure_ascii=True) + "\n")
        return
    rows.sort(key=lambda r: (-SEVERITY_ORDER.index(r["severity"]), r["kind"]))
    table = Table(title="findings")
    columns = ["id", "severity", "status", "owasp", "kind", "endpoint", "client", "count"]
    if rules is not None:
        columns.append("owner")
    columns += ["age / SLA", "why"]
    for name in columns:
        # Short cells stay on one line; the wire-derived ones fold.
        table.add_column(name, overflow="fold", no_wrap=name in ("id", "severity", "status"))
    for r in rows:
        ep = r.get("endpoint") or {}
        endpoint = f"{ep.get('method', '')} {ep.get('host', '')}{ep.get('path_template', '')}"
        top = (r["explanation"] or [])[:2]
        why = "; ".join(f"{e.get('feature')}={e.get('value')}" for e in top)
        status = r["status"]
        if r.get("regression_of") is not None and status != "resolved":
            status += f" (regression of #{r['regression_of']})"
        if r.get("verified"):
            status += " (verified)"  # proven by `mirrorscope test`, not only observed
        cells = [str(r["id"]), r["severity"], status, r["owasp"], r["kind"], endpoint.strip(),
                 r.get("client_ip") or "", str(r["count"])]
        if rules is not None:
            cells.append((r["owner"] or {}).get("team", "-"))
        cells += [_sla_cell(r), why[:120]]
        table.add_row(*cells)
    out.print(table)
    breached = sum(1 for r in rows if r["sla"]["breached"])
    out.print(f"{len(rows)} finding(s)" + (f", {breached} past their SLA" if breached else ""))


def _owned_by(owner: dict | None, team: str) -> bool:
    if team == "-":
        return owner is None
    return owner is not None and owner["team"].casefold() == team.casefold()


def _sla_cell(row: dict) -> str:
    sla = row["sla"]
    age = _days(sla["age_days"])
    if row["status"] in ("resolved", "false_positive", "risk_accepted"):
        return f"{age} / closed"
    if sla["due_at"] is None:
        return f"{age} / no SLA"
    if sla["breached"]:
        return f"{age} / BREACHED {_days(-sla['days_left'])} ago"
    return f"{age} / due in {_days(sla['days_left'])}"


def _days(value: float) -> str:
    if value < 1:
        return f"{value * 24:.0f}h"
    return f"{value:.0f}d"


def _subcommand_db(ctx: click.Context, db_url: str | None) -> str:
    """The subcommand's --db, else the one given to `findings` (itself defaulted)."""
    if db_url:
        return db_url
    return (ctx.obj or {}).get("findings_db_url") or _default_db()


def _default_db() -> str:
    from mirrorscope.cli import DEFAULT_DB

    return DEFAULT_DB


def _default_actor() -> str:
    import getpass
    import os

    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in a bare container
        return ""


@findings_command.command("set-status")
@click.argument("finding_ids", nargs=-1, required=True, type=int, metavar="ID [ID...]")
@click.option("--status", "new_status", required=True,
              type=click.Choice(TRIAGE_STATUSES),
              help="The new triage status.")
@click.option("--by", "actor", default=_default_actor, show_default="$USER",
              help="Who makes the change.")
@click.option("--reason", default="", help="Why (required for false_positive and risk_accepted).")
@click.option("--db", "db_url", default=None, envvar="MIRRORSCOPE_DB",
              help="SQLAlchemy database URL (default: the one given to `findings`).")
@click.pass_context
def findings_set_status_command(ctx: click.Context, finding_ids: tuple[int, ...],
                                new_status: str, actor: str, reason: str,
                                db_url: str | None) -> None:
    """Set the triage status of findings; every change is recorded with who and why."""
    from mirrorscope.store.db import StoreError

    if not (actor or "").strip():
        _fail("--by: say who makes the change ($USER is not set)")
    if new_status in ("false_positive", "risk_accepted") and not reason.strip():
        _fail(f"--reason is required for {new_status}: say why")
    store = _analysis_store(_subcommand_db(ctx, db_url))
    try:
        changed = store.set_status(list(finding_ids), new_status, actor, reason)
    except StoreError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    _, out = _consoles()
    moved = {c["id"]: c for c in changed}
    for fid in sorted(set(finding_ids)):
        change = moved.get(fid)
        if change is None:
            out.print(f"finding #{fid}: already {new_status}")
        else:
            out.print(f"finding #{fid}: {change['old_status']} -> {change['new_status']}")
    out.print(f"{len(changed)} finding(s) changed")


@findings_command.command("history")
@click.argument("finding_id", type=int)
@click.option("--db", "db_url", default=None, envvar="MIRRORSCOPE_DB",
              help="SQLAlchemy database URL (default: the one given to `findings`).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def findings_history_command(ctx: click.Context, finding_id: int, db_url: str | None,
                             fmt: str) -> None:
    """A finding's status history: who changed it, when, from what, to what and why."""
    from mirrorscope.store.db import StoreError

    store = _analysis_store(_subcommand_db(ctx, db_url))
    try:
        entries = store.finding_history(finding_id)
        (current,) = store.findings(finding_ids=[finding_id]) or [None]
    except StoreError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    _, out = _consoles()
    if fmt == "json":
        doc = {"finding_id": finding_id, "status": None if current is None else current["status"],
               "regression_of": None if current is None else current["regression_of"],
               "history": entries}
        sys.stdout.write(json.dumps(doc, ensure_ascii=True) + "\n")
        return
    if current is not None:
        line = f"finding #{finding_id} ({current['kind']}, {current['severity']}): " \
               f"{current['status']}"
        if current["regression_of"] is not None:
            line += f", regression of #{current['regression_of']}"
        out.print(line)
    table = Table(title=f"status history of finding #{finding_id}")
    for name in ("when (UTC)", "who", "from", "to", "why"):
        table.add_column(name, overflow="fold")
    for entry in entries:
        table.add_row(_utc(entry["ts"]), entry["actor"], entry["old_status"] or "-",
                      entry["new_status"], entry["reason"] or "")
    out.print(table)
    out.print(f"{len(entries)} change(s)")


def _utc(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        _fail(f"--since: {text!r} is not a duration (e.g. 3600, 30m, 24h, 7d)")
        raise


@click.command("baseline")
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(path_type=str))
@db_option
@click.option("--name", default="default", show_default=True, help="Model name to store.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR",
              help="A proxy whose X-Forwarded-For / Forwarded / X-Real-IP headers are believed "
                   "(repeatable): principals' networks are learned from the clients behind it.")
def baseline_command(pcaps: tuple[str, ...], db_url: str, name: str,
                     trusted_proxies: tuple[str, ...]) -> None:
    """Learn a detection baseline from known-good captures and store the model (JSON)."""
    from mirrorscope.cli_options import origin_config
    from mirrorscope.pipeline import learn_baseline

    _, out = _consoles()
    origin = origin_config(trusted_proxies)
    try:
        model_id, learned, errors = learn_baseline(list(pcaps), db_url=db_url, name=name,
                                                   origin=origin)
    except Exception as exc:  # a baseline that cannot be fitted is a usage error, not a crash
        from mirrorscope.analysis.models_io import DetectionError

        if not isinstance(exc, DetectionError):
            raise
        _fail(str(exc))
        return
    from mirrorscope.cli import print_error

    for message in errors:
        print_error(message)
    out.print(f"baseline {name!r} learned from {learned} transaction(s), stored as model "
              f"#{model_id}")
    if errors:
        sys.exit(EXIT_BAD_INPUT)
