"""Server-rendered charts: no script, no inline style, so they pass a strict CSP.

The lines are an SVG stretched to the plot box (``preserveAspectRatio="none"``, strokes with
``vector-effect="non-scaling-stroke"``); every piece of text is HTML beside it, so it keeps the
page's font size whatever the width, from a 375 px phone to a 2560 px wall screen (text inside an
SVG viewBox scales with the drawing). Ticks sit at fixed fractions of the axes (0, 25, 50, 75,
100 %), placed by CSS classes, and the totals are a legend under the plot instead of labels at
the lines' ends, which collided whenever two lines ended close together.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Mapping, Sequence

from markupsafe import Markup, escape

#: The drawing's own coordinates; the SVG is stretched to the plot box, so only proportions matter.
WIDTH, HEIGHT = 1000, 400
COLOURS = {"discharge": "#0b6fa4", "load": "#b45309"}
TICKS = (0, 25, 50, 75, 100)  # percent along each axis; operations.css has a class per tick


def nice_ceiling(value: float, ticks: int = len(TICKS) - 1) -> int:
    """The smallest ``ticks`` x step >= ``value`` for a whole step of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 or 8
    x 10^n, so the axis reads 0, 500, 1,000, 1,500, 2,000 rather than 0, 475, 950, 1,425, 1,900."""
    step_needed = max(value / ticks, 1)
    magnitude = 10 ** math.floor(math.log10(step_needed))
    step = next(m * magnitude for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10)
                if m * magnitude >= step_needed and float(m * magnitude).is_integer())
    return int(step * ticks)


def cumulative_chart(series: Sequence[tuple[datetime, str, int]], planned: Mapping[str, int],
                     now: datetime, title: str) -> Markup:
    """Cumulative units over time per plan direction, the planned totals dashed.

    ``series``: (minute, direction, units) oldest first; ``planned``: units per direction.
    """
    directions = [d for d in ("discharge", "load") if planned.get(d) or any(s[1] == d for s in series)]
    if not series:
        return Markup('<p class="muted">No tallies yet: the chart appears with the first one.</p>')
    start = series[0][0]
    end = max(now, series[-1][0])
    span = max((end - start).total_seconds(), 60.0)
    totals = {d: sum(u for _t, dd, u in series if dd == d) for d in directions}
    top = nice_ceiling(max([planned.get(d, 0) for d in directions] + list(totals.values()) + [1]))

    def x(moment: datetime) -> float:
        return WIDTH * (moment - start).total_seconds() / span

    def y(units: float) -> float:
        return HEIGHT * (1 - units / top)

    svg = [f'<svg class="chart-lines" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" aria-hidden="true" '
           'xmlns="http://www.w3.org/2000/svg">']
    for tick in TICKS:
        level = HEIGHT * (1 - tick / 100)
        svg.append(f'<line x1="0" x2="{WIDTH}" y1="{level:.1f}" y2="{level:.1f}" stroke="#d6dde3" stroke-width="1" '
                   'vector-effect="non-scaling-stroke"/>')
    for direction in directions:
        colour = COLOURS[direction]
        if planned.get(direction):
            level = y(planned[direction])
            svg.append(f'<line x1="0" x2="{WIDTH}" y1="{level:.1f}" y2="{level:.1f}" stroke="{colour}" '
                       'stroke-dasharray="6 4" stroke-width="1.5" vector-effect="non-scaling-stroke"/>')
        total, points = 0, [f"0,{y(0):.1f}"]
        for moment, d, units in series:
            if d == direction:
                total += units
                points.append(f"{x(moment):.1f},{y(total):.1f}")
        points.append(f"{x(end):.1f},{y(total):.1f}")
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" vector-effect="non-scaling-stroke" '
                   f'points="{" ".join(points)}"/>')
    svg.append("</svg>")
    # The widest label, once more, invisible and in the flow: it gives the axis its width.
    y_labels = f'<span class="chart-sizer" aria-hidden="true">{top:,}</span>' + "".join(
        f'<span class="chart-label y-{tick}">{round(top * tick / 100):,}</span>' for tick in TICKS)
    x_labels = "".join(f'<span class="chart-label x-{tick}">{start + (end - start) * tick / 100:%H:%M}</span>'
                       for tick in TICKS)
    legend = "".join(
        f'<li class="chart-label legend-{d}">{d} {totals[d]:,}'
        + (f' <span class="muted">of {planned[d]:,} planned</span>' if planned.get(d) else "") + "</li>"
        for d in directions)
    return Markup(
        f'<div class="chart" role="img" aria-label="{escape(title)}">'
        f'<div class="chart-y">{y_labels}</div><div class="chart-plot">{"".join(svg)}</div>'
        f'<div class="chart-x">{x_labels}</div></div><ul class="chart-legend">{legend}</ul>')
