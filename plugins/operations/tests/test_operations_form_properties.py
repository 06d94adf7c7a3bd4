"""Property-based tests over the forms (issue 14): whatever a browser can send, never a 5xx.

Hypothesis draws each field from hostile text (any Unicode but surrogates, which a form cannot carry:
NUL, CR/LF, controls, right-to-left marks, 5000 characters), from near-valid values (numbers with signs,
spaces and thousands of digits, dates in year 1 or 9999, with odd offsets) and from the valid ones,
plus raw request bodies (invalid UTF-8, broken percent-encoding). The app runs in-process on SQLite
and on PostgreSQL, with a manager logged in. Examples per form and database: OPERATIONS_FORM_EXAMPLES
(default 150).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("OPERATIONS_FORM_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\r\n", "\t", "\u202e", "\ufeff", "\u2028", "' OR 1=1 --", "<script>",
                     "%00", "%0d%0a", "/\r\nSet-Cookie: x=1", "/\\evil.example", "9" * 5000, "-1", "0", "1e9",
                     "2147483648", "99999999999999999999",
                     " 12 ", "NaN", "Infinity", "0099-01-01T00:00", "9999-12-31T23:59", "0001-01-01T00:00:00+14:00",
                     "2026-02-30T10:00", "2026-05-01T06:00", "2026-05-01T06:00:00Z", "x" * 200]),
)


def choice_or_hostile(*valid: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(valid), HOSTILE_TEXT)


@st.composite
def mutated(draw: Any, valid: dict[str, str]) -> dict[str, str]:
    """A valid form with one or two fields made hostile or left out: reaches the code behind the checks
    that a fully random form stops at (a NUL in the zone of an otherwise valid tally)."""
    form = dict(valid)
    for name in draw(st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=2, unique=True)):
        value = draw(st.one_of(HOSTILE_TEXT, st.none()))
        if value is None:
            form.pop(name)
        else:
            form[name] = value
    return form


def forms(valid: dict[str, str], fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Half valid forms mutated in a field or two, half forms drawn field by field."""
    return st.one_of(mutated(valid), st.fixed_dictionaries({}, optional=fields))


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> Any:
    """argon2 at its lowest cost: these tests are about input handling, and a login per example must be quick."""
    from argon2 import PasswordHasher
    from stevedores_operations import accounts

    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts._dummy_hash.cache_clear()
    yield accounts._hasher
    accounts._dummy_hash.cache_clear()


@pytest.fixture
def site(make_stevedores_app: Any, database_url: str, ops: Any, cheap_hashing: Any) -> Any:
    """A manager logged in (client, CSRF token) and an active vessel call (id 1), on SQLite and PostgreSQL."""
    from sqlalchemy import update
    from stevedores_operations.tables import users

    app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": database_url})
    manager = ops.add_user(app, "manu", "manager")
    with app.extensions["stevedores"].engine.begin() as conn:
        conn.execute(update(users).values(password_hash=cheap_hashing.hash(ops.PASSWORD)))
    call_id = ops.make_active_call(app.test_client(), manager)
    client = app.test_client()
    token = ops.csrf_of(client.get("/login").data)
    assert client.post("/login", data={"username": "manu", "password": ops.PASSWORD, "csrf_token": token}
                       ).status_code == 303
    return app, client, ops.csrf_of(client.get("/").data), call_id


def post_form(client: Any, path: str, fields: dict[str, str], token: str) -> Any:
    return client.post(path, data={**fields, "csrf_token": token})


@given(forms({"username": "manu", "password": "correct horse battery", "next": "/vessels/1"},
             {"username": choice_or_hostile("manu", "MANU", "nobody"),
              "password": choice_or_hostile("wrong password", "correct horse battery"),
              "next": choice_or_hostile("/", "/vessels/1", "//evil.example", "/%09/evil.example/")}))
@SETTINGS
def test_login_form_never_fails(site: Any, ops: Any, fields: dict[str, str]) -> None:
    app, _client, _token, _call_id = site
    client = app.test_client()  # a fresh visitor each time: a successful login must not carry over
    response = post_form(client, "/login", fields, ops.csrf_of(client.get("/login").data))
    assert response.status_code in (303, 401), response.status_code
    if response.status_code == 303:
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location


@given(forms({"direction": "discharged", "category": "auto", "units": "1", "zone": "A1"}, {
    "direction": choice_or_hostile("discharged", "loaded"), "category": choice_or_hostile("auto", "heavy"),
    "units": choice_or_hostile("1", "5", "5000", "5001"), "zone": choice_or_hostile("A1", "H2"),
    "shift": choice_or_hostile("06:00-14:00"), "tallied_at": choice_or_hostile("2026-05-01T06:00:00Z"),
    "idempotency_key": choice_or_hostile("k-1", "k-2")}))
@SETTINGS
def test_tally_form_never_fails(site: Any, fields: dict[str, str]) -> None:
    _app, client, token, call_id = site
    response = post_form(client, f"/vessels/{call_id}/tallies", fields, token)
    assert response.status_code in (303, 409, 422), response.status_code


VESSEL_FIELDS = {
    "vessel_name": choice_or_hostile("Aurora Leader"), "shipping_line": choice_or_hostile("Eastwind RoRo"),
    "berth": choice_or_hostile("B1"), "vessel_type": choice_or_hostile("auto", "heavy", "auto_heavy"),
    "operation_type": choice_or_hostile("discharge", "load", "discharge_loadback"),
    "planned_start": choice_or_hostile("2026-05-01T06:00"), "planned_end": choice_or_hostile("2026-05-02T06:00"),
    **{f"planned_{d}_{c}": choice_or_hostile("0", "10", "100000", "100001")
       for d in ("discharge", "load") for c in ("auto", "heavy")},
    "status": choice_or_hostile("arrived", "departed"),
}


VALID_VESSEL = {"vessel_name": "Aurora Leader", "shipping_line": "Eastwind RoRo", "berth": "B1",
                "vessel_type": "auto", "operation_type": "discharge", "planned_start": "2026-05-01T06:00",
                "planned_end": "2026-05-02T06:00", "planned_discharge_auto": "10"}


@given(forms(VALID_VESSEL, VESSEL_FIELDS), st.sampled_from(["/vessels", "/vessels/1", "/vessels/2"]))
@SETTINGS
def test_vessel_forms_never_fail(site: Any, fields: dict[str, str], path: str) -> None:
    app, client, token, _call_id = site
    assert any(rule.rule == "/vessels" for rule in app.url_map.iter_rules())  # the forms under test exist
    response = post_form(client, path, fields, token)
    assert response.status_code in (303, 404, 409, 422), response.status_code


@given(st.binary(max_size=300), st.sampled_from(["/login", "/vessels/1/tallies", "/vessels", "/vessels/1/status",
                                                  "/logout"]))
@SETTINGS
def test_raw_form_bodies_never_fail(site: Any, body: bytes, path: str) -> None:
    """Bytes no browser form would send as such: invalid UTF-8, stray '%', '&&=', NUL."""
    _app, client, token, _call_id = site
    raw = body + b"&csrf_token=" + token.encode()
    response = client.post(path, data=raw, content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500, (path, body, response.status_code)
