"""`mirrorscope capture`: the live daemon's command line (registered by mirrorscope.cli)."""

from __future__ import annotations

import logging
import sys

import click

from mirrorscope.cli_options import (
    EXIT_BAD_INPUT,
    alert_options,
    checksum_option,
    origin_config,
    origin_options,
)

DEFAULT_DB = "sqlite:///mirrorscope.db"


@click.command("capture")
@click.option("-i", "--interface", "iface", required=True,
              help="Interface receiving the mirror (SPAN/TAP port, VXLAN/Geneve/GRE target).")
@click.option("--bpf", "bpf_expr", default="", metavar="EXPR",
              help="tcpdump-syntax filter applied in the kernel, e.g. 'tcp or udp port 4789'.")
@click.option("--bpf-file", type=click.Path(dir_okay=False), default=None,
              help="Read the filter from a file (re-read on SIGHUP).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; the kernel's fanout hash keeps each flow in one.")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True, envvar="MIRRORSCOPE_DB",
              help="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after S seconds (default: run until SIGTERM/SIGINT).")
@click.option("--user", default=None,
              help="Drop to this user (and its group) once the sockets are open.")
@click.option("--allow-root", is_flag=True, help="Parse packets as root (not recommended).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=262144, show_default=True,
              help="Bytes kept per frame.")
@click.option("--no-promisc", is_flag=True, help="Do not put the interface in promiscuous mode.")
@click.option("--capture-mode", type=click.Choice(["ring", "socket"]), default="ring",
              show_default=True, help="TPACKET_V3 mmap ring, or a plain socket.")
@click.option("--ring-mb", type=click.IntRange(2, 4096), default=64, show_default=True,
              help="Kernel buffer per worker (ring, or socket receive buffer), MiB.")
@click.option("--health-interval", type=click.FloatRange(min=0.5), default=10.0,
              show_default=True, help="Seconds between health log lines.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=1.0), default=15.0,
              show_default=True, help="Seconds a stop may take before stragglers are killed.")
@click.option("--store-raw", is_flag=True, help="Store secrets unredacted (off by default).")
@click.option("--learn-first", "learn_seconds", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Learn the detection baseline from the first SECONDS, then score.")
@click.option("--refit-every", "refit_seconds", type=click.FloatRange(min=1), default=None,
              metavar="SECONDS",
              help="Refit the baseline every SECONDS on recent traffic that was not flagged.")
@checksum_option
@alert_options
@origin_options
def capture_command(iface: str, bpf_expr: str, bpf_file: str | None, workers: int, db_url: str,
                    duration: float | None, user: str | None, allow_root: bool,
                    metrics_port: int | None, snaplen: int, no_promisc: bool,
                    capture_mode: str, ring_mb: int, health_interval: float,
                    shutdown_timeout: float, store_raw: bool, learn_seconds: float | None,
                    refit_seconds: float | None, checksum: str, alerts_jsonl: str | None,
                    webhook: str | None, syslog: str | None, trusted_proxies: tuple[str, ...],
                    internal_cidrs: tuple[str, ...], partner_cidrs: tuple[str, ...]) -> None:
    """Capture live traffic from an interface into the database (Linux, AF_PACKET)."""
    from mirrorscope.alerts import AlertError, check_sink_options
    from mirrorscope.capture.live import CaptureConfig
    from mirrorscope.daemon import DaemonConfig, DaemonError, run_daemon

    try:
        check_sink_options(alerts_jsonl, webhook, syslog)
    except AlertError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    origin = origin_config(trusted_proxies, internal_cidrs, partner_cidrs)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s mirrorscope[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("mirrorscope").setLevel(logging.INFO)
    config = DaemonConfig(
        capture=CaptureConfig(iface=iface, bpf=bpf_expr, snaplen=snaplen,
                              promisc=not no_promisc, ring=capture_mode == "ring",
                              ring_mb=ring_mb, rcvbuf_mb=ring_mb),
        workers=workers, db_url=db_url, duration=duration, user=user, allow_root=allow_root,
        metrics_port=metrics_port, health_interval=health_interval,
        shutdown_timeout=shutdown_timeout, store_raw=store_raw, bpf_file=bpf_file,
        alerts=(alerts_jsonl, webhook, syslog), learn_seconds=learn_seconds,
        refit_seconds=refit_seconds, checksum=checksum, origin=origin,
    )
    try:
        code = run_daemon(config)
    except DaemonError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    capture_command()
