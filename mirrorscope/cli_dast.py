"""`mirrorscope test`: active checks (DAST) replaying the recorded inventory against a target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from mirrorscope.cli_analysis import _consoles, _fail, db_option
from mirrorscope.dast import CHECKS

OPT_IN_FLAG = "--i-own-this-target"
DEFAULT_RATE = 10.0
DEFAULT_MAX_REQUESTS = 1000


def _checks(text: str) -> frozenset[str]:
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(CHECKS))
    if unknown or not wanted:
        _fail(f"--checks: unknown check(s) {', '.join(unknown) or '(none given)'}; "
              f"choose from {','.join(CHECKS)}")
    return frozenset(wanted)


def _rate(text: str) -> float:
    number = text.strip().removesuffix("/s")
    try:
        rate = float(number)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= 1000:
        _fail(f"--rate: {text!r} is not a rate between 0 and 1000 requests per second (e.g. 5/s)")
    return rate


def _pick_host(db_url: str, host: str | None, netloc: str) -> str:
    from mirrorscope.dast import recorded_hosts

    hosts = recorded_hosts(db_url)
    if host is not None:
        if host not in hosts:
            _fail(f"--host {host!r} has no recorded endpoints; recorded hosts: "
                  f"{', '.join(hosts[:10]) or 'none'}")
        return host
    if not hosts:
        _fail("the database has no recorded endpoints: replay a capture of the API first")
    if netloc in hosts:
        return netloc
    if len(hosts) == 1:
        return hosts[0]
    _fail(f"the database records several hosts; choose the one the target serves with --host "
          f"({', '.join(hosts[:10])}{' ...' if len(hosts) > 10 else ''})")
    raise AssertionError  # unreachable: _fail exits


@click.command("test")
@click.option("--target", required=True, metavar="URL",
              help="The origin to test, scheme://host[:port]; nothing else is ever contacted.")
@click.option("--i-own-this-target", "owned", is_flag=True,
              help="Required: you confirm you own the target or are authorised to test it.")
@db_option
@click.option("--credentials", "credentials_path",
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML of test principals: principals: {alice: {headers: {Authorization: "
                   "...}, role: user, owns: [/api/notes/1]}}.")
@click.option("--allow-write", is_flag=True,
              help="Also send POST/PUT/PATCH/DELETE (mass assignment, method tampering).")
@click.option("--rate", "rate_text", default=f"{DEFAULT_RATE:g}/s", show_default=True,
              metavar="N/s", help="At most N requests per second.")
@click.option("--max-requests", type=click.IntRange(min=1), default=DEFAULT_MAX_REQUESTS,
              show_default=True, help="Stop after this many requests.")
@click.option("--host", default=None,
              help="Which recorded host's inventory to replay (default: the target's, or the "
                   "only one).")
@click.option("--checks", "checks_text", default=",".join(CHECKS), show_default=True,
              help="Comma-separated checks to run.")
@click.option("--time-based", is_flag=True,
              help="Add time-based SQL injection payloads (each waits up to 2 s).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=10.0,
              show_default=True, help="Seconds per request.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def test_command(target: str, owned: bool, db_url: str, credentials_path: Path | None,
                 allow_write: bool, rate_text: str, max_requests: int, host: str | None,
                 checks_text: str, time_based: bool, timeout: float, fmt: str) -> None:
    """Actively test a target you own with the recorded requests (BOLA, auth, injection ...)."""
    from mirrorscope.dast import DastOptions, run_session
    from mirrorscope.dast_http import DastClient, DastHttpError, parse_target
    from mirrorscope.dast_plan import DastConfigError, load_credentials
    from mirrorscope.keys import KeyFileError, load_or_create_key
    from mirrorscope.store.db import StoreError

    if not owned:
        _fail(f"refusing to test {target}: active tests send attack payloads. Pass "
              f"{OPT_IN_FLAG} to confirm you own the target or are authorised to test it")
    checks = _checks(checks_text)
    rate = _rate(rate_text)
    try:
        parsed = parse_target(target)
        principals = load_credentials(credentials_path) if credentials_path else ()
        key = load_or_create_key()
    except (DastHttpError, DastConfigError, KeyFileError) as exc:
        _fail(str(exc))
        return
    err, out = _consoles()
    try:
        chosen = _pick_host(db_url, host, parsed.netloc)
        client = DastClient(parsed, rate=rate, max_requests=max_requests, timeout=timeout)
        options = DastOptions(allow_write=allow_write, checks=checks, time_based=time_based)
        log = (lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True)) \
            if fmt == "table" else (lambda _line: None)
        outcome = run_session(db_url, chosen, client, principals, options, key, log)
    except StoreError as exc:
        _fail(str(exc))
        return
    result = outcome.result
    rows = [{"id": finding_id, "kind": verdict.kind, "severity": verdict.info.severity,
             "owasp": verdict.info.owasp, "verified": True,
             "endpoint": {"host": endpoint.host, "method": endpoint.method,
                          "path_template": endpoint.path_template},
             "reason": verdict.reason}
            for finding_id, (endpoint, verdict) in zip(outcome.finding_ids, result.verdicts,
                                                       strict=True)]
    if fmt == "json":
        sys.stdout.write(json.dumps({
            "target": parsed.origin, "host": chosen, "run_id": outcome.run_id,
            "endpoints": outcome.endpoints, "tested": result.tested,
            "requests": result.requests, "methods": result.methods,
            "truncated": result.truncated, "unreachable": result.unreachable,
            "skipped": result.skipped, "findings": rows},
            ensure_ascii=True) + "\n")
    else:
        table = Table(title=f"DAST findings on {parsed.origin} (verified)")
        for name in ("id", "severity", "owasp", "kind", "endpoint", "why"):
            table.add_column(name, overflow="fold")
        for row in rows:
            ep = row["endpoint"]
            table.add_row(str(row["id"]), row["severity"], row["owasp"], row["kind"],
                          f"{ep['method']} {ep['path_template']}", row["reason"][:160])
        out.print(table)
        out.print(f"{len(rows)} finding(s); {result.requests} request(s) to {parsed.origin}, "
                  f"{result.tested} of {outcome.endpoints} endpoint(s) tested; run "
                  f"#{outcome.run_id}")
        for note in result.skipped[:20]:
            err.print(f"skipped: {note}", markup=False, highlight=False, soft_wrap=True)
    if result.unreachable:
        _fail(f"stopped: {result.unreachable}; findings so far are stored")
    if result.truncated:
        from mirrorscope.cli import print_error

        print_error(f"stopped early: the budget of {max_requests} request(s) is spent; what "
                    "was found so far is stored (raise --max-requests to test everything)")
