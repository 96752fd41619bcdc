"""`mirrorscope owners`, and the --owners option every command shares (MIRRORSCOPE_OWNERS)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from mirrorscope.cli_options import EXIT_BAD_INPUT
from mirrorscope.ownership import Owner, OwnershipError, OwnershipRules

OWNERS_ENVVAR = "MIRRORSCOPE_OWNERS"


class OwnersFileError(click.ClickException):
    """A bad ownership file is bad input: exit code 2, one line naming the file."""

    exit_code = EXIT_BAD_INPUT


def owners_option(func):
    """--owners FILE (envvar MIRRORSCOPE_OWNERS), passed to the command as owners_path."""
    return click.option(
        "--owners", "owners_path", default=None, envvar=OWNERS_ENVVAR, metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Ownership rules (YAML: host, path prefix, methods -> team). Env: {OWNERS_ENVVAR}.",
    )(func)


def load_owners(path: str | Path | None) -> OwnershipRules | None:
    """The rules in path, None without a path; a bad file raises a ClickException."""
    if path is None or str(path) == "":
        return None
    try:
        return OwnershipRules.load(path)
    except OwnershipError as exc:
        raise OwnersFileError(" ".join(str(exc).split())) from exc


def owner_of(rules: OwnershipRules | None, host: str, path: str, method: str) -> Owner | None:
    """owner_for() that tolerates having no rules at all."""
    return None if rules is None else rules.owner_for(host, path, method)


def _endpoint_rows(db_url: str, rules: OwnershipRules | None) -> list[dict[str, Any]]:
    from mirrorscope.cli_analysis import merged_summaries

    rows = []
    for summary in merged_summaries(db_url):
        key = summary.key
        owner = owner_of(rules, key.host, key.path_template, key.method)
        rows.append({
            "host": key.host,
            "method": key.method,
            "path_template": key.path_template,
            "count": summary.count,
            "owner": None if owner is None else owner.to_dict(),
        })
    return rows


def _db_option(func):
    from mirrorscope.cli import DEFAULT_DB

    return click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
                        envvar="MIRRORSCOPE_DB", help="SQLAlchemy database URL.")(func)


@click.command("owners")
@_db_option
@owners_option
@click.option("--unowned", is_flag=True, help="Only endpoints that no rule covers.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def owners_command(db_url: str, owners_path: Path | None, unowned: bool, fmt: str) -> None:
    """Endpoints with the team that owns them (--unowned: only those no rule covers)."""
    from mirrorscope.cli import err, out

    rules = load_owners(owners_path)
    if rules is None:
        err.print(f"note: no ownership file (--owners FILE or {OWNERS_ENVVAR}): "
                  "every endpoint is unowned", markup=False, highlight=False)
    rows = _endpoint_rows(db_url, rules)
    total = len(rows)
    missing = sum(1 for row in rows if row["owner"] is None)
    shown = [row for row in rows if row["owner"] is None] if unowned else rows
    summary = f"{missing} of {total} endpoints unowned"
    if fmt == "json":
        doc = {"endpoints": shown, "total": total, "unowned": missing}
        sys.stdout.write(json.dumps(doc, ensure_ascii=True) + "\n")
        return
    table = Table(title="unowned endpoints" if unowned else "endpoint owners")
    for name in ("host", "method", "path template", "count", "team", "contact", "tags"):
        table.add_column(name, overflow="fold")
    for row in shown:
        owner = row["owner"] or {}
        table.add_row(row["host"], row["method"], row["path_template"], str(row["count"]),
                      owner.get("team", "-"), owner.get("contact", ""),
                      ",".join(owner.get("tags", [])))
    out.print(table)
    out.print(summary)
