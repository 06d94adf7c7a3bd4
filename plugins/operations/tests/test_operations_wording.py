"""Durations as a person reads them, and chart axes that end on round figures."""

from __future__ import annotations

from stevedores_operations.charts import nice_ceiling
from stevedores_operations.durations import duration_words


def test_durations_read_as_hours_and_minutes() -> None:
    cases = {0: "under 1 min", 0.5: "under 1 min", 1: "1 min", 59: "59 min", 60: "1 h", 61: "1 h 1 min",
             570: "9 h 30 min", 1439: "23 h 59 min", 1440: "1 d", 1530: "1 d 1 h", 3000: "2 d 2 h", None: "—", -5: "—"}
    assert {minutes: duration_words(minutes) for minutes in cases} == cases


def test_chart_axes_end_on_round_figures() -> None:
    cases = {0: 4, 1: 4, 7: 8, 99: 100, 101: 120, 1900: 2000, 2450: 3000, 100_000: 100_000}
    assert {value: nice_ceiling(value) for value in cases} == cases
    assert all(top % 4 == 0 for top in cases.values())  # five ticks on whole numbers
