"""Fixtures of the operations plugin's tests: databases (SQLite and the real PostgreSQL), apps, accounts."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, insert, text

from stevedores.testing import temporary_postgres_database

TABLES = ("operations_tallies", "operations_api_tokens", "operations_vessel_calls", "operations_users")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of its own on the shared PostgreSQL, dropped after the module."""
    with temporary_postgres_database("stevedores_ops") as url:
        yield url


def empty_tables(url: str) -> None:
    """Delete every operations row (the schema stays), so each test starts empty."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.has_table(conn, "operations_users"):
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Each test using this runs twice: on an SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'operations.sqlite3'}"
    url = request.getfixturevalue("postgres_url")
    empty_tables(url)
    return url


@pytest.fixture
def ops_app(make_stevedores_app: Callable[..., Any], database_url: str) -> Any:
    """An app with only the operations plugin, on the parametrized database."""
    return make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": database_url})


@functools.cache
def password_hash(password: str) -> str:
    """One argon2 hash per password per test session (hashing is deliberately slow)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


PASSWORD = "correct horse battery"


def add_user(app: Any, username: str, role: str) -> str:
    """Insert an account (password PASSWORD) and return a fresh API token for it."""
    from stevedores_operations.accounts import issue_token
    from stevedores_operations.domain import utcnow
    from stevedores_operations.tables import users

    engine = app.extensions["stevedores"].engine
    with engine.begin() as conn:
        conn.execute(insert(users).values(username=username, password_hash=password_hash(PASSWORD), role=role,
                                          active=True, created_at=utcnow()))
    return issue_token(engine, username)


@pytest.fixture
def tokens(ops_app: Any) -> dict[str, str]:
    """Bearer tokens of a clerk and a manager."""
    return {"clerk": add_user(ops_app, "clara", "clerk"), "manager": add_user(ops_app, "manu", "manager")}


def auth(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def vessel_payload(**overrides: Any) -> dict[str, Any]:
    """A valid vessel call (auto + heavy, discharge + loadback)."""
    body = {
        "vessel_name": "Aurora Leader", "shipping_line": "Eastwind RoRo", "vessel_type": "auto_heavy",
        "operation_type": "discharge_loadback", "berth": "B1",
        "planned": {"discharge": {"auto": 100, "heavy": 10}, "load": {"auto": 50, "heavy": 0}},
        "planned_start": "2026-05-01T06:00:00Z", "planned_end": "2026-05-02T06:00:00Z",
    }
    body.update(overrides)
    return body


def make_active_call(client: Any, manager: str, **overrides: Any) -> int:
    """Create a vessel call and walk it to operations_active; returns its id."""
    response = client.post("/api/vessel-calls", json=vessel_payload(**overrides), headers=auth(manager))
    assert response.status_code == 201, response.json
    call_id = response.json["id"]
    for status in ("arrived", "berthed", "operations_active"):
        moved = client.patch(f"/api/vessel-calls/{call_id}", json={"status": status}, headers=auth(manager))
        assert moved.status_code == 200, moved.json
    return call_id


def csrf_of(page: bytes) -> str:
    """The CSRF token in a page's forms (the hidden ``csrf_token`` field)."""
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1).decode()


def login(client: Any, username: str, password: str) -> Any:
    """Log ``client`` in through the login form (its CSRF token included); the answer (303 when it worked)."""
    token = csrf_of(client.get("/login").data)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                       "next": "/"})


@pytest.fixture(scope="session")
def ops() -> Any:
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(auth=auth, vessel_payload=vessel_payload, make_active_call=make_active_call,
                                 add_user=add_user, PASSWORD=PASSWORD, empty_tables=empty_tables,
                                 csrf_of=csrf_of, login=login)
