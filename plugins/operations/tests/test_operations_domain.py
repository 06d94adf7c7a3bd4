"""Pure rules: lifecycle, shifts, payload validation (each error names its field), setting parsers."""

from __future__ import annotations

from datetime import datetime, time, timezone

import pytest
from stevedores_operations.domain import (
    STATUSES,
    ConflictError,
    ShiftStarts,
    ValidationError,
    check_transition,
    current_shift,
    parse_tally,
    parse_vessel_call,
)

from stevedores.settings import RateLimit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
VALID = {
    "vessel_name": "Aurora Leader", "shipping_line": "Eastwind", "vessel_type": "auto", "operation_type": "discharge",
    "berth": "B1", "planned": {"discharge": {"auto": 10}}, "planned_start": "2026-05-01T06:00:00Z",
    "planned_end": "2026-05-01T18:00:00Z",
}


def fields(exc: pytest.ExceptionInfo) -> set[str]:
    return {e.field for e in exc.value.errors}


def test_only_the_next_status_is_allowed() -> None:
    for here, there in zip(STATUSES[:-1], STATUSES[1:], strict=True):
        check_transition(here, there)
    with pytest.raises(ConflictError, match="backwards from berthed to arrived"):
        check_transition("berthed", "arrived")
    with pytest.raises(ConflictError, match="cannot skip from expected to berthed; the next status is arrived"):
        check_transition("expected", "berthed")
    with pytest.raises(ConflictError, match="already departed"):
        check_transition("departed", "departed")
    with pytest.raises(ValidationError, match="unknown status 'sailing'"):
        check_transition("expected", "sailing")


def test_shifts_wrap_around_midnight() -> None:
    starts = (time(6), time(14), time(22))
    assert current_shift(NOW, starts)[0] == "06:00-14:00"
    label, start, end = current_shift(datetime(2026, 5, 1, 3, 0, tzinfo=timezone.utc), starts)
    assert label == "22:00-06:00" and start.day == 30 and end == datetime(2026, 5, 1, 6, tzinfo=timezone.utc)
    assert current_shift(datetime(2026, 5, 1, 22, 0, tzinfo=timezone.utc), starts)[1].hour == 22


def test_a_valid_vessel_call_parses() -> None:
    values = parse_vessel_call(VALID)
    assert values["planned_discharge_auto"] == 10 and values["planned_load_heavy"] == 0
    assert values["planned_end"].tzinfo is not None


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"vessel_name": ""}, "vessel_name", "is required"),
    ({"berth": "x" * 33}, "berth", "at most 32"),
    ({"vessel_type": "tanker"}, "vessel_type", "must be one of auto, heavy, auto_heavy"),
    ({"operation_type": "bunkering"}, "operation_type", "must be one of"),
    ({"planned_start": "tomorrow"}, "planned_start", "ISO 8601"),
    ({"planned_end": "2026-05-01T05:00:00Z"}, "planned_end", "must be after planned_start"),
    ({"planned": {"discharge": {"auto": -5}}}, "planned.discharge.auto", "must not be negative (got -5)"),
    ({"planned": {"discharge": {"auto": "many"}}}, "planned.discharge.auto", "whole number"),
    ({"planned": {"discharge": {"auto": 10, "heavy": 2}}}, "planned.discharge.heavy", "carries no heavy cargo"),
    ({"planned": {"discharge": {"auto": 10}, "load": {"auto": 3}}}, "planned.load.auto", "does not load"),
    ({"planned": {"discharge": {"auto": 0}}}, "planned", "at least one unit"),
    ({"planned": {"sideways": {}}}, "planned.sideways", "unknown direction"),
    ({"planned": {"discharge": {"cows": 1}}}, "planned.discharge.cows", "unknown category"),
    ({"planned": [1, 2]}, "planned", "must be an object"),
    ({"draft": 9.5}, "draft", "is not a field of a vessel call"),
])
def test_every_vessel_call_error_names_its_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_vessel_call({**VALID, **change})
    assert field in fields(exc) and message in str(exc.value)


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_vessel_call({"vessel_type": "tanker"})
    assert {"vessel_name", "shipping_line", "berth", "vessel_type", "operation_type", "planned_start",
            "planned_end", "planned"} <= fields(exc)


TALLY = {"vessel_call_id": 1, "direction": "discharged", "units": 12, "zone": "A1"}


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"units": -3}, "units", "must not be negative (got -3)"),
    ({"units": 0}, "units", "must be at least 1"),
    ({"units": 1.5}, "units", "whole number"),
    ({"units": True}, "units", "whole number"),
    ({"units": 5001}, "units", "at most 5000"),
    ({"direction": "up"}, "direction", "must be one of discharged, loaded"),
    ({"category": "bulk"}, "category", "must be one of auto, heavy"),
    ({"zone": None}, "zone", "is required"),
    ({"vessel_call_id": "abc"}, "vessel_call_id", "whole number"),
    ({"tallied_at": "2026-05-01T13:00:00Z"}, "tallied_at", "in the future"),
    ({"idempotency_key": "has spaces"}, "idempotency_key", "letters, digits"),
])
def test_every_tally_error_names_its_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_tally({**TALLY, **change}, NOW)
    assert fields(exc) == {field} and message in str(exc.value)


def test_a_tally_without_key_gets_a_fresh_one() -> None:
    first, second = parse_tally(TALLY, NOW), parse_tally(TALLY, NOW)
    assert first.idempotency_key != second.idempotency_key and first.units == 12


def test_setting_parsers_name_the_expected_form() -> None:
    assert ShiftStarts()("22:00, 06:00,14:00") == (time(6), time(14), time(22))
    for bad in ("25:00", "", "06:00,06:00"):
        with pytest.raises(ValueError, match="HH:MM"):
            ShiftStarts()(bad)
    assert RateLimit()("5/minute; 50 per hour") == "5/minute; 50 per hour"
    with pytest.raises(ValueError, match="rate limits like"):
        RateLimit()("lots")
