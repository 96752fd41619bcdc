"""`mirrorscope respond` (work in progress: replaced by its implementation)."""

from __future__ import annotations

import click


@click.command("respond")
def respond_command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
