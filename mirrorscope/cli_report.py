"""`mirrorscope report`: one self-contained HTML report of the database (no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mirrorscope.cli_analysis import db_option
from mirrorscope.cli_options import EXIT_BAD_INPUT
from mirrorscope.cli_owners import load_owners, owners_option


def _fail(message: str) -> None:
    from mirrorscope.cli import print_error

    print_error(message)
    sys.exit(EXIT_BAD_INPUT)


def _seconds(text: str) -> float:
    """A duration: plain seconds or a number with s, m, h or d (3600, 30m, 24h, 7d)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        _fail(f"--since: {text!r} is not a duration (e.g. 3600, 30m, 24h, 7d)")
    return value


@click.command("report")
@db_option
@owners_option
@click.option("--owner", default=None, metavar="TEAM",
              help="Only the endpoints and findings this team owns (needs --owners).")
@click.option("--since", default=None, metavar="DURATION",
              help="Only activity in this recent window: seconds, or 30m, 24h, 7d.")
@click.option("-o", "--output", required=True,
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="HTML file to write (replaced atomically).")
def report_command(db_url: str, owners_path: Path | None, owner: str | None,
                   since: str | None, output: Path) -> None:
    """Write one self-contained HTML report: inventory, findings, risk, charts."""
    from mirrorscope.report import ReportError, gather, write_report
    from mirrorscope.report_html import render

    rules = load_owners(owners_path)
    if owner is not None and not owner.strip():
        _fail("--owner: a team name is required")
    if owner is not None and rules is None:
        _fail("--owner needs ownership rules: pass --owners FILE (or set MIRRORSCOPE_OWNERS)")
    since_seconds = None if since is None else _seconds(since)
    try:
        data = gather(db_url, rules=rules, owner=owner, since_seconds=since_seconds)
    except ReportError as exc:
        _fail(str(exc))
        return
    try:
        write_report(output, render(data))
    except OSError as exc:
        _fail(f"{output}: cannot write the report: {exc.strerror or exc}")
        return
    from mirrorscope.cli import err

    err.print(f"report written to {output} ({len(data.findings)} finding(s), "
              f"{data.inventory.endpoints} endpoint(s))", markup=False, highlight=False)
    for note in data.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
