"""Prometheus text exposition and the 127.0.0.1 metrics server."""

from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest

from mirrorscope.metrics import Metric, MetricsError, MetricsServer, render


def test_render_follows_the_text_format() -> None:
    """HELP and TYPE once per family, then one line per sample, labels in order."""
    text = render([
        Metric("ms_packets_total", "counter", "Frames seen.")
        .add(10, iface="eth1", worker="0").add(3, iface="eth1", worker="1"),
        Metric("ms_up", "gauge", "Running.").add(1),
    ])
    assert text == (
        "# HELP ms_packets_total Frames seen.\n"
        "# TYPE ms_packets_total counter\n"
        'ms_packets_total{iface="eth1",worker="0"} 10\n'
        'ms_packets_total{iface="eth1",worker="1"} 3\n'
        "# HELP ms_up Running.\n"
        "# TYPE ms_up gauge\n"
        "ms_up 1\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    """Backslash, double quote and newline are escaped as the format requires."""
    text = render([Metric("m", "gauge", "two\nlines \\ here").add(0.5, v='a"b\\c\nd')])
    assert "# HELP m two\\nlines \\\\ here\n" in text
    assert 'm{v="a\\"b\\\\c\\nd"} 0.5\n' in text


def test_special_values() -> None:
    """NaN and infinities use the format's spellings."""
    text = render([Metric("m", "gauge", "x").add(math.nan, k="a").add(math.inf, k="b")
                   .add(-math.inf, k="c")])
    assert 'm{k="a"} NaN' in text and 'm{k="b"} +Inf' in text and 'm{k="c"} -Inf' in text


@pytest.mark.parametrize("metric", [
    Metric("2bad", "gauge", "x"),
    Metric("ok", "histogramish", "x"),
    Metric("ok", "gauge", "x").add(1, **{"bad-label": "v"}),
    Metric("ok", "gauge", "x").add(1, __reserved="v"),
])
def test_invalid_names_are_refused(metric: Metric) -> None:
    """Names Prometheus would reject never reach a scrape."""
    with pytest.raises(MetricsError):
        render([metric])


@pytest.mark.network
def test_server_answers_on_loopback() -> None:
    """GET /metrics gives the provider's text with the exposition content type; else 404."""
    server = MetricsServer(0, lambda: "x 1\n")
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert r.read() == b"x 1\n"
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/admin", timeout=5)
        assert info.value.code == 404
        assert server.socket.getsockname()[0] == "127.0.0.1"
    finally:
        server.close()
