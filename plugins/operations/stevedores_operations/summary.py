"""The dashboard summary: progress per vessel call, rates this shift, projections, berths.

Computed with three aggregate queries and cached as JSON through the ``cache`` service
(Redis when it answers, process memory otherwise) under a key that includes a fingerprint
of the data: one cheap query per request tells whether anything changed, whichever
process (or script) changed it, so the dashboard is never stale across workers, with or
without Redis. With PostgreSQL that query is skipped while the change signal (changes.py)
vouches that nothing changed since this process's copy was checked. Time-dependent figures
(rates, projections) age at most the cache TTL. Without a cache service it is computed on
every request.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Any, Callable, Hashable, NamedTuple, Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from stevedores.contracts import CacheService

from .changes import no_version
from .conditional import etag_of
from .domain import (
    AT_BERTH,
    CATEGORIES,
    DIRECTIONS,
    IN_PORT,
    OPERATION_TYPES,
    PLAN_FIELDS,
    VESSEL_TYPES,
    as_utc,
    current_shift,
    iso,
    utcnow,
)
from .store import tallied_by_call
from .tables import tallies, vessel_calls

log = logging.getLogger("stevedores.operations")
CACHE_KEY = "operations:summary:v2"
#: Below this much elapsed shift time the rate is taken over this floor (no spikes at shift change).
MIN_RATE_WINDOW = timedelta(minutes=15)


#: The data fingerprint as plain SQL (PostgreSQL and SQLite alike), composed once.
FINGERPRINT_SQL = (
    f"SELECT (SELECT count(*) FROM {vessel_calls.name}), (SELECT coalesce(max(id), 0) FROM {vessel_calls.name}), "
    f"(SELECT coalesce(sum(version), 0) FROM {vessel_calls.name}), (SELECT coalesce(max(id), 0) FROM {tallies.name})"
)


def data_fingerprint(engine: Engine) -> str:
    """Changes whenever a vessel call or a tally is added or a vessel call changes.

    Tallies are insert-only, so their highest id says it all (an index lookup, however
    many tallies there are); every change to a vessel call bumps its ``version``, and the
    vessel calls are few. One statement, one round trip, on every request of the dashboard
    and ``/api/summary`` that the change signal cannot spare (changes.py): the database is the
    one thing every worker of every instance shares, so a write anywhere shows on the next
    request everywhere, Redis or not.

    Sent through the pool's DB-API connection (pool checkout, pre-ping and timeouts as for
    any query; psycopg prepares it server-side after a few runs), not a SQLAlchemy
    Connection: measured under gunicorn on PostgreSQL, building and compiling the
    expression per request took about 36 % of the dashboard's CPU time, and on this machine
    ~800 µs CPU per call against ~300-450 µs through ``exec_driver_sql`` and ~150 µs
    through the DB-API cursor (bench/RESULTS.md, "Profile"). Database errors are raised as
    SQLAlchemy's ``DBAPIError`` (a dropped connection is invalidated), as any query's.
    """
    dialect = engine.dialect
    try:
        raw = engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:  # the pool's checkout raises the driver's own error
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    try:
        driver = raw.driver_connection
        manual = getattr(driver, "autocommit", None) is False  # psycopg: no transaction, no COMMIT round trip
        if manual:
            driver.autocommit = True
        cursor = raw.cursor()
        try:
            cursor.execute(FINGERPRINT_SQL)
            row = cursor.fetchone()
        except dialect.loaded_dbapi.Error as exc:
            dropped = dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
            if dropped:
                raw.invalidate(exc)
            raise DBAPIError.instance(FINGERPRINT_SQL, None, exc, dialect.loaded_dbapi.Error, dialect=dialect,
                                      connection_invalidated=dropped) from exc  # the core retries a read then
        finally:
            cursor.close()
    finally:
        # Whatever happened (a statement timeout, a lock timeout), the connection goes back
        # to the pool in its transactional mode: left in autocommit, every later
        # ``engine.begin()`` on it would run without a transaction (and its
        # ``pg_advisory_xact_lock`` would be released at once).
        if manual and raw.is_valid:
            try:
                driver.autocommit = False
            except dialect.loaded_dbapi.Error as exc:
                raw.invalidate(exc)
        raw.close()
    return "-".join(str(int(v)) for v in row)


def compute_summary(engine: Engine, now: datetime | None = None, shift_starts: Sequence[time] | None = None,
                    berths: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the dashboard shows, as plain JSON-able values."""
    now = now or utcnow()
    label, shift_start, shift_end = current_shift(now, shift_starts) if shift_starts else current_shift(now)
    with engine.connect() as conn:
        calls = conn.execute(select(vessel_calls).where(vessel_calls.c.status.in_(IN_PORT + ("expected",)))
                             .order_by(vessel_calls.c.planned_start, vessel_calls.c.id)).mappings().all()
        in_port = [c for c in calls if c["status"] in IN_PORT]
        tallied = tallied_by_call(conn, [c["id"] for c in in_port])
        shift_units = dict(conn.execute(
            select(tallies.c.vessel_call_id, func.sum(tallies.c.units))
            .where(tallies.c.vessel_call_id.in_([c["id"] for c in in_port]), tallies.c.tallied_at >= shift_start)
            .group_by(tallies.c.vessel_call_id)).all())
    hours = max(now - shift_start, MIN_RATE_WINDOW).total_seconds() / 3600
    active = [_call_progress(c, tallied[c["id"]], int(shift_units.get(c["id"]) or 0), hours, now) for c in in_port]
    total_shift = sum(c["shift_units"] for c in active)
    return {
        "generated_at": iso(now),
        "shift": {"label": label, "start": iso(shift_start), "end": iso(shift_end)},
        "calls": active,
        "expected": [{"id": c["id"], "vessel_name": c["vessel_name"], "shipping_line": c["shipping_line"],
                      "berth": c["berth"], "planned_start": iso(c["planned_start"])}
                     for c in calls if c["status"] == "expected"],
        "berths": _berths(calls, berths),
        "totals": {"shift_units": total_shift, "units_per_hour": round(total_shift / hours, 1),
                   "active_calls": sum(1 for c in active if c["status"] == "operations_active")},
    }


def _call_progress(call: Any, tallied: dict[tuple[str, str], int], shift_units: int, hours: float,
                   now: datetime) -> dict[str, Any]:
    lines = []
    for direction in DIRECTIONS:
        if direction not in OPERATION_TYPES[call["operation_type"]]:
            continue
        for category in CATEGORIES:
            if category not in VESSEL_TYPES[call["vessel_type"]]:
                continue
            planned, done = call[PLAN_FIELDS[(direction, category)]], tallied.get((direction, category), 0)
            lines.append({"direction": direction, "category": category, "planned": planned, "tallied": done,
                          "percent": _percent(done, planned)})
    planned_total = sum(line["planned"] for line in lines)
    tallied_total = sum(line["tallied"] for line in lines)
    remaining = sum(max(line["planned"] - line["tallied"], 0) for line in lines)
    rate = shift_units / hours
    projected = None
    if call["status"] == "operations_active" and remaining and rate > 0:
        projected = now + timedelta(hours=remaining / rate)
    planned_end = as_utc(call["planned_end"])
    return {
        "id": call["id"], "vessel_name": call["vessel_name"], "shipping_line": call["shipping_line"],
        "berth": call["berth"], "status": call["status"], "vessel_type": call["vessel_type"],
        "operation_type": call["operation_type"], "progress": lines, "planned_total": planned_total,
        "tallied_total": tallied_total, "remaining": remaining, "percent": _percent(tallied_total, planned_total),
        "shift_units": shift_units, "units_per_hour": round(rate, 1), "planned_end": iso(planned_end),
        "projected_completion": iso(projected),
        "late_minutes": int((projected - planned_end).total_seconds() // 60) if projected and planned_end
        and projected > planned_end else 0,
    }


def _percent(done: int, planned: int) -> int:
    return min(100, round(100 * done / planned)) if planned else (100 if done else 0)


def _berths(calls: Sequence[Any], configured: Sequence[str]) -> list[dict[str, Any]]:
    names = list(dict.fromkeys(list(configured) + sorted({c["berth"] for c in calls})))
    rows = []
    for name in names:
        occupant = next((c for c in calls if c["berth"] == name and c["status"] in AT_BERTH), None)
        waiting = [c["vessel_name"] for c in calls if c["berth"] == name and c["status"] in ("expected", "arrived")]
        rows.append({"berth": name, "occupied": occupant is not None,
                     "vessel_call_id": occupant["id"] if occupant else None,
                     "vessel_name": occupant["vessel_name"] if occupant else None,
                     "status": occupant["status"] if occupant else "free", "next": waiting[:3]})
    return rows


class _Local(NamedTuple):
    """This process's copy of the summary."""

    expires: float  #: monotonic seconds
    fingerprint: str
    text: str  #: the summary's JSON
    version: Hashable | None  #: the change signal's version taken before the fingerprint was read (changes.py)


class SummaryCache:
    """The cached summary: ``cache`` service (may be None), TTL in seconds, and the inputs.

    ``version``: the change signal (``changes.ChangeListener.version``, or a function answering
    None where there is none): while it answers what it answered when this process's copy was
    last checked, and the TTL holds, the copy is served without the fingerprint query.
    """

    def __init__(self, engine_of: Any, cache: CacheService | None, ttl: int, shift_starts: Sequence[time],
                 berths: Sequence[str], version: Callable[[], Hashable | None] = no_version) -> None:
        self._engine_of, self.cache, self.ttl = engine_of, cache, ttl
        self.shift_starts, self.berths = shift_starts, berths
        self._version = version
        self._computing = threading.Lock()
        self._local: _Local | None = None
        self._etag: tuple[str, str] | None = None  # (JSON, its ETag)

    def get(self) -> dict[str, Any]:
        """The summary from the cache, or computed (and cached) now."""
        return json.loads(self.get_json())

    def current(self) -> tuple[str, str]:
        """(the summary's JSON text, its ETag) for the data as it is now; the ETag is computed
        once per text (the same text object is returned while the fingerprint holds)."""
        text = self.get_json()
        memo = self._etag
        if memo is not None and memo[0] is text:
            return text, memo[1]
        etag = etag_of(text)
        self._etag = (text, etag)
        return text, etag

    def get_json(self) -> str:
        """The summary as the JSON text that is cached, for the data as it is now.

        No query at all while the change signal's version is the one this process's copy was
        checked under and the TTL holds; otherwise the fingerprint query decides, as without a signal.
        """
        if self.cache is None or self.ttl <= 0:
            return self._compute()
        version = self._version()  # before the fingerprint: a write committing later makes a newer version
        local = self._local
        if version is not None and local is not None and local.version == version and local.expires > monotonic():
            return local.text
        fingerprint = data_fingerprint(self._engine_of())
        if local is not None and local.expires > monotonic() and local.fingerprint == fingerprint:
            if local.version != version:
                self._local = local._replace(version=version)  # the data read after ``version`` is this copy's
            return local.text
        key = f"{CACHE_KEY}:{fingerprint}"
        cached = self._cached(key, fingerprint, version)
        if cached is not None:
            return cached
        with self._computing:  # one thread per process computes; the others wait for it
            cached = self._cached(key, fingerprint, version)
            if cached is not None:
                return cached
            text = self._compute()
            self.cache.set(key, text, ttl=self.ttl)
            self._local = _Local(monotonic() + self.ttl, fingerprint, text, version)
            return text

    def _cached(self, key: str, fingerprint: str, version: Hashable | None) -> str | None:
        cached = self.cache.get(key)
        if not cached:
            return None
        text = cached.decode() if isinstance(cached, bytes) else str(cached)
        if text.startswith("{"):
            self._local = _Local(monotonic() + self.ttl, fingerprint, text, version)
            return text
        log.warning("ignoring an unreadable cached operations summary")
        return None

    def _compute(self) -> str:
        return json.dumps(compute_summary(self._engine_of(), shift_starts=self.shift_starts, berths=self.berths))
