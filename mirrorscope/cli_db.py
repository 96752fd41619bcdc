"""Database commands: `mirrorscope prune` (retention) and `mirrorscope db status`."""

from __future__ import annotations

import re
import sys
import time

import click
from rich.console import Console

from mirrorscope.cli_options import EXIT_BAD_INPUT

DEFAULT_DB = "sqlite:///mirrorscope.db"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")

err = Console(stderr=True)
out = Console(markup=False, emoji=False, highlight=False)


def parse_duration(value: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds; ValueError otherwise."""
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30d, 12h, 90m, 45s, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _db_option(func):
    return click.option(
        "--db",
        "db_url",
        default=DEFAULT_DB,
        show_default=True,
        envvar="MIRRORSCOPE_DB",
        help="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db",
    )(func)


@click.command("prune")
@click.option("--older-than", "older_than", required=True, callback=_duration,
              help="Delete finished runs older than this (30d, 12h, 90m, 45s, 2w).")
@_db_option
def prune_command(older_than: float, db_url: str) -> None:
    """Delete capture runs finished before now - DURATION, with everything they wrote."""
    from mirrorscope.store.db import StoreError
    from mirrorscope.store.repository import Store

    try:
        with Store(db_url, upgrade=False) as store:
            removed = store.prune(older_than=older_than, now=time.time())
    except StoreError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    out.print(f"pruned {removed['runs']} run(s) and {removed['findings']} finding(s)")


@click.command("status")
@_db_option
def db_status_command(db_url: str) -> None:
    """Show the schema revision of the database and the one this mirrorscope needs."""
    from mirrorscope.store.db import make_engine
    from mirrorscope.store.migrate import current_revision, head_revision

    try:
        engine = make_engine(db_url, create=False)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # one line, never a traceback
        err.print(f"[red]error:[/] {type(exc).__name__}: {str(exc).splitlines()[0]}",
                  highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    head = head_revision()
    state = "up to date" if current == head else "behind: run `mirrorscope db upgrade`"
    out.print(f"schema {current or 'none'} (this mirrorscope needs {head}): {state}")
    if current != head:
        sys.exit(1)


# Subcommands for the `db` group in cli.py.
db_commands = [db_status_command]
