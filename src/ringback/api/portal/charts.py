"""Pictures drawn on the server as SVG (no script, no external resources): a recording's
waveform and a bar chart of warnings played per day. Pure functions of their data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np


def waveform_svg(pcm: bytes, title: str, width: int = 600, height: int = 80) -> str:
    """The envelope (min/max per column) of 16-bit mono PCM, as an SVG image."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    columns = width // 2
    mid = height / 2
    points_top: list[str] = []
    points_bottom: list[str] = []
    if samples.size:
        chunks = np.array_split(samples / 32768.0, min(columns, samples.size))
        step = width / len(chunks)
        for i, chunk in enumerate(chunks):
            x = round(i * step + step / 2, 1)
            hi = float(chunk.max()) if chunk.size else 0.0
            lo = float(chunk.min()) if chunk.size else 0.0
            points_top.append(f"{x},{round(mid - max(hi, 0.0) * (mid - 2) - 0.5, 1)}")
            points_bottom.append(f"{x},{round(mid - min(lo, 0.0) * (mid - 2) + 0.5, 1)}")
    outline = " ".join(points_top + points_bottom[::-1])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#f3f6f9"/>'
        f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#9aa7b4" stroke-width="1"/>'
        f'<polygon points="{outline}" fill="#1f5f99"/>'
        "</svg>"
    )


@dataclass(frozen=True)
class Bar:
    label: str  # the day, as the axis shows it
    completed: int
    cancelled: int


def plays_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    completed_label: str,
    cancelled_label: str,
    width: int = 720,
    height: int = 260,
) -> str:
    """Stacked bars per day (completed below, cancelled above), with a y axis and a legend.
    Colours are told apart by lightness as well as hue; the page also has the numbers as a
    table."""
    left, right, top, bottom = 44, 8, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((b.completed + b.cancelled for b in bars), default=0)
    scale_max = _nice_ceiling(peak)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="chart-title">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    for i in range(5):  # horizontal grid lines with their values
        value = scale_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{value:g}</text>"
        )
    n = max(len(bars), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1.0)
    label_every = max(1, round(n / 8))
    for i, b in enumerate(bars):
        x = left + i * slot + (slot - bar_w) / 2
        h_done = plot_h * b.completed / scale_max if scale_max else 0
        h_cancel = plot_h * b.cancelled / scale_max if scale_max else 0
        base = top + plot_h
        if b.completed:
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h_done:.1f}" width="{bar_w:.1f}" '
                f'height="{h_done:.1f}" class="completed"><title>{escape(b.label)}: '
                f"{escape(completed_label)} {b.completed}</title></rect>"
            )
        if b.cancelled:
            parts.append(
                f'<rect x="{x:.1f}" y="{base - h_done - h_cancel:.1f}" width="{bar_w:.1f}" '
                f'height="{h_cancel:.1f}" class="cancelled"><title>{escape(b.label)}: '
                f"{escape(cancelled_label)} {b.cancelled}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'class="axis">{escape(b.label)}</text>'
            )
    parts.append(
        f'<rect x="{left}" y="6" width="12" height="12" class="completed"/>'
        f'<text x="{left + 18}" y="16" class="legend">{escape(completed_label)}</text>'
        f'<rect x="{left + 160}" y="6" width="12" height="12" class="cancelled"/>'
        f'<text x="{left + 178}" y="16" class="legend">{escape(cancelled_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: int) -> float:
    """The top of the axis: four whole-number steps of 1, 2, 3 or 5 times a power of ten."""
    if value <= 4:
        return 4.0
    magnitude = 1
    while True:
        for step in (1, 2, 3, 5):
            if 4 * step * magnitude >= value:
                return float(4 * step * magnitude)
        magnitude *= 10
