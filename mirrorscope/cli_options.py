"""Option groups shared by `mirrorscope replay` and `mirrorscope capture`.

One definition each, so the offline and the live sensor take the same words for the
same policy (alert sinks, client origin, TCP checksums).
"""

from __future__ import annotations

import sys

import click

EXIT_BAD_INPUT = 2


def alert_options(func):
    """--alerts-jsonl / --webhook / --syslog."""
    func = click.option("--syslog", default=None, metavar="HOST:PORT|/dev/log",
                        help="Send each finding as an RFC 5424 line (UDP or a unix socket).")(func)
    func = click.option("--webhook", default=None, metavar="URL",
                        help="POST each finding as JSON (retries, bounded queue).")(func)
    return click.option("--alerts-jsonl", type=click.Path(dir_okay=False, path_type=str),
                        default=None, metavar="FILE",
                        help="Append each finding as one JSON line (file created 0600).")(func)


def origin_options(func):
    """--trusted-proxy / --internal-cidr / --partner-cidr."""
    func = click.option("--partner-cidr", "partner_cidrs", multiple=True, metavar="NAME=CIDR",
                        help="A partner's network (repeatable): its clients are classed "
                             "'partner'.")(func)
    func = click.option("--internal-cidr", "internal_cidrs", multiple=True, metavar="CIDR",
                        help="An internal network, in addition to RFC 1918, ULA and loopback "
                             "(repeatable).")(func)
    return click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR",
                        help="A proxy whose X-Forwarded-For / Forwarded / X-Real-IP headers are "
                             "believed (repeatable); without one, the TCP peer is the "
                             "client.")(func)


def checksum_option(func):
    """--checksum auto|strict|off (capture/checksum.py has the policy)."""
    return click.option(
        "--checksum", type=click.Choice(["auto", "strict", "off"]), default="auto",
        show_default=True,
        help="TCP checksums: auto keeps offloaded senders' segments and flags other bad "
             "ones; strict drops every bad segment (insertion-proof); off skips the check.",
    )(func)


def origin_config(trusted_proxies: tuple[str, ...] = (), internal_cidrs: tuple[str, ...] = (),
                  partner_cidrs: tuple[str, ...] = ()):
    """The OriginConfig of the origin options, or a one-line error and exit code 2."""
    from mirrorscope.analysis.origin import (
        DEFAULT_INTERNAL_NETWORKS,
        OriginConfig,
        OriginError,
        parse_partner,
    )

    try:
        return OriginConfig(
            trusted_proxies=tuple(trusted_proxies),
            internal_cidrs=DEFAULT_INTERNAL_NETWORKS + tuple(internal_cidrs),
            partner_cidrs=tuple(parse_partner(text) for text in partner_cidrs))
    except OriginError as exc:
        from mirrorscope.cli import print_error

        print_error(exc)
        sys.exit(EXIT_BAD_INPUT)
