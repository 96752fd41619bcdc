"""Command line: `mirrorscope replay`, `mirrorscope transactions`, `mirrorscope db ...`."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from mirrorscope import __version__
from mirrorscope.cli_options import (
    EXIT_BAD_INPUT,
    alert_options,
    checksum_option,
    origin_config,
    origin_options,
)

DEFAULT_DB = "sqlite:///mirrorscope.db"

err = Console(stderr=True)
# Data console: wire data must never be read as rich markup or emoji codes ("[red]", ":cookie:").
out = Console(markup=False, emoji=False, highlight=False)
if not out.is_terminal:  # piped or captured: rich would wrap tables at 80 columns
    out = Console(width=160, markup=False, emoji=False, highlight=False)


def print_error(message: object) -> None:
    """One line on stderr: wire or file text is never read as markup, newlines are folded."""
    text = " ".join(str(message).split())
    err.print(Text.assemble(("error:", "red"), " ", text), soft_wrap=True, highlight=False)


def _db_option(func):
    return click.option(
        "--db",
        "db_url",
        default=DEFAULT_DB,
        show_default=True,
        envvar="MIRRORSCOPE_DB",
        help="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db",
    )(func)


def _open_store(db_url: str, **kwargs: object):
    from mirrorscope.store.db import StoreError
    from mirrorscope.store.repository import Store

    try:
        return Store(db_url, **kwargs)
    except StoreError as exc:
        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)


@click.group()
@click.version_option(__version__, prog_name="mirrorscope")
def main() -> None:
    """mirrorscope: out-of-band API security sensor (pcap/SPAN -> API inventory and findings)."""


@main.command()
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(path_type=str))
@_db_option
@click.option("--force", is_flag=True, help="Re-ingest captures already recorded as complete.")
@click.option("--store-raw", is_flag=True, help="Store secrets unredacted (off by default).")
@click.option("--until", type=click.Choice(["decode", "tcp", "http", "analysis", "store"]),
              default="store",
              show_default=True, help="Last stage to run (for profiling).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The documented API (OpenAPI 3.0/3.1, YAML or JSON): adds shadow and zombie "
                   "endpoint findings.")
@click.option("--learn-first", "learn_seconds", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Learn the detection baseline from the first SECONDS of each capture "
                   "(packet time), then score the rest (instead of a stored baseline).")
@checksum_option
@click.option("--respond", "rules_path", type=click.Path(dir_okay=False, path_type=str),
              default=None, metavar="RULES.yaml",
              help="Run the automated-response rules on the database after the replay "
                   "(see `mirrorscope respond`).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Parse each capture in N processes (flows sharded by address pair); "
                   "analysis and the store stay in one, so results are identical.")
@alert_options
@origin_options
def replay(pcaps: tuple[str, ...], db_url: str, force: bool, store_raw: bool, until: str,
           no_progress: bool, spec_path: str | None, learn_seconds: float | None,
           checksum: str, rules_path: str | None, workers: int,
           alerts_jsonl: str | None, webhook: str | None, syslog: str | None,
           trusted_proxies: tuple[str, ...], internal_cidrs: tuple[str, ...],
           partner_cidrs: tuple[str, ...]) -> None:
    """Replay pcap/pcapng files (optionally gzip-compressed) into the database."""
    from mirrorscope.alerts import AlertError
    from mirrorscope.keys import KeyFileError
    from mirrorscope.pipeline import ReplayOptions
    from mirrorscope.pipeline import replay as run_replay
    from mirrorscope.store.db import StoreError

    spec = _read_spec(spec_path) if spec_path else None
    origin = origin_config(trusted_proxies, internal_cidrs, partner_cidrs)
    options = ReplayOptions(until=until, db_url=db_url, force=force, store_raw=store_raw,
                            spec=spec, learn_seconds=learn_seconds, alerts_jsonl=alerts_jsonl,
                            webhook=webhook, syslog=syslog, origin=origin, checksum=checksum,
                            workers=workers)
    if workers > 1 and until == "decode":
        print_error("--workers needs --until tcp or a later stage (decode has no flows to shard)")
        sys.exit(EXIT_BAD_INPUT)
    rules = _load_response_rules(rules_path) if rules_path else None
    show = not no_progress and err.is_terminal
    try:
        if show:
            stats = _replay_with_progress(list(pcaps), options)
        else:
            stats = run_replay(list(pcaps), options)
    except (StoreError, KeyFileError, AlertError) as exc:
        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)
    _print_summary(stats)
    for message in stats.errors:
        print_error(message)
    if rules is not None and until == "store":
        _respond_after_replay(db_url, rules)
    if stats.errors:
        sys.exit(EXIT_BAD_INPUT)


def _load_response_rules(path: str):
    """Response rules, checked before the replay starts (a typo must not cost a long run)."""
    from mirrorscope.responses import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)


def _respond_after_replay(db_url: str, rules) -> None:
    from mirrorscope.cli_respond import print_report
    from mirrorscope.responses import RulesError, run_responses
    from mirrorscope.store.db import StoreError

    try:
        print_report(run_responses(db_url, rules), out)
    except (RulesError, StoreError) as exc:
        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)


def _read_spec(path: str) -> dict:
    """A user's OpenAPI document, or a one-line error and exit code 2."""
    from mirrorscope.analysis.inventory_errors import InventoryError
    from mirrorscope.analysis.openapi import load_spec

    try:
        with open(path, encoding="utf-8") as handle:
            return load_spec(handle.read())
    except (OSError, UnicodeDecodeError, InventoryError) as exc:
        print_error(f"{path}: {exc}")
        sys.exit(EXIT_BAD_INPUT)


def _replay_with_progress(pcaps: list[str], options):
    from mirrorscope.pipeline import replay as run_replay

    columns = (
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[packets]:>9} pkts {task.fields[tx]:>7} tx "
                   "{task.fields[txs]:>7.0f} tx/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(p) -> None:
            task = tasks.get(p.source)
            if task is None:
                task = bar.add_task("replay", total=p.size or None, name=p.source, packets=0, tx=0,
                                    txs=0.0)
                tasks[p.source] = task
            elapsed = bar.tasks[task].elapsed or 1e-9
            bar.update(task, completed=p.bytes_read, packets=p.packets, tx=p.transactions,
                       txs=p.transactions / elapsed)

        return run_replay(pcaps, options, on_progress=update)


def _print_summary(stats) -> None:
    table = Table(title="replay summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for f in stats.files:
        state = "skipped (already ingested; --force to redo)" if f.skipped else (
            "damaged" if f.error else "ok")
        table.add_row(f"file {f.source}", state)
    rate = stats.packets / stats.seconds if stats.seconds else 0.0
    mbps = stats.bytes / stats.seconds / 1e6 if stats.seconds else 0.0
    table.add_row("packets", f"{stats.packets:,}")
    table.add_row("bytes", f"{stats.bytes:,}")
    table.add_row("tcp flows", f"{stats.flows:,}")
    table.add_row("http transactions", f"{stats.transactions:,}")
    table.add_row("gaps (bytes)", f"{stats.gaps:,} ({stats.gap_bytes:,})")
    table.add_row("endpoints", f"{stats.endpoints:,}")
    table.add_row("findings", f"{sum(stats.findings.values()):,}")
    table.add_row("time", f"{stats.seconds:.2f} s ({rate:,.0f} pkt/s, {mbps:.1f} MB/s)")
    out.print(table)
    if stats.anomalies:
        anomalies = Table(title="anomalies by kind")
        anomalies.add_column("kind")
        anomalies.add_column("count", justify="right")
        for kind, count in stats.anomalies.most_common():
            anomalies.add_row(kind, f"{count:,}")
        out.print(anomalies)


@main.command()
@_db_option
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True)
@click.option("--bodies", is_flag=True, help="Add base64 of the kept (decoded) body heads.")
@click.option("--limit", type=int, default=None, help="At most N transactions.")
def transactions(db_url: str, fmt: str, bodies: bool, limit: int | None) -> None:
    """List recorded HTTP transactions (JSONL is a stable public contract)."""
    store = _open_store(db_url, upgrade=False)
    try:
        rows = store.iter_transactions(limit=limit, with_bodies=bodies)
        if fmt == "jsonl":
            _print_jsonl(rows)
        else:
            _print_table(rows)
    finally:
        store.close()


def _print_jsonl(rows: Iterator[dict]) -> None:
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, ensure_ascii=True, separators=(",", ":")) + "\n")


def _print_table(rows: Iterator[dict]) -> None:
    table = Table(title="HTTP transactions")
    for name, justify in (("client", "left"), ("server", "left"), ("#", "right"),
                          ("method", "left"), ("host", "left"), ("uri", "left"),
                          ("status", "right"), ("req", "right"), ("resp", "right"),
                          ("anomalies", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    count = 0
    for row in rows:
        count += 1
        table.add_row(
            f"{row['client_ip']}:{row['client_port']}",
            f"{row['server_ip']}:{row['server_port']}",
            str(row["trans_depth"]),
            _safe(row["method"]),
            _safe(row["host"]),
            _safe(row["uri"], 80),
            "" if row["status"] is None else str(row["status"]),
            str(row["request_body_len"] or 0),
            str(row["response_body_len"] or 0),
            ",".join(row["anomalies"] or []),
        )
    out.print(table)
    out.print(f"{count} transaction(s)")


def _safe(value: object, width: int = 40) -> str:
    """Printable text for a terminal: wire data never carries escape sequences to it."""
    if value is None:
        return "-"
    text = str(value)
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@_db_option
def db_upgrade(db_url: str) -> None:
    """Migrate the database schema to the latest revision."""
    from mirrorscope.store.db import StoreError, make_engine
    from mirrorscope.store.migrate import upgrade

    try:
        engine = make_engine(db_url)
        upgrade(engine)
    except StoreError as exc:
        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)
    out.print("database schema is up to date")


def _register_analysis_commands() -> None:
    from mirrorscope.cli_analysis import (
        baseline_command,
        diff_command,
        findings_command,
        inventory_command,
        openapi_command,
    )
    from mirrorscope.cli_capture import capture_command
    from mirrorscope.cli_db import db_commands, prune_command

    for command in (inventory_command, openapi_command, diff_command, findings_command,
                    baseline_command, capture_command, prune_command):
        main.add_command(command)
    for command in db_commands:
        db.add_command(command)
    for module, attribute in REMEDIATION_COMMANDS:
        main.add_command(getattr(importlib.import_module(module), attribute))


# Remediation and shift-left commands (issue #9), one module each.
REMEDIATION_COMMANDS = (
    ("mirrorscope.cli_owners", "owners_command"),
    ("mirrorscope.cli_report", "report_command"),
    ("mirrorscope.cli_respond", "respond_command"),
    ("mirrorscope.cli_lint", "lint_command"),
    ("mirrorscope.cli_dast", "test_command"),
)


_register_analysis_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
