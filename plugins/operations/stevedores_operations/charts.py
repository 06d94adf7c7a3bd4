"""Server-rendered SVG charts (no script, no inline style: they pass a strict CSP)."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 260
LEFT, RIGHT, TOP, BOTTOM = 50, 10, 16, 30
COLOURS = {"discharge": "#0b6fa4", "load": "#b45309"}


def cumulative_chart(series: Sequence[tuple[datetime, str, int]], planned: Mapping[str, int],
                     now: datetime, title: str) -> Markup:
    """Cumulative units over time per direction, with the planned total as a dashed line."""
    directions = [d for d in ("discharge", "load") if planned.get(d) or any(s[1] == d for s in series)]
    if not series:
        return Markup('<p class="muted">No tallies yet: the chart appears with the first one.</p>')
    start = series[0][0]
    end = max(now, series[-1][0])
    span = max((end - start).total_seconds(), 60.0)
    top = max([planned.get(d, 0) for d in directions] + [sum(u for _t, dd, u in series if dd == d)
                                                         for d in directions] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return LEFT + plot_w * (moment - start).total_seconds() / span

    def y(units: float) -> float:
        return TOP + plot_h * (1 - units / top)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i in range(5):
        units = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(units):.1f}" y2="{y(units):.1f}" '
                     f'stroke="#d6dde3" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(units) + 4:.1f}" text-anchor="end" font-size="14" '
                     f'fill="#5b6b78">{int(units)}</text>')
    for i in range(5):
        moment = start + (end - start) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(moment):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" font-size="14" '
                     f'fill="#5b6b78">{moment:%H:%M}</text>')
    for direction in directions:
        colour = COLOURS[direction]
        if planned.get(direction):
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(planned[direction]):.1f}" '
                         f'y2="{y(planned[direction]):.1f}" stroke="{colour}" stroke-dasharray="6 4" '
                         f'stroke-width="1.5"/>')
        total, points = 0, [f"{LEFT:.1f},{y(0):.1f}"]
        for moment, d, units in series:
            if d == direction:
                total += units
                points.append(f"{x(moment):.1f},{y(total):.1f}")
        points.append(f"{x(end):.1f},{y(total):.1f}")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{" ".join(points)}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{max(y(total) - 6, TOP + 10):.1f}" text-anchor="end" '
                     f'font-size="15" fill="{colour}">{direction} {total}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
