"""Duplicate tallies racing each other (threads, real PostgreSQL and SQLite): counted exactly once."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select
from stevedores_operations import store
from stevedores_operations.store import Clerk, post_tally
from stevedores_operations.tables import tallies

THREADS = 12


def race(engine: Any, payload: dict, rounds: int) -> list[list[tuple[dict, bool]]]:
    """``rounds`` times, THREADS threads post the same tally at the same moment."""
    results: list[list[tuple[dict, bool]]] = []
    for r in range(rounds):
        barrier = threading.Barrier(THREADS)
        outcome: list[Any] = []
        body = {**payload, "idempotency_key": f"race-{r}"}

        def post(body: dict = body, barrier: threading.Barrier = barrier, outcome: list = outcome) -> None:
            barrier.wait()
            try:
                outcome.append(post_tally(engine, body, Clerk(None, "racer", "clerk")))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome.append(exc)

        threads = [threading.Thread(target=post) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        results.append(outcome)
    return results


def test_concurrent_duplicates_count_once(ops_app: Any, tokens: dict, ops: Any) -> None:
    engine = ops_app.extensions["stevedores"].engine
    call_id = ops.make_active_call(ops_app.test_client(), tokens["manager"])
    payload = {"vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": 4, "zone": "A1"}
    settled_before = store.RACES_SETTLED_BY_CONSTRAINT[0]
    results = race(engine, payload, rounds=5)
    assert store.RACES_SETTLED_BY_CONSTRAINT[0] > settled_before, "no post ever reached the insert race"
    for outcome in results:
        assert all(isinstance(o, tuple) for o in outcome), [o for o in outcome if not isinstance(o, tuple)]
        assert len(outcome) == THREADS
        assert sum(created for _t, created in outcome) == 1
        assert len({t["id"] for t, _created in outcome}) == 1
    with engine.connect() as conn:
        rows, units = conn.execute(select(func.count(), func.sum(tallies.c.units))).one()
    assert (rows, units) == (5, 20)
