"""The vocabulary of a stevedoring operation and the rules every write obeys.

Pure functions over plain values (no database): the lifecycle, the cargo categories a
vessel type carries, the directions an operation type works, shifts, and the parsing
of request payloads into validated values. Errors name the field at fault.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Mapping, Sequence

from .validation import MAX_ID, MAX_INTEGER_DIGITS, moment_problem, text_problem

STATUSES = ("expected", "arrived", "berthed", "operations_active", "operations_complete", "departed")
#: Statuses in which a vessel occupies its berth.
AT_BERTH = ("berthed", "operations_active", "operations_complete")
#: Statuses shown as "active" on the dashboard (in port, not yet gone).
IN_PORT = ("arrived",) + AT_BERTH

VESSEL_TYPES: dict[str, tuple[str, ...]] = {"auto": ("auto",), "heavy": ("heavy",), "auto_heavy": ("auto", "heavy")}
OPERATION_TYPES: dict[str, tuple[str, ...]] = {
    "discharge": ("discharge",), "load": ("load",), "discharge_loadback": ("discharge", "load"),
}
CATEGORIES = ("auto", "heavy")
DIRECTIONS = ("discharge", "load")
#: A tally's direction word -> the plan direction it counts against.
TALLY_DIRECTIONS = {"discharged": "discharge", "loaded": "load"}

MAX_UNITS_PER_TALLY = 5000
MAX_PLANNED_UNITS = 100_000
FUTURE_TOLERANCE = timedelta(minutes=5)
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


# --- errors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """What is wrong with one field of a request."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """JSON form: ``{"field": ..., "message": ...}``."""
        return {"field": self.field, "message": self.message}


class OperationsError(Exception):
    """A refused request: an HTTP status and the fields at fault."""

    status = 400
    kind = "bad_request"

    def __init__(self, errors: Sequence[FieldError] | FieldError) -> None:
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    def as_dict(self) -> dict[str, Any]:
        """JSON body of the error response."""
        return {"error": self.kind, "message": str(self), "errors": [e.as_dict() for e in self.errors]}


class ValidationError(OperationsError):
    """A value is missing, malformed or out of range (422)."""

    status = 422
    kind = "validation_failed"


class ConflictError(OperationsError):
    """The request contradicts the current state (a backwards move, a tally on a departed vessel): 409."""

    status = 409
    kind = "conflict"


class NotFoundError(OperationsError):
    """The vessel call named in the URL does not exist (404)."""

    status = 404
    kind = "not_found"


# --- lifecycle ------------------------------------------------------------------------


def timestamp_column(status: str) -> str:
    """The column that records when a vessel call reached ``status``."""
    return "created_at" if status == "expected" else f"{status}_at"


def check_transition(current: str, wanted: str) -> None:
    """Allow only the next status; anything else is a ConflictError naming ``status``."""
    if wanted not in STATUSES:
        raise ValidationError(FieldError("status", f"unknown status {wanted!r}; expected one of {', '.join(STATUSES)}"))
    if wanted == current:
        raise ConflictError(FieldError("status", f"the vessel call is already {current}"))
    here, there = STATUSES.index(current), STATUSES.index(wanted)
    if there < here:
        raise ConflictError(FieldError("status", f"cannot move backwards from {current} to {wanted}"))
    if there > here + 1:
        raise ConflictError(FieldError("status", f"cannot skip from {current} to {wanted}; "
                                                 f"the next status is {STATUSES[here + 1]}"))


# --- time and shifts --------------------------------------------------------------------


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored datetime as aware UTC (SQLite returns naive values that were written as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_iso(text: str) -> datetime:
    """ISO 8601 text as an aware UTC datetime (a trailing Z is accepted on Python 3.10 too; naive means UTC)."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return as_utc(datetime.fromisoformat(text))  # type: ignore[return-value]


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    value = as_utc(value)
    # isoformat pads the year to four digits (strftime's %Y gives "99" for year 99 on glibc, which
    # fromisoformat then refuses).
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z" if value else None


class ShiftStarts:
    """Setting parser: comma-separated HH:MM shift start times (UTC), e.g. ``06:00,14:00,22:00``."""

    expected = "comma-separated HH:MM start times, e.g. 06:00,14:00,22:00"

    def __call__(self, raw: str) -> tuple[time, ...]:
        starts = []
        for part in (p.strip() for p in raw.split(",") if p.strip()):
            try:
                starts.append(time.fromisoformat(part))
            except ValueError:
                raise ValueError(f"expected {self.expected}; {part!r} is not HH:MM") from None
        if not starts or len(set(starts)) != len(starts):
            raise ValueError(f"expected {self.expected} (at least one, no repeats)")
        return tuple(sorted(starts))


DEFAULT_SHIFTS = (time(6), time(14), time(22))


def current_shift(now: datetime, starts: Sequence[time] = DEFAULT_SHIFTS) -> tuple[str, datetime, datetime]:
    """The shift ``now`` falls in: (label like ``06:00-14:00``, start, end), all UTC."""
    now = as_utc(now) or utcnow()
    candidates = []
    for day in (now.date() - timedelta(days=1), now.date()):
        candidates += [datetime.combine(day, s, tzinfo=timezone.utc) for s in starts]
    start = max(c for c in candidates if c <= now)
    ordered = sorted(starts)
    nxt = ordered[(ordered.index(start.time()) + 1) % len(ordered)]
    end = datetime.combine(start.date(), nxt, tzinfo=timezone.utc)
    if end <= start:
        end += timedelta(days=1)
    return f"{start:%H:%M}-{end:%H:%M}", start, end


# --- payload parsing ------------------------------------------------------------------


class _Reader:
    """Reads fields from a payload, collecting every error instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise ValidationError(FieldError("body", "expected a JSON object"))
        self.data = data
        self.errors: list[FieldError] = []

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None and self.data[name] != ""

    def fail(self, name: str, message: str) -> None:
        self.errors.append(FieldError(name, message))

    def present(self, name: str, required: bool, field: str | None = None) -> bool:
        """Whether ``name`` was given; a missing required one is a problem of ``field`` (default ``name``)."""
        if self.has(name):
            return True
        if required:
            self.fail(field or name, "is required")
        return False

    def refuses(self, field: str, problem: str | None) -> bool:
        """Whether there is a ``problem`` (a message, or None); if so it is recorded against ``field``."""
        if problem is not None:
            self.fail(field, problem)
        return problem is not None

    def text(self, name: str, max_len: int, required: bool = True, field: str | None = None) -> str | None:
        field = field or name
        if not self.present(name, required, field):
            return None
        value = self.data[name]
        if not isinstance(value, str) or not value.strip():
            self.fail(field, "must be non-empty text")
            return None
        if self.refuses(field, text_problem(value)):
            return None
        if len(value.strip()) > max_len:
            self.fail(field, f"must be at most {max_len} characters")
            return None
        return value.strip()

    def choice(self, name: str, choices: Sequence[str], required: bool = True) -> str | None:
        value = self.text(name, 32, required)
        if value is not None and value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)} (got {value!r})")
            return None
        return value

    def integer(self, name: str, low: int, high: int, required: bool = True, field: str | None = None,
                value: Any = None) -> int | None:
        field = field or name
        if value is None:
            if not self.present(name, required, field):
                return None
            value = self.data[name]
        if isinstance(value, str) and re.fullmatch(rf"\s*-?\d{{1,{MAX_INTEGER_DIGITS}}}\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "must be a whole number")
            return None
        if value < low:
            self.fail(field, f"must not be negative (got {value})" if value < 0 else f"must be at least {low}")
            return None
        if value > high:
            self.fail(field, f"must be at most {high}")
            return None
        return value

    def moment(self, name: str, required: bool = True) -> datetime | None:
        if not self.present(name, required):
            return None
        value = self.data[name]
        try:
            moment = (as_utc(value) if isinstance(value, datetime)
                      else parse_iso(value) if isinstance(value, str) and len(value) <= 64 else None)
        except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset is before year 1 UTC
            moment = None
        if moment is None:
            self.fail(name, "must be an ISO 8601 date and time, e.g. 2026-05-01T06:00:00Z")
            return None
        if self.refuses(name, moment_problem(moment)):
            return None
        return moment

    def done(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


PLAN_FIELDS = {(d, c): f"planned_{d}_{c}" for d in DIRECTIONS for c in CATEGORIES}
VESSEL_TEXT_FIELDS = {"vessel_name": 120, "shipping_line": 120, "berth": 32}


def parse_vessel_call(data: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate a create (``current`` None) or a partial update of a vessel call.

    Returns the column values to write (``status`` excluded: see :func:`check_transition`).
    The merged result must be coherent: no planned units in a category the vessel type
    does not carry or a direction the operation does not work; planned end after start.
    """
    reader = _Reader(data)
    creating = current is None
    values: dict[str, Any] = {}
    unknown = sorted(set(data) - set(VESSEL_TEXT_FIELDS) - {"vessel_type", "operation_type", "planned",
                                                                   "planned_start", "planned_end", "status"})
    for name in unknown:
        reader.fail(name, "is not a field of a vessel call")
    for name, max_len in VESSEL_TEXT_FIELDS.items():
        if creating or name in data:
            values[name] = reader.text(name, max_len)
    if creating or "vessel_type" in data:
        values["vessel_type"] = reader.choice("vessel_type", tuple(VESSEL_TYPES))
    if creating or "operation_type" in data:
        values["operation_type"] = reader.choice("operation_type", tuple(OPERATION_TYPES))
    for name in ("planned_start", "planned_end"):
        if creating or name in data:
            values[name] = reader.moment(name)
    if creating or "planned" in data:
        values.update(_parse_plan(reader, data.get("planned")))
    reader.done()
    merged = {**(current or {}), **values}
    _check_plan_coherent(reader, merged)
    start, end = as_utc(merged["planned_start"]), as_utc(merged["planned_end"])
    if start and end and end <= start:
        reader.fail("planned_end", "must be after planned_start")
    reader.done()
    return values


def _parse_plan(reader: _Reader, plan: Any) -> dict[str, int]:
    if plan is None:
        reader.fail("planned", "is required: {\"discharge\": {\"auto\": N, \"heavy\": N}, \"load\": {...}}")
        return {}
    if not isinstance(plan, Mapping):
        reader.fail("planned", "must be an object keyed by direction (discharge, load)")
        return {}
    values: dict[str, int] = {}
    for direction in plan:
        if direction not in DIRECTIONS:
            reader.fail(f"planned.{direction}", f"unknown direction; expected {' or '.join(DIRECTIONS)}")
    for direction in DIRECTIONS:
        per = plan.get(direction) or {}
        if not isinstance(per, Mapping):
            reader.fail(f"planned.{direction}", "must be an object keyed by category (auto, heavy)")
            continue
        for category in per:
            if category not in CATEGORIES:
                reader.fail(f"planned.{direction}.{category}", f"unknown category; expected {' or '.join(CATEGORIES)}")
        for category in CATEGORIES:
            raw = per.get(category, 0)
            units = reader.integer("", 0, MAX_PLANNED_UNITS, field=f"planned.{direction}.{category}",
                                   value=0 if raw is None else raw)
            if units is not None:
                values[PLAN_FIELDS[(direction, category)]] = units
    return values


def _check_plan_coherent(reader: _Reader, merged: Mapping[str, Any]) -> None:
    categories = VESSEL_TYPES.get(merged.get("vessel_type") or "", CATEGORIES)
    directions = OPERATION_TYPES.get(merged.get("operation_type") or "", DIRECTIONS)
    total = 0
    for (direction, category), column in PLAN_FIELDS.items():
        units = merged.get(column) or 0
        total += units
        if units and category not in categories:
            reader.fail(f"planned.{direction}.{category}",
                        f"a {merged.get('vessel_type')} vessel carries no {category} cargo; plan 0")
        elif units and direction not in directions:
            reader.fail(f"planned.{direction}.{category}",
                        f"a {merged.get('operation_type')} operation does not {direction}; plan 0")
    if total == 0:
        reader.fail("planned", "plan at least one unit")


@dataclass(frozen=True)
class TallyInput:
    """A validated tally, before it is checked against its vessel call."""

    vessel_call_id: int
    direction: str
    category: str | None
    units: int
    zone: str
    shift: str | None
    tallied_at: datetime | None
    idempotency_key: str


def parse_tally(data: Mapping[str, Any], now: datetime, vessel_call_id: int | None = None) -> TallyInput:
    """Validate a tally payload (the vessel call id may come from the URL instead)."""
    reader = _Reader(data)
    if vessel_call_id is None:
        vessel_call_id = reader.integer("vessel_call_id", 1, MAX_ID)
    direction = reader.choice("direction", tuple(TALLY_DIRECTIONS))
    category = reader.choice("category", CATEGORIES, required=False)
    units = reader.integer("units", 1, MAX_UNITS_PER_TALLY)
    zone = reader.text("zone", 32)
    shift = reader.text("shift", 32, required=False)
    tallied_at = reader.moment("tallied_at", required=False)
    if tallied_at and tallied_at > now + FUTURE_TOLERANCE:
        reader.fail("tallied_at", "is in the future")
    key = reader.text("idempotency_key", 64, required=False)
    if key is not None and not _KEY_PATTERN.match(key):
        reader.fail("idempotency_key", "must be 1-64 letters, digits or . _ : -")
    reader.done()
    return TallyInput(vessel_call_id, direction, category, units, zone, shift, tallied_at,  # type: ignore[arg-type]
                      key or uuid.uuid4().hex)
