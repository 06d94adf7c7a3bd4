"""The vessel page's per-process memo (SQLite and the real PostgreSQL): reused only while nothing changed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, update
from stevedores_operations.context import state
from stevedores_operations.tables import tallies, vessel_calls


def _tally_behind_the_apps_back(app: Any, call_id: int, units: int, key: str, at: datetime) -> None:
    """Another worker (or a script) writing: this process's invalidation never runs."""
    with app.extensions["stevedores"].engine.begin() as conn:
        conn.execute(insert(tallies).values(vessel_call_id=call_id, direction="discharged", category="auto",
                                            units=units, shift="x", zone="Z", clerk="sql", idempotency_key=key,
                                            tallied_at=at))


def test_the_vessel_page_is_never_staler_than_the_database(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    call_id = ops.make_active_call(client, tokens["manager"])
    views = state(ops_app).vessel_views
    page = client.get(f"/vessels/{call_id}").data
    assert b"0 / 100" in page and b"No tallies yet" in page
    first = views.get(ops_app.extensions["stevedores"].engine, call_id)
    assert views.get(ops_app.extensions["stevedores"].engine, call_id) is first  # nothing changed: reused

    now = datetime.now(timezone.utc)
    _tally_behind_the_apps_back(ops_app, call_id, 7, "sql-1", now - timedelta(minutes=30))
    page = client.get(f"/vessels/{call_id}").data
    assert b"7 / 100" in page and b"discharge 7" in page and b"<polyline" in page
    assert views.get(ops_app.extensions["stevedores"].engine, call_id) is not first

    # A tally that lands in an earlier minute than the newest one still counts in the chart (summed per minute).
    _tally_behind_the_apps_back(ops_app, call_id, 5, "sql-2", now - timedelta(minutes=45))
    _tally_behind_the_apps_back(ops_app, call_id, 3, "sql-3", now - timedelta(minutes=30, seconds=-10))
    page = client.get(f"/vessels/{call_id}").data
    assert b"15 / 100" in page and b"discharge 15" in page
    assert len(re.findall(rb"<td class=\"num\">\d+ auto</td>", page)) == 3  # the recent tallies, all three

    with ops_app.extensions["stevedores"].engine.begin() as conn:  # a change to the call itself
        conn.execute(update(vessel_calls).where(vessel_calls.c.id == call_id).values(berth="B9"))
    assert b"berth B9" in client.get(f"/vessels/{call_id}").data
