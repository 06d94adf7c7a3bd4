"""A realistic sample: vessel calls in every state and about a day of tallies."""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Iterator, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine

from .changes import announce_change, announces_change
from .domain import DEFAULT_SHIFTS, STATUSES, current_shift, timestamp_column, utcnow
from .locks import exclusive
from .tables import tallies, vessel_calls

H = timedelta(hours=1)

# name, line, vessel type, operation, berth, plan (d auto, d heavy, l auto, l heavy), status, hours since status,
# planned start and end (hours from now)
CALLS: Sequence[tuple[Any, ...]] = (
    ("Cape Orchid", "Nordlys Car Carriers", "auto_heavy", "discharge", "B1", (2100, 60, 0, 0),
     "departed", 14, -34, -16),
    ("Aurora Leader", "Eastwind RoRo", "auto_heavy", "discharge_loadback", "B1", (1800, 120, 900, 40),
     "operations_active", 10, -11, 8),
    ("Grand Mistral", "Mediterranea Lines", "auto", "discharge", "B2", (2400, 0, 0, 0), "operations_active", 5, -6, 3),
    ("Tor Heavylift", "Baltic Project Cargo", "heavy", "load", "B3", (0, 0, 0, 85), "berthed", 1, 1, 20),
    ("Ocean Breeze", "Eastwind RoRo", "auto", "discharge", "B4", (1500, 0, 0, 0), "arrived", 2, 4, 14),
    ("Nordic Spirit", "Nordlys Car Carriers", "auto", "load", "B2", (0, 0, 1600, 0), "expected", 0, 9, 19),
)
ZONES = ("A1", "A2", "A3", "B1", "B2", "H1")


def has_data(engine: Engine | Connection) -> bool:
    """Whether any vessel call exists already."""
    with _connection(engine) as conn:
        return bool(conn.execute(select(func.count()).select_from(vessel_calls)).scalar())


@announces_change
def load_demo_once(engine: Engine, force: bool = False) -> tuple[int, int] | None:
    """Load the sample unless vessel calls exist (``force``: anyway); None when nothing was loaded.

    Safe from several instances at once: the check and the load run in one transaction
    holding the ``demo-data`` lock (locks.py), so the sample is loaded exactly once.
    """
    with exclusive(engine, "demo-data") as conn:
        if has_data(conn) and not force:
            return None
        return load_demo(conn)


def load_demo(engine: Engine | Connection, now: datetime | None = None, seed: int = 7) -> tuple[int, int]:
    """Insert the sample in one transaction (or in the given connection's); returns (vessel calls, tallies).

    Announces the change when it committed itself; in the caller's transaction the caller announces
    it after the commit (``load_demo_once``).
    """
    now = now or utcnow()
    rng = random.Random(seed)
    n_tallies = 0
    with _connection(engine, begin=True) as conn:
        for name, line, vtype, otype, berth, plan, status, since, start_h, end_h in CALLS:
            reached = STATUSES.index(status)
            times = {}
            for i, s in enumerate(STATUSES[1:reached + 1], start=1):  # evenly spaced up to the current status
                times[timestamp_column(s)] = now - since * H - (reached - i) * 1.5 * H
            if status == "departed":
                times["operations_complete_at"] = now - since * H - 1 * H
            call_id = conn.execute(insert(vessel_calls).values(
                vessel_name=name, shipping_line=line, vessel_type=vtype, operation_type=otype, berth=berth,
                planned_discharge_auto=plan[0], planned_discharge_heavy=plan[1], planned_load_auto=plan[2],
                planned_load_heavy=plan[3], planned_start=now + start_h * H, planned_end=now + end_h * H,
                status=status, created_at=now - 48 * H, **times).returning(vessel_calls.c.id)).scalar_one()
            if status in ("operations_active", "operations_complete", "departed"):
                end = times.get("operations_complete_at", now)
                rows = _tallies(rng, call_id, plan, times["operations_active_at"], end)
                if rows:
                    conn.execute(insert(tallies), rows)
                n_tallies += len(rows)
    if not isinstance(engine, Connection):
        announce_change()
    return len(CALLS), n_tallies


@contextmanager
def _connection(engine: Engine | Connection, begin: bool = False) -> Iterator[Connection]:
    """The given connection as is, or a new one from the engine (in a transaction with ``begin``)."""
    if isinstance(engine, Connection):
        yield engine
        return
    with engine.begin() if begin else engine.connect() as conn:
        yield conn


def _tallies(rng: random.Random, call_id: int, plan: Sequence[int], start: datetime, end: datetime) -> list[dict]:
    """Tallies every 10-25 minutes: discharge first, loadback in the last third; heavy now and then."""
    rows, moment = [], start + timedelta(minutes=rng.randint(5, 15))
    targets = {("discharged", "auto"): plan[0], ("discharged", "heavy"): plan[1], ("loaded", "auto"): plan[2],
               ("loaded", "heavy"): plan[3]}
    done = dict.fromkeys(targets, 0)
    span = (end - start).total_seconds()
    while moment < end:
        loading_phase = (moment - start).total_seconds() > span * 0.6 or not (plan[0] or plan[1])
        direction = "loaded" if loading_phase and (plan[2] or plan[3]) else "discharged"
        heavy_turn = rng.random() < 0.15 or not targets[(direction, "auto")]
        category = "heavy" if targets[(direction, "heavy")] and heavy_turn else "auto"
        units = rng.randint(2, 6) if category == "heavy" else rng.randint(25, 70)
        units = min(units, max(targets[(direction, category)] - done[(direction, category)], 0))
        if units:
            done[(direction, category)] += units
            rows.append({"vessel_call_id": call_id, "direction": direction, "category": category, "units": units,
                         "shift": current_shift(moment, DEFAULT_SHIFTS)[0], "zone": rng.choice(ZONES),
                         "clerk_id": None, "clerk": "demo", "tallied_at": moment, "idempotency_key": uuid.uuid4().hex})
        moment += timedelta(minutes=rng.randint(10, 25))
    return rows
