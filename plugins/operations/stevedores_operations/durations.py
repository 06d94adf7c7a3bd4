"""Durations as a person reads them: ``570`` minutes is "9 h 30 min", not "570 min"."""

from __future__ import annotations

MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR


def duration_words(minutes: float | None) -> str:
    """Whole minutes as ``45 min``, ``9 h 30 min``, ``9 h``, ``2 d 3 h`` (minutes dropped past a day);
    under a minute is ``under 1 min``; None or a negative value is an em dash."""
    if minutes is None or minutes < 0:
        return "—"
    whole = int(minutes)
    if whole < 1:
        return "under 1 min"
    if whole < MINUTES_PER_HOUR:
        return f"{whole} min"
    if whole < MINUTES_PER_DAY:
        hours, rest = divmod(whole, MINUTES_PER_HOUR)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, rest = divmod(whole, MINUTES_PER_DAY)
    hours = rest // MINUTES_PER_HOUR
    return f"{days} d {hours} h" if hours else f"{days} d"
