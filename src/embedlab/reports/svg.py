"""Inline SVG plots for self-contained HTML reports (no scripts, fonts or files)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PALETTE = ("#2a6fdb", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d")


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    y_low: float | None = None
    y_high: float | None = None


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def scatter(
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    front: Sequence[str] = (),
    log_x: bool = True,
    width: int = 680,
    height: int = 380,
) -> str:
    """Scatter with optional vertical error bars and a line through the ``front`` points."""
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 60, 170, 20, 45

    def tx(v: float) -> float:
        return math.log10(max(v, 1e-6)) if log_x else v

    xs = [tx(p.x) for p in points]
    ys = [v for p in points for v in (p.y, p.y_low, p.y_high) if v is not None]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x0, x1 = (x0 - 0.5, x1 + 0.5) if x1 - x0 < 1e-9 else (x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))
    y0, y1 = (y0 - 0.05, y1 + 0.05) if y1 - y0 < 1e-9 else (y0 - 0.08 * (y1 - y0), y1 + 0.08 * (y1 - y0))

    def sx(v: float) -> float:
        return pad_l + (tx(v) - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(v: float) -> float:
        return height - pad_b - (v - y0) / (y1 - y0) * (height - pad_t - pad_b)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(y_label)} vs {html.escape(x_label)}">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
        'fill="none" stroke="#999"/>',
    ]
    for yv in _ticks(y0, y1):
        out.append(f'<text x="{pad_l - 5}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{yv:.3f}</text>')
    for xv in _ticks(x0, x1):
        value = 10**xv if log_x else xv
        px = pad_l + (xv - x0) / (x1 - x0) * (width - pad_l - pad_r)
        out.append(
            f'<text x="{px:.1f}" y="{height - pad_b + 14}" font-size="10" text-anchor="middle">{value:.3g}</text>'
        )
    by_label = {p.label: p for p in points}
    line = [by_label[name] for name in front if name in by_label]
    if len(line) > 1:
        coords = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in sorted(line, key=lambda p: p.x))
        out.append(f'<polyline class="pareto" points="{coords}" fill="none" stroke="#999" stroke-dasharray="5,4"/>')
    for i, p in enumerate(points):
        color = PALETTE[i % len(PALETTE)]
        if p.y_low is not None and p.y_high is not None:
            out.append(
                f'<line x1="{sx(p.x):.1f}" x2="{sx(p.x):.1f}" y1="{sy(p.y_low):.1f}" y2="{sy(p.y_high):.1f}" '
                f'stroke="{color}" stroke-width="1.5"/>'
            )
        out.append(
            f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="5" fill="{color}">'
            f"<title>{html.escape(p.label)}: {p.y:.4f} at {p.x:.3g}</title></circle>"
        )
        out.append(f'<text x="{sx(p.x) + 8:.1f}" y="{sy(p.y) + 4:.1f}" font-size="11">{html.escape(p.label)}</text>')
    mid_y = (pad_t + height - pad_b) / 2
    out.append(
        f'<text x="{(pad_l + width - pad_r) / 2}" y="{height - 8}" font-size="12" text-anchor="middle">'
        f"{html.escape(x_label)}{' (log scale)' if log_x else ''}</text>"
    )
    out.append(
        f'<text x="14" y="{mid_y}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {mid_y})">'
        f"{html.escape(y_label)}</text></svg>"
    )
    return "".join(out)


def grouped_bars(
    groups: Sequence[str], series: Mapping[str, Sequence[float]], *, y_label: str, width: int = 680, height: int = 320
) -> str:
    """One group of bars per entry of ``groups`` (e.g. datasets), one bar per series (e.g. model)."""
    if not groups or not series:
        return ""
    pad_l, pad_r, pad_t, pad_b = 50, 170, 15, 40
    top = max((v for values in series.values() for v in values), default=1.0) or 1.0
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / len(series)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(y_label)} per dataset">',
        f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{pad_t + plot_h}" y2="{pad_t + plot_h}" stroke="#999"/>',
    ]
    for gi, group in enumerate(groups):
        gx = pad_l + gi * group_w + group_w * 0.1
        for si, (name, values) in enumerate(series.items()):
            h = values[gi] / top * plot_h
            out.append(
                f'<rect x="{gx + si * bar_w:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}"><title>{html.escape(name)} on '
                f"{html.escape(group)}: {values[gi]:.4f}</title></rect>"
            )
        out.append(
            f'<text x="{pad_l + (gi + 0.5) * group_w:.1f}" y="{height - pad_b + 16}" font-size="11" '
            f'text-anchor="middle">{html.escape(group)}</text>'
        )
    for si, name in enumerate(series):
        y = pad_t + 12 + si * 16
        out.append(
            f'<rect x="{width - pad_r + 10}" y="{y - 9}" width="10" height="10" '
            f'fill="{PALETTE[si % len(PALETTE)]}"/><text x="{width - pad_r + 25}" y="{y}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
    out.append(
        f'<text x="12" y="{pad_t + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad_t + plot_h / 2})">{html.escape(y_label)}</text></svg>'
    )
    return "".join(out)
