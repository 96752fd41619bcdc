"""`mirrorscope respond`: fire the automated responses the rules call for, once each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mirrorscope.cli_options import EXIT_BAD_INPUT
from mirrorscope.responses import (
    DEDUPLICATED,
    FAILED,
    FIRED,
    INVALID_TARGET,
    NEVER_BLOCK,
    RATE_LIMITED,
    WOULD_FIRE,
    ResponseReport,
)

_STYLES = {FIRED: "green", WOULD_FIRE: "cyan", DEDUPLICATED: "dim", RATE_LIMITED: "yellow",
           FAILED: "red", NEVER_BLOCK: "magenta", INVALID_TARGET: "red"}


def _db_option(func):
    from mirrorscope.cli_analysis import db_option

    return db_option(func)


@click.command("respond")
@click.option("--rules", "rules_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Rules YAML (see contrib/responses.example.yaml).")
@_db_option
@click.option("--dry-run", is_flag=True,
              help="Print what would fire; send, write and record nothing.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where relative action paths resolve (default: the working directory).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def respond_command(rules_path: Path, db_url: str, dry_run: bool, out_dir: Path | None,
                    fmt: str) -> None:
    """Fire webhooks, blocklists and tickets for recurring findings (deduplicated)."""
    from mirrorscope.cli import err, out, print_error
    from mirrorscope.responses import RulesError, load_rules, run_responses
    from mirrorscope.store.db import StoreError

    try:
        rules = load_rules(rules_path)
        report = run_responses(db_url, rules, dry_run=dry_run, out_dir=out_dir)
    except (RulesError, StoreError) as exc:
        print_error(str(exc))
        sys.exit(EXIT_BAD_INPUT)
    if fmt == "json":
        document = {"dry_run": report.dry_run, "counts": report.counts(),
                    "actions": report.rows(), "files": report.files, "errors": report.errors}
        sys.stdout.write(json.dumps(document, ensure_ascii=True) + "\n")
        return
    print_report(report, out)
    for line in report.errors:
        err.print(Text.assemble(("warning:", "yellow"), " ", line), soft_wrap=True,
                  highlight=False)


def print_report(report: ResponseReport, console: Console) -> None:
    """A rich table of (rule, action, target, status, why) and a one-line summary."""
    title = "automated responses (dry run: nothing sent or written)" if report.dry_run \
        else "automated responses"
    table = Table(title=title)
    for name in ("rule", "action", "target", "status", "why"):
        table.add_column(name, overflow="fold")
    for row in report.rows():
        style = _STYLES.get(row["status"], "")
        action = row["action"] if row["action"] == row["type"] else \
            f"{row['action']} ({row['type']})"
        table.add_row(row["rule"], action, row["target"],
                      row["status"], row["why"], style=style)
    if report.planned:
        console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "nothing matched"
    console.print(f"{summary}.")
    protected = sorted({p.trigger.target for p in report.planned if p.status == NEVER_BLOCK})
    if protected:
        console.print(f"never_block kept {len(protected)} address(es) out of the blocklists: "
                      f"{', '.join(protected[:10])}")
    for path in report.files:
        console.print(f"blocklist: {path}")
