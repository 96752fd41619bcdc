"""`mirrorscope lint`: security lint of an OpenAPI 3.0/3.1 spec, optionally against traffic.

Exit codes are for CI: 0 when no result reaches --fail-on, 1 when one does, 2 on bad input.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_FINDINGS = 1
_LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def _fail(message: str) -> None:
    from mirrorscope.cli import EXIT_BAD_INPUT, print_error

    print_error(message)
    sys.exit(EXIT_BAD_INPUT)


def _load(spec_path: Path) -> tuple[dict, dict[str, int]]:
    """The parsed spec and its pointer -> line map; exits 2 on anything unreadable."""
    from mirrorscope.analysis.inventory_errors import InventoryError
    from mirrorscope.analysis.openapi import load_spec
    from mirrorscope.analysis.speclint import SpecLintError, check_version
    from mirrorscope.analysis.speclint_lines import line_map

    try:
        text = spec_path.read_text(encoding="utf-8")
        spec = load_spec(text)
        check_version(spec)
    except FileNotFoundError:
        _fail(f"{spec_path}: no such file")
        raise  # unreachable: _fail exits
    except OSError as exc:
        _fail(f"{spec_path}: cannot read: {exc.strerror or exc}")
        raise
    except UnicodeDecodeError:
        _fail(f"{spec_path}: not UTF-8 text")
        raise
    except (InventoryError, SpecLintError) as exc:
        _fail(f"{spec_path}: {exc}")
        raise
    return spec, line_map(text)


def artifact_uri(spec_path: Path) -> str:
    """The spec's SARIF artifact URI: relative to the working directory when inside it."""
    resolved = spec_path.resolve()
    try:
        return quote(resolved.relative_to(Path.cwd().resolve()).as_posix())
    except ValueError:
        return resolved.as_uri()


def _table(results: list, spec_path: Path, traffic: bool, console: Console) -> None:
    table = Table(title=f"security lint of {spec_path}")
    for name in ("level", "rule", "line", "where", "finding"):
        table.add_column(name, overflow="fold")
    if traffic:
        table.add_column("traffic", overflow="fold")
    for r in results:
        message = r.message
        if r.operations and not r.pointer.startswith("/paths/"):
            message += " Used by: " + ", ".join(f"{m} {p}" for m, p in r.operations[:6]) + \
                (" ..." if len(r.operations) > 6 else "")
        row = [Text(r.level, style=_LEVEL_STYLE.get(r.level, "")), f"{r.rule_id} {r.rule_name}",
               str(r.line or ""), r.pointer or "/", message]
        if traffic:
            seen = "confirmed: " + " ".join(r.traffic_evidence) if r.traffic_evidence else \
                ("observed, not confirmed" if r.observed_in_traffic else "not observed")
            row.append(seen)
        table.add_row(*row)
    console.print(table)
    counts = {level: sum(1 for r in results if r.level == level)
              for level in ("error", "warning", "note")}
    line = f"{len(results)} result(s): " + ", ".join(f"{n} {lvl}" for lvl, n in counts.items())
    if traffic:
        line += f"; {sum(1 for r in results if r.traffic_evidence)} confirmed by traffic"
    console.print(line)


@click.command("lint")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "sarif", "json"]),
              default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of standard output.")
@click.option("--db", "db_url", default=None,
              help="SQLAlchemy URL of a mirrorscope database: say which results the observed "
                   "traffic confirms.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "note", "none"]),
              default="error", show_default=True,
              help="Exit 1 when a result at or above this level is found.")
def lint_command(spec_path: Path, fmt: str, output: Path | None, db_url: str | None,
                 fail_on: str) -> None:
    """Security lint of an OpenAPI 3.0/3.1 spec (YAML or JSON), with SARIF output for CI."""
    from mirrorscope import __version__
    from mirrorscope.analysis.sarif import render_sarif
    from mirrorscope.analysis.speclint import SpecLintError, lint_spec
    from mirrorscope.analysis.speclint_rules import level_rank

    spec, lines = _load(spec_path)
    observed = None
    if db_url is not None:
        from mirrorscope.cli_analysis import merged_summaries

        observed = merged_summaries(db_url)
    try:
        results = lint_spec(spec, lines, observed)
    except SpecLintError as exc:
        _fail(f"{spec_path}: {exc}")
        return
    if fmt == "sarif":
        text = json.dumps(render_sarif(results, artifact_uri(spec_path),
                                       tool_version=__version__,
                                       traffic_checked=observed is not None), indent=2) + "\n"
    elif fmt == "json":
        text = json.dumps({"spec": str(spec_path), "traffic_checked": observed is not None,
                           "results": [r.to_dict() for r in results]}, indent=2) + "\n"
    else:
        text = None
    if output is not None:
        if text is None:
            buffer = io.StringIO()
            _table(results, spec_path, observed is not None,
                   Console(file=buffer, width=160, markup=False, emoji=False, highlight=False,
                           color_system=None))
            text = buffer.getvalue()
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"{output}: cannot write: {exc.strerror or exc}")
    elif text is not None:
        sys.stdout.write(text)
    else:
        from mirrorscope.cli import out

        _table(results, spec_path, observed is not None, out)
    if fail_on != "none" and any(level_rank(r.level) >= level_rank(fail_on) for r in results):
        sys.exit(EXIT_FINDINGS)
