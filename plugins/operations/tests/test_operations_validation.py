"""The boundary rules of validation.py on their own (no app)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from stevedores_operations.validation import (
    EARLIEST,
    LATEST,
    MAX_ID,
    decimal_range_pattern,
    displayable,
    id_problem,
    moment_problem,
    text_problem,
)


@pytest.mark.parametrize("high", [1, 5, 9, 10, 19, 20, 99, 100, 101, 250, 1000, 2147])
def test_the_id_pattern_matches_exactly_one_to_high(high: int) -> None:
    pattern = re.compile(decimal_range_pattern(high))
    assert [n for n in range(0, 3 * high + 20) if pattern.fullmatch(str(n))] == list(range(1, high + 1))
    assert not pattern.fullmatch("01") and not pattern.fullmatch("-1")


@pytest.mark.parametrize("value, matches", [(MAX_ID, True), (MAX_ID + 1, False), (2**31, False), (9999999999, False),
                                            (1_000_000_000, True), (2147483639, True), (2147483650, False)])
def test_the_record_id_pattern_is_the_postgresql_integer_range(value: int, matches: bool) -> None:
    assert bool(re.fullmatch(decimal_range_pattern(MAX_ID), str(value))) is matches
    assert (id_problem(value) is None) is matches


@pytest.mark.parametrize("text", ["a\x00", "\ud800", "x\udfffy", "a\r", "a\n", "a\t", "\x7f", "\x85", "\x1b[31m"])
def test_control_characters_and_lone_surrogates_are_named(text: str) -> None:
    problem = text_problem(text)
    assert problem is not None and "U+" in problem


@pytest.mark.parametrize("text", ["Aurora Leader", "Höegh Trigger", "東京丸", "B-1/2 (north)", "🚢 Ro-Ro", ""])
def test_ordinary_text_passes(text: str) -> None:
    assert text_problem(text) is None


def test_the_date_window() -> None:
    assert moment_problem(EARLIEST) is None and moment_problem(LATEST) is not None
    assert moment_problem(datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) is not None
    assert moment_problem(datetime(2099, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) is None


def test_displayable_hides_and_logs_what_is_out_of_range(caplog: pytest.LogCaptureFixture) -> None:
    inside = datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert displayable(inside) == inside and displayable(None) is None
    assert displayable(datetime(99, 1, 1), "a tally of vessel call 3") is None
    assert "a tally of vessel call 3 is out of range" in caplog.text
