"""`mirrorscope owners` (work in progress: replaced by its implementation)."""

from __future__ import annotations

import click


@click.command("owners")
def owners_command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
