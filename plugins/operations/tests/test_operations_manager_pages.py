"""Managers' pages (create and edit a vessel call through forms) and the CSV export of a call's tallies."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from stevedores_operations.manager_pages import csv_cell, form_to_payload

FORM = {"vessel_name": "Höegh Target", "shipping_line": "Höegh Autoliners", "vessel_type": "auto_heavy",
        "operation_type": "discharge", "berth": "B4", "planned_start": "2026-06-01T06:00",
        "planned_end": "2026-06-02T18:30", "planned_discharge_auto": "1200", "planned_discharge_heavy": "40",
        "planned_load_auto": "", "planned_load_heavy": ""}


@pytest.fixture
def site(make_stevedores_app: Any, tmp_path: Any, ops: Any) -> Any:
    app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'm.sqlite3'}"})
    tokens = {"clerk": ops.add_user(app, "clara", "clerk"), "manager": ops.add_user(app, "manu", "manager")}
    clients = {"anonymous": app.test_client(), "clerk": app.test_client(), "manager": app.test_client()}
    for role, username in (("clerk", "clara"), ("manager", "manu")):
        assert ops.login(clients[role], username, ops.PASSWORD).status_code == 303
    return app, tokens, clients


def test_the_form_is_turned_into_the_apis_payload() -> None:
    payload = form_to_payload(FORM)
    assert payload["planned"] == {"discharge": {"auto": "1200", "heavy": "40"}, "load": {"auto": 0, "heavy": 0}}
    assert payload["vessel_name"] == "Höegh Target" and payload["planned_end"] == "2026-06-02T18:30"
    assert form_to_payload({"berth": "B2"}, partial=True) == {"berth": "B2"}


def test_a_manager_creates_and_edits_a_vessel_call_through_the_forms(site: Any, ops: Any) -> None:
    app, _tokens, clients = site
    manager = clients["manager"]
    page = manager.get("/vessels/new")
    assert page.status_code == 200
    for name in ("vessel_name", "shipping_line", "vessel_type", "operation_type", "berth", "planned_start",
                 "planned_end", "planned_discharge_auto", "planned_discharge_heavy", "planned_load_auto"):
        assert f'name="{name}"'.encode() in page.data, name
    created = manager.post("/vessels", data={**FORM, "csrf_token": ops.csrf_of(page.data)})
    assert created.status_code == 303
    call_id = int(created.headers["Location"].rsplit("/", 1)[1])
    call = manager.get(f"/api/vessel-calls/{call_id}").json
    assert (call["status"], call["berth"], call["planned_end"]) == ("expected", "B4", "2026-06-02T18:30:00Z")
    assert call["planned"]["discharge"] == {"auto": 1200, "heavy": 40}
    vessel_page = manager.get(f"/vessels/{call_id}").data
    assert b"Created H\xc3\xb6egh Target" in vessel_page and b"Edit vessel call" in vessel_page
    assert b'value="2026-06-02T18:30"' in vessel_page  # the edit form shows the call's values
    edited = manager.post(f"/vessels/{call_id}", data={**FORM, "berth": "B7", "planned_discharge_auto": "1300",
                                                       "csrf_token": ops.csrf_of(vessel_page)})
    assert edited.status_code == 303
    call = manager.get(f"/api/vessel-calls/{call_id}").json
    assert call["berth"] == "B7" and call["planned"]["discharge"]["auto"] == 1300


def test_errors_name_the_field_and_keep_the_values(site: Any, ops: Any) -> None:
    _app, _tokens, clients = site
    manager = clients["manager"]
    token = ops.csrf_of(manager.get("/vessels/new").data)
    bad = {**FORM, "vessel_name": "Kept Name", "planned_discharge_heavy": "-3", "planned_load_auto": "20",
           "planned_end": "2026-05-01T00:00", "csrf_token": token}
    refused = manager.post("/vessels", data=bad)
    assert refused.status_code == 422
    assert b"<strong>planned_discharge_heavy</strong>: must not be negative (got -3)" in refused.data
    assert b'value="Kept Name"' in refused.data and b'value="-3"' in refused.data  # what was typed stays
    assert re.search(rb'name="planned_discharge_heavy"[^>]*aria-invalid="true"', refused.data)
    assert b'id="planned_discharge_heavy-error"' in refused.data  # the message beside the field
    again = manager.post("/vessels", data={**bad, "planned_discharge_heavy": "3"})
    assert again.status_code == 422
    assert b"<strong>planned_load_auto</strong>: a discharge operation does not load; plan 0" in again.data
    assert b"<strong>planned_end</strong>: must be after planned_start" in again.data
    assert manager.get("/api/vessel-calls").json["vessel_calls"] == []  # nothing half-written


def test_roles_and_csrf_on_the_manager_pages(site: Any, ops: Any) -> None:
    app, tokens, clients = site
    call_id = ops.make_active_call(app.test_client(), tokens["manager"])
    anonymous, clerk, manager = clients["anonymous"], clients["clerk"], clients["manager"]
    to_login = anonymous.get("/vessels/new")
    assert to_login.status_code == 302 and "/login?next=/vessels/new" in to_login.headers["Location"]
    assert clerk.get("/vessels/new").status_code == 403
    token = ops.csrf_of(clerk.get("/").data)
    refused = clerk.post("/vessels", data={**FORM, "csrf_token": token})
    assert refused.status_code == 403 and b"A clerk may not create or change vessel calls." in refused.data
    assert clerk.post(f"/vessels/{call_id}", data={"berth": "X", "csrf_token": token}).status_code == 403
    assert b"Edit vessel call" not in clerk.get(f"/vessels/{call_id}").data
    assert manager.post("/vessels", data=FORM).status_code == 400  # no CSRF token
    assert manager.post(f"/vessels/{call_id}", data={"berth": "X", "csrf_token": "forged"}).status_code == 400
    assert manager.post("/vessels/999", data={"berth": "X", "csrf_token": ops.csrf_of(manager.get("/").data)}
                        ).status_code == 404
    assert len(manager.get("/api/vessel-calls").json["vessel_calls"]) == 1


def test_every_tally_as_csv_safe_to_open_in_a_spreadsheet(site: Any, ops: Any) -> None:
    app, tokens, clients = site
    call_id = ops.make_active_call(app.test_client(), tokens["manager"])
    api = app.test_client()
    for units, zone in ((5, "A1"), (7, "=HYPERLINK(\"http://evil\")"), (2, "@SUM(1)")):
        posted = api.post("/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged",
                                                 "category": "auto", "units": units, "zone": zone},
                          headers=ops.auth(tokens["clerk"]))
        assert posted.status_code == 201, posted.json
    to_login = clients["anonymous"].get(f"/vessels/{call_id}/tallies.csv")
    assert to_login.status_code == 302 and "/login" in to_login.headers["Location"]
    answer = clients["clerk"].get(f"/vessels/{call_id}/tallies.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv" and answer.is_streamed
    assert answer.headers["Content-Disposition"] == f'attachment; filename="aurora-leader-{call_id}-tallies.csv"'
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == ["time", "direction", "category", "units", "zone", "shift", "clerk"]
    assert [(r[1], r[2], r[3], r[4], r[6]) for r in rows[1:]] == [
        ("discharged", "auto", "5", "A1", "clara"),
        ("discharged", "auto", "7", "'=HYPERLINK(\"http://evil\")", "clara"),
        ("discharged", "auto", "2", "'@SUM(1)", "clara")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[0]) for r in rows[1:])
    assert clients["clerk"].get("/vessels/999/tallies.csv").status_code == 404
    assert [csv_cell(v) for v in ("+1", "-1", "\tx", "plain", 5)] == ["'+1", "'-1", "'\tx", "plain", 5]
