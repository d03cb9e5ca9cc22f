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
    x_limit: tuple[float, str] | None = None,
    y_limit: tuple[float, str] | None = None,
    min_y_span: float = 0.0,
    width: int = 680,
    height: int = 380,
) -> str:
    """Scatter with optional vertical error bars and a line through the ``front`` points.

    Honest axes: the y range covers every interval shown and at least ``min_y_span`` (so a
    0.002 difference of nDCG@10 does not fill the plot as if it were 0.2); the axis says where it
    starts.  ``x_limit`` / ``y_limit``: a constraint ``(value, label)`` drawn as a dashed line.
    Labels that would overlap are moved apart vertically.
    """
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 60, 170, 20, 45

    def tx(v: float) -> float:
        return math.log10(max(v, 1e-6)) if log_x else v

    xs = [tx(p.x) for p in points] + ([tx(x_limit[0])] if x_limit else [])
    ys = [v for p in points for v in (p.y, p.y_low, p.y_high) if v is not None] + ([y_limit[0]] if y_limit else [])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 - y0 < min_y_span:  # widen around the middle, never below 0 for a non-negative measure
        middle = (y0 + y1) / 2
        y0 = max(0.0, middle - min_y_span / 2) if y0 >= 0 else middle - min_y_span / 2
        y1 = y0 + min_y_span
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
    if x_limit is not None:
        lx = sx(x_limit[0])
        out.append(
            f'<line class="constraint" x1="{lx:.1f}" x2="{lx:.1f}" y1="{pad_t}" y2="{height - pad_b}" '
            'stroke="#c92a2a" stroke-dasharray="6,3"/>'
            f'<text x="{lx + 4:.1f}" y="{pad_t + 12}" font-size="10" fill="#c92a2a">{html.escape(x_limit[1])}</text>'
        )
    if y_limit is not None:
        ly = sy(y_limit[0])
        out.append(
            f'<line class="constraint" x1="{pad_l}" x2="{width - pad_r}" y1="{ly:.1f}" y2="{ly:.1f}" '
            'stroke="#c92a2a" stroke-dasharray="6,3"/>'
            f'<text x="{pad_l + 4}" y="{ly - 4:.1f}" font-size="10" fill="#c92a2a">{html.escape(y_limit[1])}</text>'
        )
    label_y = _spread([sy(p.y) + 4 for p in points], [sx(p.x) for p in points], [len(p.label) for p in points])
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
        out.append(
            f'<text class="label" x="{sx(p.x) + 8:.1f}" y="{label_y[i]:.1f}" font-size="11">'
            f"{html.escape(p.label)}</text>"
        )
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


def _spread(ys: list[float], xs: list[float], chars: list[int], *, line: float = 12.0) -> list[float]:
    """Label baselines moved apart so that no two labels overlap: a label (about 6.5 px per
    character wide, ``line`` px tall) that collides with one placed before it goes below it."""
    placed: list[tuple[float, float, float]] = []  # (x_start, x_end, y)
    out = list(ys)
    for i in sorted(range(len(ys)), key=lambda i: (ys[i], xs[i])):
        x_start, x_end, y = xs[i] + 8, xs[i] + 8 + 6.5 * chars[i], ys[i]
        moved = True
        while moved:
            moved = False
            for a, b, py in placed:
                if a < x_end and x_start < b and abs(py - y) < line:
                    y, moved = py + line, True
        placed.append((x_start, x_end, y))
        out[i] = y
    return out


def _nice_ticks(top: float, n: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 x 10^k) up to at least ``top``."""
    raw = top / (n - 1) if top > 0 else 1.0
    scale = 10 ** math.floor(math.log10(raw))
    step = next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    y_label: str,
    errors: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    width: int = 680,
    height: int = 320,
) -> str:
    """One group of bars per entry of ``groups`` (e.g. datasets), one bar per series (e.g. model).

    Bars start at 0 on a labelled value axis (a bar's length is its value); ``errors[name][i]``:
    an interval (low, high) drawn as an error bar on that bar."""
    if not groups or not series:
        return ""
    pad_l, pad_r, pad_t, pad_b = 50, 170, 15, 40
    highs = [hi for values in (errors or {}).values() for _, hi in values]
    ticks = _nice_ticks(max([v for values in series.values() for v in values] + highs, default=1.0) or 1.0)
    top = ticks[-1]
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / len(series)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(y_label)} per dataset">',
        f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{pad_t + plot_h}" y2="{pad_t + plot_h}" stroke="#999"/>',
        f'<line class="value-axis" x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{pad_t + plot_h}" stroke="#999"/>',
    ]
    for value in ticks:
        ty = pad_t + plot_h - value / top * plot_h
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#eee"/>'
            f'<text class="tick" x="{pad_l - 5}" y="{ty + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}</text>'
        )
    for gi, group in enumerate(groups):
        gx = pad_l + gi * group_w + group_w * 0.1
        for si, (name, values) in enumerate(series.items()):
            h = values[gi] / top * plot_h
            out.append(
                f'<rect x="{gx + si * bar_w:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}"><title>{html.escape(name)} on '
                f"{html.escape(group)}: {values[gi]:.4f}</title></rect>"
            )
            if errors and name in errors:
                low, high = errors[name][gi]
                cx = gx + si * bar_w + bar_w * 0.45
                y_low, y_high = pad_t + plot_h - low / top * plot_h, pad_t + plot_h - high / top * plot_h
                out.append(
                    f'<path class="error-bar" d="M{cx:.1f},{y_low:.1f}V{y_high:.1f}M{cx - 3:.1f},{y_low:.1f}'
                    f'h6M{cx - 3:.1f},{y_high:.1f}h6" stroke="#222" fill="none"/>'
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


def lines(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    y_label: str,
    x_labels: Mapping[float, str] | None = None,
    width: int = 680,
    height: int = 260,
) -> str:
    """One polyline per series of ``(x, y)`` points (a time series per arm); ``None`` y values break
    the line (a window without data).  ``x_labels``: tick text for some x values (e.g. window start)."""
    points = [(x, y) for values in series.values() for x, y in values if y is not None and math.isfinite(y)]
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 60, 170, 15, 40
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def sx(x: float) -> float:
        return pad_l + (x - x_lo) / x_span * plot_w

    def sy(y: float) -> float:
        return pad_t + plot_h - (y - y_lo) / y_span * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lines" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(y_label)} over time">',
        f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{pad_t + plot_h}" y2="{pad_t + plot_h}" stroke="#999"/>',
        f'<line x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{pad_t + plot_h}" stroke="#999"/>',
    ]
    for value in _ticks(y_lo, y_hi):
        out.append(f'<text x="{pad_l - 6}" y="{sy(value) + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}</text>')
    shown = sorted((x_labels or {}).items())
    step = max(1, len(shown) // 6)
    for x, text in shown[::step]:
        out.append(
            f'<text x="{sx(x):.1f}" y="{height - pad_b + 16}" font-size="10" text-anchor="middle">'
            f"{html.escape(text)}</text>"
        )
    for si, (name, values) in enumerate(series.items()):
        colour = PALETTE[si % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in sorted(values, key=lambda p: p[0]):
            if y is None or not math.isfinite(y):
                runs.append([])
            else:
                runs[-1].append((x, y))
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
                out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            for x, y in run:
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>'
                    f"{html.escape(name)}: {y:.4g}</title></circle>"
                )
        y = pad_t + 12 + si * 16
        out.append(
            f'<rect x="{width - pad_r + 10}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{width - pad_r + 25}" y="{y}" font-size="11">{html.escape(name)}</text>'
        )
    out.append(
        f'<text x="12" y="{pad_t + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad_t + plot_h / 2})">{html.escape(y_label)}</text></svg>'
    )
    return "".join(out)
