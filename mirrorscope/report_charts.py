"""Small pure SVG charts for the HTML report: bars, horizontal bars, time series.

Every function returns one inline ``<svg>`` element as text.  Labels may be wire-derived
(paths, hosts), so every piece of text is HTML-escaped here; colours must be ``#rrggbb``
constants (anything else is refused, so a colour can never smuggle markup).  No style
attributes are emitted: the report's Content-Security-Policy only allows its own
stylesheet, and presentation attributes (fill, font-size) are not styles.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
AXIS = "#666666"
GRID = "#dddddd"
TEXT = "#222222"
MAX_LABEL_CHARS = 48
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
# Invisible or direction-changing characters a label could use to disguise itself.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, slots=True)
class Series:
    """One named series of a time chart: a value per bucket, drawn in one colour."""

    name: str
    values: Sequence[float]
    colour: str


def escape(value: object, limit: int | None = None) -> str:
    """Text safe inside HTML/SVG content and attributes; hidden characters made visible."""
    text = _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", str(value))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return html.escape(text, quote=True)


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    colours: Sequence[str] | None = None,
    width: int = 560,
    height: int = 240,
) -> str:
    """Vertical bars, one per (label, value), in the given order."""
    if not items or not any(value > 0 for _, value in items):
        return empty_chart(title, width=width, height=height)
    left, right, top, bottom = 44, 10, 28, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max(value for _, value in items))
    slot = plot_w / len(items)
    parts = [_open(width, height, title), *_y_axis(left, top, plot_w, plot_h, top_value)]
    for index, (label, value) in enumerate(items):
        colour = _colour(colours, index)
        bar_h = plot_h * value / top_value
        x = left + index * slot + slot * 0.15
        y = top + plot_h - bar_h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}" '
            f'fill="{colour}"><title>{escape(label)}: {_number(value)}</title></rect>'
        )
        centre = left + index * slot + slot / 2
        parts.append(
            f'<text x="{centre:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle" '
            f'fill="{TEXT}">{_number(value)}</text>'
        )
        parts.append(
            f'<text x="{centre:.1f}" y="{top + plot_h + 16:.1f}" font-size="11" '
            f'text-anchor="middle" fill="{TEXT}">{escape(label, 14)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    colours: Sequence[str] | None = None,
    width: int = 760,
    bar_height: int = 20,
    label_width: int = 330,
) -> str:
    """Horizontal bars, one row per (label, value), in the given order (ranked lists)."""
    if not items or not any(value > 0 for _, value in items):
        return empty_chart(title, width=width, height=120)
    top, gap = 28, 6
    height = top + len(items) * (bar_height + gap) + 10
    plot_w = width - label_width - 60
    top_value = max(value for _, value in items) or 1
    parts = [_open(width, height, title)]
    for index, (label, value) in enumerate(items):
        y = top + index * (bar_height + gap)
        bar_w = plot_w * max(value, 0) / top_value
        colour = _colour(colours, index)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar_height * 0.72:.1f}" font-size="11" '
            f'text-anchor="end" fill="{TEXT}">{escape(label, MAX_LABEL_CHARS)}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{bar_w:.1f}" height="{bar_height}" '
            f'fill="{colour}"><title>{escape(label)}: {_number(value)}</title></rect>'
        )
        parts.append(
            f'<text x="{label_width + bar_w + 4:.1f}" y="{y + bar_height * 0.72:.1f}" '
            f'font-size="11" fill="{TEXT}">{_number(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def time_series(
    start: float,
    bucket_seconds: float,
    series: Sequence[Series],
    *,
    title: str,
    style: str = "bars",
    width: int = 760,
    height: int = 260,
) -> str:
    """Values per time bucket: stacked bars (style="bars") or one line per series ("line").

    Bucket i starts at start + i * bucket_seconds (Unix time; axis labels are UTC).
    """
    if style not in ("bars", "line"):
        raise ValueError(f"style must be 'bars' or 'line', not {style!r}")
    if not bucket_seconds > 0:
        raise ValueError("bucket_seconds must be > 0")
    buckets = max((len(s.values) for s in series), default=0)
    totals = [sum(_at(s.values, i) for s in series) for i in range(buckets)]
    if not buckets or not any(total > 0 for total in totals):
        return empty_chart(title, width=width, height=height)
    left, right, top, bottom = 48, 10, 28, 62
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(totals) if style == "bars" else max(max(s.values, default=0) for s in series)
    top_value = _nice_max(peak)
    slot = plot_w / buckets
    parts = [_open(width, height, title), *_y_axis(left, top, plot_w, plot_h, top_value)]
    if style == "bars":
        parts += _stacked_bars(series, buckets, left, top, plot_h, slot, top_value,
                               start, bucket_seconds)
    else:
        parts += _lines(series, left, top, plot_h, slot, top_value)
    parts += _time_axis(start, bucket_seconds, buckets, left, top + plot_h, slot)
    parts += _legend(series, left, height - 12)
    parts.append("</svg>")
    return "".join(parts)


def empty_chart(title: str, *, width: int = 560, height: int = 120, message: str = "no data"
                ) -> str:
    """A framed placeholder saying there is nothing to draw."""
    return (
        f"{_open(width, height, title)}"
        f'<rect x="1" y="24" width="{width - 2}" height="{height - 26}" fill="none" '
        f'stroke="{GRID}"/>'
        f'<text x="{width / 2:.0f}" y="{(height + 24) / 2:.0f}" font-size="13" '
        f'text-anchor="middle" fill="{AXIS}">{escape(message)}</text></svg>'
    )


# --------------------------------------------------------------------------- pieces


def _open(width: int, height: int, title: str) -> str:
    label = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
        f'<text x="0" y="16" font-size="13" font-weight="bold" fill="{TEXT}">{label}</text>'
    )


def _y_axis(left: int, top: int, plot_w: int, plot_h: int, top_value: float) -> list[str]:
    parts = []
    for step in range(5):
        value = top_value * step / 4
        y = top + plot_h - plot_h * step / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                     f'fill="{AXIS}">{_number(value)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" '
                 f'stroke="{AXIS}"/>')
    return parts


def _stacked_bars(series: Sequence[Series], buckets: int, left: int, top: int, plot_h: int,
                  slot: float, top_value: float, start: float, bucket_seconds: float
                  ) -> list[str]:
    parts = []
    bar_w = max(slot * 0.8, 1.0)
    for index in range(buckets):
        base = top + plot_h
        when = _when(start + index * bucket_seconds, bucket_seconds)
        for one in series:
            value = _at(one.values, index)
            if value <= 0:
                continue
            bar_h = plot_h * value / top_value
            base -= bar_h
            parts.append(
                f'<rect x="{left + index * slot + slot * 0.1:.1f}" y="{base:.1f}" '
                f'width="{bar_w:.1f}" height="{bar_h:.1f}" fill="{_checked(one.colour)}">'
                f"<title>{escape(when)} {escape(one.name)}: {_number(value)}</title></rect>"
            )
    return parts


def _lines(series: Sequence[Series], left: int, top: int, plot_h: int, slot: float,
           top_value: float) -> list[str]:
    parts = []
    for one in series:
        points = " ".join(
            f"{left + (i + 0.5) * slot:.1f},{top + plot_h - plot_h * v / top_value:.1f}"
            for i, v in enumerate(one.values)
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="{_checked(one.colour)}" '
                     f'stroke-width="2"><title>{escape(one.name)}</title></polyline>')
    return parts


def _time_axis(start: float, bucket_seconds: float, buckets: int, left: int, base_y: float,
               slot: float) -> list[str]:
    parts = [f'<line x1="{left}" y1="{base_y:.1f}" x2="{left + slot * buckets:.1f}" '
             f'y2="{base_y:.1f}" stroke="{AXIS}"/>']
    ticks = min(buckets, 6)
    for tick in range(ticks):
        index = round(tick * (buckets - 1) / max(ticks - 1, 1))
        x = left + (index + 0.5) * slot
        label = _when(start + index * bucket_seconds, bucket_seconds)
        parts.append(f'<line x1="{x:.1f}" y1="{base_y:.1f}" x2="{x:.1f}" y2="{base_y + 4:.1f}" '
                     f'stroke="{AXIS}"/>')
        # The last label ends at its tick so it stays inside the chart.
        anchor = "end" if tick == ticks - 1 and ticks > 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{base_y + 16:.1f}" font-size="10" '
                     f'text-anchor="{anchor}" fill="{AXIS}">{escape(label)}</text>')
    parts.append(f'<text x="{left + slot * buckets:.1f}" y="{base_y + 30:.1f}" font-size="10" '
                 f'text-anchor="end" fill="{AXIS}">UTC, {escape(_duration(bucket_seconds))} '
                 f"per bar</text>")
    return parts


def _legend(series: Sequence[Series], left: int, y: float) -> list[str]:
    parts, x = [], float(left)
    for one in series:
        if not any(value > 0 for value in one.values):
            continue
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" '
                     f'fill="{_checked(one.colour)}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" font-size="11" fill="{TEXT}">'
                     f"{escape(one.name, 24)}</text>")
        x += 24 + 7 * min(len(one.name), 24)
    return parts


# --------------------------------------------------------------------------- helpers


def _at(values: Sequence[float], index: int) -> float:
    return values[index] if index < len(values) else 0.0


def _colour(colours: Sequence[str] | None, index: int) -> str:
    palette = colours if colours else PALETTE
    return _checked(palette[index % len(palette)])


def _checked(colour: str) -> str:
    """A #rrggbb colour, or ValueError: colours go into attributes unescaped."""
    if not _COLOUR.fullmatch(colour):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    return colour


def _nice_max(value: float) -> float:
    """The smallest 1/2/4/8 x 10^n at or above value (quarter ticks stay round)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 4, 8, 10):
        if value <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _when(ts: float, bucket_seconds: float) -> str:
    """A bucket start as UTC text, as precise as the bucket width needs."""
    if bucket_seconds < 1:
        millis = round(ts * 1000)
        return time.strftime("%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}"
    moment = time.gmtime(ts)
    if bucket_seconds < 60:
        return time.strftime("%H:%M:%S", moment)
    if bucket_seconds < 86400:
        return time.strftime("%m-%d %H:%M", moment)
    return time.strftime("%Y-%m-%d", moment)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds * 1000:g} ms"
