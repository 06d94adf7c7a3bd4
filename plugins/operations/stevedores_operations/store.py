"""Reading and writing vessel calls and tallies, each write in one transaction.

Nothing is half-written: every function that writes validates first, then writes
inside ``engine.begin()``, so an error rolls the whole request back. Every function that
writes announces the change after its commit (``changes.announces_change``): this
instance's workers then skip no query on their next page.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Hashable, Iterator, Mapping, Sequence

from sqlalchemy import bindparam, func, insert, literal, select, true, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from .changes import announces_change
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
    #: The account's session epoch when it was read (a browser session is valid only under it).
    session_epoch: int = 0


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


@contextmanager
def single_statements(engine: Engine) -> Iterator[Connection]:
    """A connection in autocommit mode, for work that is one self-contained statement at a time.

    Each statement is then atomic and sees one consistent snapshot on its own, and the connection
    costs two round trips (pool pre-ping, statement) instead of four (pre-ping, BEGIN, statement,
    COMMIT/ROLLBACK). Never use it for several writes that must succeed or fail together.
    """
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


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


def _vessel_call_totals_statement() -> Any:
    totals = (select(tallies.c.direction.label("t_direction"), tallies.c.category.label("t_category"),
                     func.sum(tallies.c.units).label("t_units"), func.count().label("t_count"),
                     func.max(tallies.c.id).label("t_last_id"))
              .where(tallies.c.vessel_call_id == bindparam("call_id"))
              .group_by(tallies.c.direction, tallies.c.category).subquery())
    return (select(vessel_calls, totals).select_from(vessel_calls.outerjoin(totals, true()))
            .where(vessel_calls.c.id == bindparam("call_id")))


#: Built once: every vessel page runs it, and building the expression per request cost more
#: CPU than running it (SQLAlchemy then also reuses its compiled form from the cache key).
_VESSEL_CALL_TOTALS = _vessel_call_totals_statement()


def vessel_call_totals(conn: Connection, call_id: int) -> tuple[RowMapping, dict[tuple[str, str], int], Hashable]:
    """The vessel call row, its tallied units per (plan direction, category), and a fingerprint, in one statement.

    The fingerprint is the row plus, per (direction, category), the sum, count and highest id of the
    tallies: tallies are only ever inserted, so an equal fingerprint means the very same tallies and the
    same call (what is derived from them, the chart and the recent list, may be reused as is).
    NotFoundError if there is no such call.
    """
    rows = conn.execute(_VESSEL_CALL_TOTALS, {"call_id": call_id}).mappings().all()
    if not rows:
        raise NotFoundError(FieldError("vessel_call_id", f"no vessel call with id {call_id}"))
    row = rows[0]
    tallied: dict[tuple[str, str], int] = {}
    groups = []
    for r in rows:
        if r["t_direction"] is not None:
            tallied[(TALLY_DIRECTIONS[r["t_direction"]], r["t_category"])] = int(r["t_units"] or 0)
            groups.append((r["t_direction"], r["t_category"], int(r["t_units"] or 0), int(r["t_count"]),
                           int(r["t_last_id"])))
    fingerprint = (tuple(row[c.name] for c in vessel_calls.c), tuple(sorted(groups)))
    return row, tallied, fingerprint


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
    with single_statements(engine) as conn:
        row, tallied, _fingerprint = vessel_call_totals(conn, call_id)
    return vessel_call_json(row, tallied)


@announces_change
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


@announces_change
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
            conn.execute(update(vessel_calls).where(vessel_calls.c.id == call_id)
                         .values(**values, version=vessel_calls.c.version + 1))
        return vessel_call_json(get_vessel_call(conn, call_id), tallied_by_call(conn, [call_id])[call_id])


# --- tallies --------------------------------------------------------------------------


@announces_change
def post_tally(engine: Engine, data: Mapping[str, Any], clerk: Clerk, *, vessel_call_id: int | None = None,
               now: datetime | None = None, shift_starts: Sequence[time] = DEFAULT_SHIFTS,
               ) -> tuple[dict[str, Any], bool]:
    """Record a tally once per (vessel call, idempotency key); returns (tally, created).

    The common case is one atomic statement (``_insert_if_accepted``): the insert happens only if
    the vessel call is operations_active, carries the category and works the direction. When it
    inserts nothing, the checked path reads the call in a transaction and names what is wrong (or
    finds that the tally was recorded before). The unique constraint on (vessel call, idempotency
    key) catches every repeat, whether sequential or racing: the loser's statement fails and it
    returns the first row (created False). The same key with different content is a conflict.
    """
    now = now or utcnow()
    tally = parse_tally(data, now, vessel_call_id)
    try:
        with single_statements(engine) as conn:
            recorded = _insert_if_accepted(conn, tally, clerk, now, shift_starts)
        if recorded is not None:
            return recorded, True
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
        with single_statements(engine) as conn:
            existing = _find_tally(conn, tally)
        if existing is None:
            raise
        return _replayed(existing, tally), False


def _insert_if_accepted(conn: Connection, tally: TallyInput, clerk: Clerk, now: datetime,
                        shift_starts: Sequence[time]) -> dict[str, Any] | None:
    """INSERT ... SELECT guarded by every rule that depends on the vessel call, as one statement.

    Returns the recorded tally, or None when the call is missing, not operations_active, does not
    carry the category or does not work the direction (the checked path then says which), or when
    the category is left for the call's type to decide. Like the checked path it takes no lock on the
    vessel row: a tally that saw operations_active just before a departure committed is ordered first.
    """
    if tally.category is None:
        return None
    carrying = [name for name, carried in VESSEL_TYPES.items() if tally.category in carried]
    working = [name for name, worked in OPERATION_TYPES.items() if TALLY_DIRECTIONS[tally.direction] in worked]
    values = _tally_row(tally.vessel_call_id, tally.category, tally, clerk, now, shift_starts)
    columns = list(values)
    accepted = (select(*(literal(values[c], tallies.c[c].type) for c in columns)).select_from(vessel_calls)
                .where(vessel_calls.c.id == tally.vessel_call_id, vessel_calls.c.status == "operations_active",
                       vessel_calls.c.vessel_type.in_(carrying), vessel_calls.c.operation_type.in_(working)))
    tally_id = conn.execute(insert(tallies).from_select(columns, accepted).returning(tallies.c.id)).scalar()
    return None if tally_id is None else tally_json({**values, "id": tally_id})


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
    return _tally_row(call["id"], category, tally, clerk, now, shift_starts)  # type: ignore[arg-type]


def _tally_row(call_id: int, category: str, tally: TallyInput, clerk: Clerk, now: datetime,
               shift_starts: Sequence[time]) -> dict[str, Any]:
    tallied_at = tally.tallied_at or now
    return {
        "vessel_call_id": call_id, "direction": tally.direction, "category": category, "units": tally.units,
        "shift": tally.shift or current_shift(tallied_at, shift_starts)[0], "zone": tally.zone,
        "clerk_id": clerk.id, "clerk": clerk.username, "tallied_at": tallied_at,
        "idempotency_key": tally.idempotency_key,
    }


def list_tallies(engine: Engine, call_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The newest tallies of a vessel call (NotFoundError if the call is unknown)."""
    with single_statements(engine) as conn:
        get_vessel_call(conn, call_id)
        return recent_tallies(conn, call_id, limit)


def recent_tallies(conn: Connection, call_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` tallies of a vessel call, newest first."""
    rows = conn.execute(select(tallies).where(tallies.c.vessel_call_id == call_id)
                        .order_by(tallies.c.tallied_at.desc(), tallies.c.id.desc()).limit(limit)).mappings()
    return [tally_json(r) for r in rows]


def tally_series_on(conn: Connection, call_id: int) -> list[tuple[datetime, str, int]]:
    """Units tallied per minute and plan direction as (minute, direction, units), oldest first (for the
    chart), on an open connection: summed by the database, one row per minute and direction.

    The chart is a few hundred pixels wide, so minutes lose nothing visible, and a vessel call with
    thousands of tallies costs a few hundred rows instead of thousands.
    """
    if conn.dialect.name == "postgresql":
        minute: Any = func.date_trunc("minute", tallies.c.tallied_at)
    else:  # SQLite keeps UTC timestamps as ISO text
        minute = func.strftime("%Y-%m-%d %H:%M:00", tallies.c.tallied_at)
    rows = conn.execute(select(minute.label("minute"), tallies.c.direction, func.sum(tallies.c.units))
                        .where(tallies.c.vessel_call_id == call_id)
                        .group_by(minute, tallies.c.direction).order_by(minute))
    return [(as_utc(m if isinstance(m, datetime) else datetime.fromisoformat(m)), TALLY_DIRECTIONS[d], int(u))
            for m, d, u in rows]  # type: ignore[misc]
