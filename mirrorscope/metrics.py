"""Prometheus text exposition (format 0.0.4) and a tiny HTTP server on 127.0.0.1.

No client library: the format is a handful of lines per metric
(https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_TYPES = ("counter", "gauge", "untyped")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricsError(ValueError):
    """A metric or label name that Prometheus would reject."""


@dataclass(slots=True)
class Metric:
    """One metric family: name, type, help and its samples (labels -> value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        """Append a sample; returns self for chaining."""
        self.samples.append((labels, value))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of ``metrics`` (one # HELP and # TYPE per family)."""
    lines: list[str] = []
    for metric in metrics:
        if not _NAME.match(metric.name):
            raise MetricsError(f"invalid metric name {metric.name!r}")
        if metric.kind not in METRIC_TYPES:
            raise MetricsError(f"invalid metric type {metric.kind!r}")
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            if labels:
                parts = []
                for key, label_value in labels.items():
                    if not _LABEL.match(key) or key.startswith("__"):
                        raise MetricsError(f"invalid label name {key!r}")
                    parts.append(f'{key}="{_escape_label(str(label_value))}"')
                lines.append(f"{metric.name}{{{','.join(parts)}}} {_number(value)}")
            else:
                lines.append(f"{metric.name} {_number(value)}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``GET /metrics`` from a provider callable on 127.0.0.1, in a daemon thread."""

    def __init__(self, port: int, provider: Callable[[], str], host: str = "127.0.0.1") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the http.server API
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                try:
                    body = provider().encode()
                except Exception:  # a scrape must not kill the thread
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    @property
    def socket(self) -> socket.socket:
        """The listening socket (forked children close their inherited copy)."""
        return self._server.socket

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()
