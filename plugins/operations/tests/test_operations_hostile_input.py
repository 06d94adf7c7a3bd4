"""Issue 14's findings on input, each a test: dates out of range, huge ids, NUL and lone surrogates,
CR/LF in ``next``, and rows already stored out of range (the pages must still render)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import insert, update

pytestmark = pytest.mark.timeout(120)


def fields_of(response: Any) -> list[str]:
    return [e["field"] for e in response.json["errors"]]


@pytest.fixture
def active(ops_app: Any, tokens: dict[str, str], ops: Any) -> int:
    return ops.make_active_call(ops_app.test_client(), tokens["manager"])


@pytest.mark.parametrize("moment", ["0099-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                                    "0001-01-01T00:00:00+14:00"])
def test_tally_dates_outside_the_window_are_422_naming_the_field(ops_app: Any, tokens: dict[str, str], active: int,
                                                                 ops: Any, moment: str) -> None:
    response = ops_app.test_client().post("/api/tallies", headers=ops.auth(tokens["clerk"]), json={
        "vessel_call_id": active, "direction": "discharged", "category": "auto", "units": 1, "zone": "A",
        "tallied_at": moment})
    assert response.status_code == 422, response.json
    assert fields_of(response) == ["tallied_at"]
    assert "2000-01-01" in response.json["errors"][0]["message"] or "ISO 8601" in response.json["errors"][0]["message"]


@pytest.mark.parametrize("field", ["planned_start", "planned_end"])
def test_vessel_dates_outside_the_window_are_422(ops_app: Any, tokens: dict[str, str], ops: Any, field: str) -> None:
    client = ops_app.test_client()
    created = client.post("/api/vessel-calls", headers=ops.auth(tokens["manager"]),
                          json=ops.vessel_payload(**{field: "0099-05-01T06:00:00Z"}))
    assert created.status_code == 422 and field in fields_of(created)
    good = client.post("/api/vessel-calls", headers=ops.auth(tokens["manager"]), json=ops.vessel_payload())
    patched = client.patch(f"/api/vessel-calls/{good.json['id']}", headers=ops.auth(tokens["manager"]),
                           json={field: "2100-01-01T00:00:00Z"})
    assert patched.status_code == 422 and fields_of(patched) == [field]


@pytest.mark.parametrize("path", ["/vessels/{big}", "/api/vessel-calls/{big}", "/api/vessel-calls/{big}/tallies",
                                  "/api/vessel-calls/-1", "/vessels/-1", "/vessels/0", "/api/vessel-calls/{huge}",
                                  "/vessels/{big}/edit", "/vessels/{big}/tallies.csv"])
def test_ids_beyond_the_database_range_are_404(ops_app: Any, path: str) -> None:
    url = path.format(big=2**31, huge="9" * 5000)
    response = ops_app.test_client().get(url)
    assert response.status_code == 404


def test_writes_to_ids_beyond_the_range_are_404(ops_app: Any, tokens: dict[str, str], ops: Any) -> None:
    client = ops_app.test_client()
    big = 2**31
    assert client.patch(f"/api/vessel-calls/{big}", headers=ops.auth(tokens["manager"]),
                        json={"status": "arrived"}).status_code == 404
    assert client.post(f"/vessels/{big}/tallies", data={}).status_code == 404
    assert client.post(f"/vessels/{big}/status", data={}).status_code == 404
    assert client.post(f"/vessels/{big}", data={}).status_code == 404
    body = {"vessel_call_id": big, "direction": "discharged", "units": 1, "zone": "A"}
    refused = client.post("/api/tallies", headers=ops.auth(tokens["clerk"]), json=body)
    assert refused.status_code == 422 and fields_of(refused) == ["vessel_call_id"]


@pytest.mark.parametrize("bad", ["A\x00B", "A\ud800", "\udfff", "A\r\nB", "A\x7f", "A\u0085B"])
@pytest.mark.parametrize("field", ["vessel_name", "shipping_line", "berth"])
def test_vessel_text_with_nul_surrogates_or_controls_is_422(ops_app: Any, tokens: dict[str, str], ops: Any,
                                                            field: str, bad: str) -> None:
    response = ops_app.test_client().post("/api/vessel-calls", headers=ops.auth(tokens["manager"]),
                                          json=ops.vessel_payload(**{field: bad}))
    assert response.status_code == 422, response.data
    assert fields_of(response) == [field]


@pytest.mark.parametrize("field, bad", [("zone", "A\x00"), ("zone", "\ud83d"), ("shift", "x\x00"),
                                        ("idempotency_key", "k\ud800"), ("direction", "loaded\x00"),
                                        ("category", "\ud800"), ("units", "9" * 5000), ("units", "1e3"),
                                        ("units", 10**30)])
def test_tally_fields_with_hostile_values_are_422(ops_app: Any, tokens: dict[str, str], active: int, ops: Any,
                                                  field: str, bad: Any) -> None:
    body = {"vessel_call_id": active, "direction": "discharged", "category": "auto", "units": 1, "zone": "A",
            field: bad}
    response = ops_app.test_client().post("/api/tallies", headers=ops.auth(tokens["clerk"]), json=body)
    assert response.status_code == 422, response.data
    assert fields_of(response) == [field]


def test_the_tally_form_with_a_nul_byte_is_422(ops_app: Any, tokens: dict[str, str], active: int, ops: Any) -> None:
    client = ops_app.test_client()
    token = ops.csrf_of(client.get("/login").data)
    assert client.post("/login", data={"username": "clara", "password": ops.PASSWORD, "csrf_token": token}
                       ).status_code == 303
    page = client.get(f"/vessels/{active}").data
    refused = client.post(f"/vessels/{active}/tallies", data={
        "csrf_token": ops.csrf_of(page), "direction": "discharged", "category": "auto", "units": "3", "zone": "A\x00"})
    assert refused.status_code == 422 and b"<strong>zone</strong>: must not contain control characters" in refused.data


@pytest.mark.parametrize("username", ["clara%00", "%00", "cl%00ara'%20OR%201=1", "c" * 5000, "%ED%A0%80",
                                      "%FF%FE", "cl%0D%0Aara"])
@pytest.mark.parametrize("password", ["whatever", "correct%20horse%20battery", "%ED%A0%80%00"])
def test_login_with_a_hostile_username_is_a_clean_refusal(ops_app: Any, tokens: dict[str, str], ops: Any,
                                                          username: str, password: str) -> None:
    client = ops_app.test_client()
    token = ops.csrf_of(client.get("/login").data)
    body = f"username={username}&password={password}&csrf_token={token}"  # raw: the bytes a browser could send
    refused = client.post("/login", data=body.encode(), content_type="application/x-www-form-urlencoded")
    assert refused.status_code == 401 and b"Unknown username or wrong password." in refused.data


@pytest.mark.parametrize("target", ["/\r\nSet-Cookie: x=1", "/%0d%0aLocation:%20//evil", "/\n", "\r\n"])
def test_cr_lf_in_next_is_no_error(ops_app: Any, tokens: dict[str, str], ops: Any, target: str) -> None:
    client = ops_app.test_client()
    page = client.get("/login", query_string={"next": target})
    assert page.status_code == 200
    answer = client.post("/login", data={"username": "clara", "password": ops.PASSWORD,
                                         "csrf_token": ops.csrf_of(page.data), "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def _store_out_of_range(ops_app: Any, call_id: int) -> None:
    """What an earlier release let through: a tally in year 99 and a vessel call planned in year 99."""
    from stevedores_operations.tables import tallies, vessel_calls

    year_99 = datetime(99, 1, 1, 6, 0, tzinfo=timezone.utc)
    with ops_app.extensions["stevedores"].engine.begin() as conn:
        conn.execute(insert(tallies).values(vessel_call_id=call_id, direction="discharged", category="auto", units=3,
                                            shift="06:00-14:00", zone="A", clerk="old", tallied_at=year_99,
                                            idempotency_key="year-99"))
        conn.execute(update(vessel_calls).where(vessel_calls.c.id == call_id)
                     .values(planned_start=year_99, planned_end=datetime(9999, 12, 31, tzinfo=timezone.utc),
                             version=vessel_calls.c.version + 1))


def test_pages_render_rows_stored_out_of_range(ops_app: Any, tokens: dict[str, str], active: int, ops: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    _store_out_of_range(ops_app, active)
    client = ops_app.test_client()
    vessel = client.get(f"/vessels/{active}")
    assert vessel.status_code == 200 and b"Aurora Leader" in vessel.data
    dashboard = client.get("/")
    assert dashboard.status_code == 200 and b"Aurora Leader" in dashboard.data
    assert "out of range" in caplog.text
    api = client.get(f"/api/vessel-calls/{active}")
    assert api.status_code == 200 and api.json["planned_start"] == "0099-01-01T06:00:00Z"  # the API tells the truth
    assert client.get(f"/api/vessel-calls/{active}/tallies").status_code == 200
    assert client.get("/api/summary").status_code == 200
    # The page still takes tallies, and the chart draws the ones in range.
    posted = client.post("/api/tallies", headers=ops.auth(tokens["clerk"]), json={
        "vessel_call_id": active, "direction": "discharged", "category": "auto", "units": 2, "zone": "A"})
    assert posted.status_code == 201
    assert b"<polyline" in client.get(f"/vessels/{active}").data


def test_unrouted_api_urls_answer_json(ops_app: Any) -> None:
    client = ops_app.test_client()
    for path in (f"/api/vessel-calls/{2**31}", "/api/no-such-thing", "/api/vessel-calls/-1/tallies"):
        response = client.get(path)
        assert response.status_code == 404 and response.is_json and response.json["errors"], path
    refused = client.delete("/api/summary")
    assert refused.status_code == 405 and refused.is_json and "GET" in refused.headers["Allow"]
    page = client.get("/no-such-page")
    assert page.status_code == 404 and not page.is_json  # pages keep their HTML answers
