"""The JSON API on SQLite and on the real PostgreSQL: lifecycle, validation, permissions, idempotency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from stevedores_operations.domain import utcnow
from stevedores_operations.plugin import freshness
from stevedores_operations.tables import tallies, vessel_calls


def count(app: Any, table: Any) -> int:
    with app.extensions["stevedores"].engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_schema_is_migrated_at_start_up(ops_app: Any) -> None:
    from stevedores_operations.migrate import current_revision, head_revision

    assert current_revision(ops_app.extensions["stevedores"].engine) == head_revision() == "0005_change_notifications"


def test_lifecycle_moves_forward_only_each_step_timestamped(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    created = client.post("/api/vessel-calls", json=ops.vessel_payload(), headers=ops.auth(tokens["manager"]))
    assert created.status_code == 201 and created.json["status"] == "expected"
    call_id = created.json["id"]
    assert created.headers["Location"] == f"/api/vessel-calls/{call_id}"
    url = f"/api/vessel-calls/{call_id}"
    skip = client.patch(url, json={"status": "berthed"}, headers=ops.auth(tokens["manager"]))
    assert skip.status_code == 409 and skip.json["errors"] == [
        {"field": "status", "message": "cannot skip from expected to berthed; the next status is arrived"}]
    for status in ("arrived", "berthed", "operations_active", "operations_complete"):
        moved = client.patch(url, json={"status": status}, headers=ops.auth(tokens["manager"]))
        assert moved.status_code == 200 and moved.json["status"] == status
        assert moved.json["status_times"][status] is not None
    back = client.patch(url, json={"status": "berthed"}, headers=ops.auth(tokens["manager"]))
    assert back.status_code == 409 and "backwards from operations_complete to berthed" in back.json["message"]
    assert client.get(url).json["status"] == "operations_complete"
    assert client.patch(url, json={"status": "departed"}, headers=ops.auth(tokens["manager"])).status_code == 200
    closed = client.patch(url, json={"berth": "B9"}, headers=ops.auth(tokens["manager"]))
    assert closed.status_code == 409 and closed.json["errors"][0]["field"] == "status"
    times = client.get(url).json["status_times"]
    assert all(times[s] for s in times) and times["arrived"] <= times["berthed"] <= times["departed"]


def test_a_refused_update_writes_nothing(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    manager = ops.auth(tokens["manager"])
    call_id = client.post("/api/vessel-calls", json=ops.vessel_payload(), headers=manager).json["id"]
    refused = client.patch(f"/api/vessel-calls/{call_id}", json={"status": "arrived", "berth": "", "planned": {
        "discharge": {"auto": -1}}}, headers=ops.auth(tokens["manager"]))
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json["errors"]} == {"berth", "planned.discharge.auto"}
    after = client.get(f"/api/vessel-calls/{call_id}").json
    assert after["status"] == "expected" and after["berth"] == "B1" and after["status_times"]["arrived"] is None
    incoherent = client.patch(f"/api/vessel-calls/{call_id}", json={"vessel_type": "auto"},
                              headers=ops.auth(tokens["manager"]))
    assert incoherent.status_code == 422 and incoherent.json["errors"][0]["field"] == "planned.discharge.heavy"
    assert client.get(f"/api/vessel-calls/{call_id}").json["vessel_type"] == "auto_heavy"


def test_validation_errors_over_http(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    manager, clerk = ops.auth(tokens["manager"]), ops.auth(tokens["clerk"])
    bad_call = client.post("/api/vessel-calls", json=ops.vessel_payload(planned_end="2026-04-01T00:00:00Z"),
                           headers=manager)
    assert bad_call.status_code == 422 and bad_call.json["errors"] == [
        {"field": "planned_end", "message": "must be after planned_start"}]
    not_json = client.post("/api/vessel-calls", data="vessel_name=x", headers=manager)
    assert not_json.status_code == 422 and not_json.json["errors"][0]["field"] == "body"
    call_id = ops.make_active_call(client, tokens["manager"])
    negative = client.post("/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged",
                                                 "category": "auto", "units": -4, "zone": "A1"}, headers=clerk)
    assert negative.status_code == 422 and negative.json["errors"] == [
        {"field": "units", "message": "must not be negative (got -4)"}]
    unknown = client.post("/api/tallies", json={"vessel_call_id": 999, "direction": "discharged", "category": "auto",
                                                "units": 4, "zone": "A1"}, headers=clerk)
    assert unknown.status_code == 422 and unknown.json["errors"] == [
        {"field": "vessel_call_id", "message": "no vessel call with id 999"}]
    no_category = client.post("/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged",
                                                    "units": 4, "zone": "A1"}, headers=clerk)
    assert no_category.status_code == 422 and no_category.json["errors"][0]["field"] == "category"
    assert client.get("/api/vessel-calls/999").status_code == 404
    assert client.get("/api/vessel-calls?status=sailing").json["errors"][0]["field"] == "status"
    assert count(ops_app, tallies) == 0


def test_tallies_only_while_operations_are_active(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    manager, clerk = ops.auth(tokens["manager"]), ops.auth(tokens["clerk"])
    heavy = ops.vessel_payload(vessel_type="heavy", operation_type="load",
                               planned={"load": {"heavy": 20}})
    call_id = client.post("/api/vessel-calls", json=heavy, headers=manager).json["id"]
    tally = {"vessel_call_id": call_id, "direction": "loaded", "units": 3, "zone": "H1"}
    early = client.post("/api/tallies", json=tally, headers=clerk)
    assert early.status_code == 409 and "is expected; tallies are accepted only while operations are active" in \
        early.json["message"]
    for status in ("arrived", "berthed", "operations_active"):
        client.patch(f"/api/vessel-calls/{call_id}", json={"status": status}, headers=manager)
    posted = client.post("/api/tallies", json=tally, headers=clerk)
    assert posted.status_code == 201 and posted.json["tally"]["category"] == "heavy"  # the only category
    wrong_direction = client.post("/api/tallies", json={**tally, "direction": "discharged"}, headers=clerk)
    assert wrong_direction.status_code == 422 and wrong_direction.json["errors"][0]["field"] == "direction"
    wrong_category = client.post("/api/tallies", json={**tally, "category": "auto"}, headers=clerk)
    assert wrong_category.status_code == 422 and wrong_category.json["errors"][0]["field"] == "category"
    for status in ("operations_complete", "departed"):
        client.patch(f"/api/vessel-calls/{call_id}", json={"status": status}, headers=manager)
    departed = client.post("/api/tallies", json=tally, headers=clerk)
    assert departed.status_code == 409 and departed.json["errors"][0]["field"] == "vessel_call_id"
    assert "is departed" in departed.json["message"]
    assert count(ops_app, tallies) == 1


def test_permissions_per_role(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    manager, clerk = ops.auth(tokens["manager"]), ops.auth(tokens["clerk"])
    anonymous = client.post("/api/vessel-calls", json=ops.vessel_payload())
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/vessel-calls", json=ops.vessel_payload(),
                       headers=ops.auth("sdo_not-a-real-token")).status_code == 401
    as_clerk = client.post("/api/vessel-calls", json=ops.vessel_payload(), headers=clerk)
    assert as_clerk.status_code == 403 and as_clerk.json["errors"][0] == {
        "field": "role", "message": "a clerk may not manage vessel calls"}
    assert count(ops_app, vessel_calls) == 0
    call_id = ops.make_active_call(client, tokens["manager"])
    assert client.patch(f"/api/vessel-calls/{call_id}", json={"berth": "B2"}, headers=clerk).status_code == 403
    tally = {"vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": 5, "zone": "A1"}
    assert client.post("/api/tallies", json=tally).status_code == 401
    assert client.post("/api/tallies", json=tally, headers=clerk).status_code == 201
    assert client.post("/api/tallies", json=tally, headers=manager).status_code == 201
    # reads are open
    assert client.get("/api/vessel-calls").status_code == 200
    assert len(client.get(f"/api/vessel-calls/{call_id}/tallies").json["tallies"]) == 2
    assert client.get(f"/api/vessel-calls/{call_id}").json["tallied"]["discharge"]["auto"] == 10


def test_a_repeated_tally_counts_once(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    clerk = ops.auth(tokens["clerk"])
    call_id = ops.make_active_call(client, tokens["manager"])
    tally = {"vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": 7, "zone": "A1",
             "idempotency_key": "phone-42-0001"}
    first = client.post("/api/tallies", json=tally, headers=clerk)
    again = client.post("/api/tallies", json=tally, headers=clerk)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["created"] is False and again.json["tally"] == first.json["tally"]
    by_header = client.post("/api/tallies", json={k: v for k, v in tally.items() if k != "idempotency_key"},
                            headers={**clerk, "Idempotency-Key": "phone-42-0001"})
    assert by_header.status_code == 200 and by_header.json["tally"]["id"] == first.json["tally"]["id"]
    reused = client.post("/api/tallies", json={**tally, "units": 8}, headers=clerk)
    assert reused.status_code == 409 and reused.json["errors"][0]["field"] == "idempotency_key"
    assert count(ops_app, tallies) == 1
    assert client.get(f"/api/vessel-calls/{call_id}").json["tallied"]["discharge"]["auto"] == 7


def test_summary_progress_and_projection(ops_app: Any, tokens: dict, ops: Any) -> None:
    client = ops_app.test_client()
    call_id = ops.make_active_call(client, tokens["manager"])
    for i, units in enumerate((30, 20)):
        client.post("/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged", "category": "auto",
                                          "units": units, "zone": "A1", "idempotency_key": f"k{i}"},
                    headers=ops.auth(tokens["clerk"]))
    summary = client.get("/api/summary").json
    call = next(c for c in summary["calls"] if c["id"] == call_id)
    lines = {(p["direction"], p["category"]): p for p in call["progress"]}
    assert lines[("discharge", "auto")] == {"direction": "discharge", "category": "auto", "planned": 100,
                                            "tallied": 50, "percent": 50}
    assert call["planned_total"] == 160 and call["tallied_total"] == 50 and call["remaining"] == 110
    assert call["shift_units"] == 50 and call["units_per_hour"] > 0 and call["projected_completion"]
    assert summary["berths"][0] == {"berth": "B1", "occupied": True, "vessel_call_id": call_id,
                                    "vessel_name": "Aurora Leader", "status": "operations_active", "next": []}
    page = client.get("/")
    assert page.status_code == 200 and b"Aurora Leader" in page.data and b'value="31"' in page.data


def test_freshness_health_check(ops_app: Any, tokens: dict, ops: Any) -> None:
    engine = ops_app.extensions["stevedores"].engine
    assert freshness(engine, 30)["active_vessels"] == 0
    client = ops_app.test_client()
    call_id = ops.make_active_call(client, tokens["manager"])
    client.post("/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged", "category": "auto",
                                      "units": 3, "zone": "A1"}, headers=ops.auth(tokens["clerk"]))
    fresh = freshness(engine, 30)
    assert fresh["status"] == "healthy" and fresh["minutes_since_last_tally"] < 5
    stale = freshness(engine, 30, now=utcnow() + timedelta(minutes=45))
    assert stale["status"] == "warning" and stale["stalest_vessel"] == "Aurora Leader"
    checks = {c.name: c for _p, c in ops_app.extensions["stevedores"].health_checks}
    assert checks["operations"].critical is False and checks["operations"].func()["status"] == "healthy"


def test_accounts_and_demo_data(ops_app: Any, tokens: dict, ops: Any) -> None:
    import pytest
    from stevedores_operations.accounts import AccountError, authenticate, create_user, deactivate_user
    from stevedores_operations.demo import has_data, load_demo

    engine = ops_app.extensions["stevedores"].engine
    with pytest.raises(AccountError, match="username: 'clara' already exists"):
        create_user(engine, "Clara", ops.PASSWORD, "clerk")
    with pytest.raises(AccountError, match="role: expected one of clerk, manager"):
        create_user(engine, "zed", ops.PASSWORD, "admin")
    assert authenticate(engine, "clara", "wrong") is None and authenticate(engine, "ghost", ops.PASSWORD) is None
    assert authenticate(engine, "CLARA", ops.PASSWORD).role == "clerk"
    deactivate_user(engine, "clara")
    assert authenticate(engine, "clara", ops.PASSWORD) is None
    locked_out = ops_app.test_client().post("/api/tallies", json={}, headers=ops.auth(tokens["clerk"]))
    assert locked_out.status_code == 401
    assert not has_data(engine)
    calls, n_tallies = load_demo(engine)
    assert calls == 6 and n_tallies > 50 and has_data(engine)
    summary = ops_app.test_client().get("/api/summary").json
    assert summary["totals"]["active_calls"] == 2 and summary["totals"]["shift_units"] >= 0
    assert {b["berth"] for b in summary["berths"]} == {"B1", "B2", "B3", "B4"}
    assert [e["vessel_name"] for e in summary["expected"]] == ["Nordic Spirit"]
