"""Reading and writing vessel calls and tallies, each write in one transaction.

Nothing is half-written: every function that writes validates first, then writes
inside ``engine.begin()``, so an error rolls the whole request back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Mapping, Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from .domain import (
    CATEGORIES,
    DEFAULT_SHIFTS,
    DIRECTIONS,
    OPERATION_TYPES,
    PLAN_FIELDS,
    STATUSES,
    TALLY_DIRECTIONS,
    VESSEL_TYPES,
    ConflictError,
    FieldError,
    NotFoundError,
    OperationsError,
    TallyInput,
    ValidationError,
    as_utc,
    check_transition,
    current_shift,
    iso,
    parse_tally,
    parse_vessel_call,
    timestamp_column,
    utcnow,
)
from .tables import tallies, vessel_calls

#: How many duplicate posts this process settled through the unique constraint (a figure for tests and logs).
RACES_SETTLED_BY_CONSTRAINT = [0]


@dataclass(frozen=True)
class Clerk:
    """Who writes: the authenticated account."""

    id: int | None
    username: str
    role: str


def vessel_call_json(row: Mapping[str, Any], tallied: Mapping[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """A vessel call as the API shows it (planned and, when given, tallied units per direction and category)."""
    planned = {d: {c: row[PLAN_FIELDS[(d, c)]] for c in CATEGORIES} for d in DIRECTIONS}
    body: dict[str, Any] = {
        "id": row["id"], "vessel_name": row["vessel_name"], "shipping_line": row["shipping_line"],
        "vessel_type": row["vessel_type"], "operation_type": row["operation_type"], "berth": row["berth"],
        "planned": planned, "planned_start": iso(row["planned_start"]), "planned_end": iso(row["planned_end"]),
        "status": row["status"],
        "status_times": {s: iso(row[timestamp_column(s)]) for s in STATUSES},
    }
    if tallied is not None:
        body["tallied"] = {d: {c: tallied.get((d, c), 0) for c in CATEGORIES} for d in DIRECTIONS}
    return body


def tally_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A tally as the API shows it."""
    return {
        "id": row["id"], "vessel_call_id": row["vessel_call_id"], "direction": row["direction"],
        "category": row["category"], "units": row["units"], "shift": row["shift"], "zone": row["zone"],
        "clerk": row["clerk"], "tallied_at": iso(row["tallied_at"]), "idempotency_key": row["idempotency_key"],
    }


# --- vessel calls ---------------------------------------------------------------------


def get_vessel_call(conn: Connection, call_id: int, *, lock: str | None = None) -> RowMapping:
    """The vessel call row, or NotFoundError. ``lock``: ``"share"`` or ``"update"`` (PostgreSQL row locks)."""
    query = select(vessel_calls).where(vessel_calls.c.id == call_id)
    if lock:
        query = query.with_for_update(read=lock == "share")
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFoundError(FieldError("vessel_call_id", f"no vessel call with id {call_id}"))
    return row


def tallied_by_call(conn: Connection, call_ids: Sequence[int]) -> dict[int, dict[tuple[str, str], int]]:
    """Units tallied so far per vessel call, per (plan direction, category)."""
    result: dict[int, dict[tuple[str, str], int]] = {i: {} for i in call_ids}
    if not call_ids:
        return result
    rows = conn.execute(
        select(tallies.c.vessel_call_id, tallies.c.direction, tallies.c.category, func.sum(tallies.c.units))
        .where(tallies.c.vessel_call_id.in_(call_ids))
        .group_by(tallies.c.vessel_call_id, tallies.c.direction, tallies.c.category)
    )
    for call_id, direction, category, units in rows:
        result[call_id][(TALLY_DIRECTIONS[direction], category)] = int(units or 0)
    return result


def list_vessel_calls(engine: Engine, status: str | None = None) -> list[dict[str, Any]]:
    """Every vessel call (optionally one status), newest planned start first, with tallied units."""
    if status is not None and status not in STATUSES:
        raise ValidationError(FieldError("status", f"unknown status {status!r}; expected one of {', '.join(STATUSES)}"))
    query = select(vessel_calls).order_by(vessel_calls.c.planned_start.desc(), vessel_calls.c.id.desc())
    if status:
        query = query.where(vessel_calls.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        tallied = tallied_by_call(conn, [r["id"] for r in rows])
    return [vessel_call_json(r, tallied[r["id"]]) for r in rows]


def read_vessel_call(engine: Engine, call_id: int) -> dict[str, Any]:
    """One vessel call with its tallied units (NotFoundError if unknown)."""
    with engine.connect() as conn:
        row = get_vessel_call(conn, call_id)
        return vessel_call_json(row, tallied_by_call(conn, [call_id])[call_id])


def create_vessel_call(engine: Engine, data: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Validate and insert a vessel call; it starts ``expected``."""
    if "status" in data and data["status"] not in (None, "expected"):
        raise ValidationError(FieldError("status", "a new vessel call starts expected; move it forward afterwards"))
    values = parse_vessel_call(data)
    now = now or utcnow()
    with engine.begin() as conn:
        call_id = conn.execute(insert(vessel_calls).values(**values, status="expected", created_at=now)
                               .returning(vessel_calls.c.id)).scalar_one()
        return vessel_call_json(get_vessel_call(conn, call_id), {})


def update_vessel_call(engine: Engine, call_id: int, data: Mapping[str, Any],
                       now: datetime | None = None) -> dict[str, Any]:
    """Change fields and/or move the status one step forward (timestamped), atomically.

    A departed vessel call is closed: nothing about it changes any more.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        row = get_vessel_call(conn, call_id, lock="update")
        if row["status"] == "departed":
            raise ConflictError(FieldError("status", f"vessel call {call_id} has departed and can no longer change"))
        values = parse_vessel_call(data, dict(row))
        if data.get("status") is not None:
            wanted = data["status"]
            if not isinstance(wanted, str):
                raise ValidationError(FieldError("status", "must be a status name"))
            check_transition(row["status"], wanted)
            values["status"] = wanted
            values[timestamp_column(wanted)] = now
        if values:
            conn.execute(update(vessel_calls).where(vessel_calls.c.id == call_id).values(**values))
        return vessel_call_json(get_vessel_call(conn, call_id), tallied_by_call(conn, [call_id])[call_id])


# --- tallies --------------------------------------------------------------------------


def post_tally(engine: Engine, data: Mapping[str, Any], clerk: Clerk, *, vessel_call_id: int | None = None,
               now: datetime | None = None, shift_starts: Sequence[time] = DEFAULT_SHIFTS,
               ) -> tuple[dict[str, Any], bool]:
    """Record a tally once per (vessel call, idempotency key); returns (tally, created).

    The insert is attempted straight away (one query less on the common path); the
    unique constraint on (vessel call, idempotency key) catches every repeat, whether
    sequential or racing: the loser rolls back and returns the first row (created False).
    The same key with different content is a conflict.
    """
    now = now or utcnow()
    tally = parse_tally(data, now, vessel_call_id)
    try:
        with engine.begin() as conn:
            try:
                call = _call_for_tally(conn, tally)
                values = _tally_values(call, tally, clerk, now, shift_starts)
            except OperationsError:
                existing = _find_tally(conn, tally)  # a replay of a tally recorded before the refusal held
                if existing is not None:
                    return _replayed(existing, tally), False
                raise
            tally_id = conn.execute(insert(tallies).values(**values).returning(tallies.c.id)).scalar_one()
            return tally_json({**values, "id": tally_id}), True
    except IntegrityError:
        RACES_SETTLED_BY_CONSTRAINT[0] += 1
        with engine.connect() as conn:
            existing = _find_tally(conn, tally)
        if existing is None:
            raise
        return _replayed(existing, tally), False


def _find_tally(conn: Connection, tally: TallyInput) -> RowMapping | None:
    return conn.execute(select(tallies).where(tallies.c.vessel_call_id == tally.vessel_call_id,
                                              tallies.c.idempotency_key == tally.idempotency_key)).mappings().first()


def _replayed(existing: RowMapping, tally: TallyInput) -> dict[str, Any]:
    same = (existing["direction"] == tally.direction and existing["units"] == tally.units
            and existing["zone"] == tally.zone and (tally.category is None or existing["category"] == tally.category))
    if not same:
        raise ConflictError(FieldError("idempotency_key", f"{tally.idempotency_key!r} was already used for a "
                                                          "different tally on this vessel call"))
    return tally_json(existing)


def _call_for_tally(conn: Connection, tally: TallyInput) -> RowMapping:
    try:
        # No share lock on the vessel row: under PostgreSQL, many transactions share-locking one row go through
        # MultiXacts and crawl. A tally that read "operations_active" just before a departure committed is
        # ordered before that departure, which is a valid serial order (the tally only reads the row).
        call = get_vessel_call(conn, tally.vessel_call_id)
    except NotFoundError as exc:
        raise ValidationError(exc.errors) from None
    if call["status"] != "operations_active":
        raise ConflictError(FieldError("vessel_call_id", f"vessel call {call['id']} ({call['vessel_name']}) is "
                                                         f"{call['status']}; tallies are accepted only while "
                                                         "operations are active"))
    return call


def _tally_values(call: RowMapping, tally: TallyInput, clerk: Clerk, now: datetime,
                  shift_starts: Sequence[time]) -> dict[str, Any]:
    carried = VESSEL_TYPES[call["vessel_type"]]
    worked = OPERATION_TYPES[call["operation_type"]]
    category = tally.category or (carried[0] if len(carried) == 1 else None)
    errors = []
    if category is None:
        errors.append(FieldError("category", f"is required for a vessel carrying {' and '.join(carried)}"))
    elif category not in carried:
        errors.append(FieldError("category", f"{call['vessel_name']} carries no {category} cargo"))
    if TALLY_DIRECTIONS[tally.direction] not in worked:
        errors.append(FieldError("direction", f"{call['vessel_name']} is a {call['operation_type']} operation; "
                                              f"nothing is {tally.direction}"))
    if errors:
        raise ValidationError(errors)
    tallied_at = tally.tallied_at or now
    return {
        "vessel_call_id": call["id"], "direction": tally.direction, "category": category, "units": tally.units,
        "shift": tally.shift or current_shift(tallied_at, shift_starts)[0], "zone": tally.zone,
        "clerk_id": clerk.id, "clerk": clerk.username, "tallied_at": tallied_at,
        "idempotency_key": tally.idempotency_key,
    }


def list_tallies(engine: Engine, call_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The newest tallies of a vessel call (NotFoundError if the call is unknown)."""
    with engine.connect() as conn:
        get_vessel_call(conn, call_id)
        rows = conn.execute(select(tallies).where(tallies.c.vessel_call_id == call_id)
                            .order_by(tallies.c.tallied_at.desc(), tallies.c.id.desc()).limit(limit)).mappings()
        return [tally_json(r) for r in rows]


def tally_series(engine: Engine, call_id: int) -> list[tuple[datetime, str, int]]:
    """Every tally of a call as (time, plan direction, units), oldest first (for the chart)."""
    with engine.connect() as conn:
        rows = conn.execute(select(tallies.c.tallied_at, tallies.c.direction, tallies.c.units)
                            .where(tallies.c.vessel_call_id == call_id).order_by(tallies.c.tallied_at))
        return [(as_utc(t), TALLY_DIRECTIONS[d], u) for t, d, u in rows]  # type: ignore[misc]
