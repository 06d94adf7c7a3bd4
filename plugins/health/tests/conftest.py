"""Fixtures of the health plugin's tests: a PostgreSQL database per module, stable thresholds."""

from __future__ import annotations

import os
import uuid
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from stevedores import hookimpl
from stevedores.testing import require_service

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: The system check looks at the real machine (shared with other test runs): keep its
#: thresholds out of the way unless a test is about them.
CALM_SYSTEM = {"HEALTH_LOAD_WARN_PER_CPU": "1000", "HEALTH_DISK_MIN_FREE_PERCENT": "0",
               # Tests break things and ask again at once; the cache has its own test.
               "HEALTH_CACHE_SECONDS": "0"}


@pytest.fixture(scope="module")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Factory: a new database on the shared PostgreSQL per call; all dropped after the module."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        require_service("PostgreSQL at 127.0.0.1:5432", False, str(exc).splitlines()[0])
    names: list[str] = []

    def create() -> str:
        name = f"stevedores_health_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield create
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def drop_database() -> Callable[[str], None]:
    """Drop a database made by ``postgres_databases`` now, terminating its connections (a real outage)."""

    def drop(url: str) -> None:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        finally:
            admin.dispose()

    return drop


class ExtraChecks:
    """A throwaway plugin object contributing the given checks (registered directly)."""

    def __init__(self, checks: list) -> None:
        self.checks = checks

    @hookimpl
    def stevedores_health_checks(self) -> list:
        """The checks given to the constructor."""
        return list(self.checks)


@pytest.fixture
def health_app(make_stevedores_app: Callable) -> Callable:
    """Factory: ``health_app(*checks, env=None)``: the health plugin plus a plugin contributing ``checks``."""
    def make(*checks: object, env: dict | None = None, plugins: tuple = ("health",)) -> object:
        return make_stevedores_app(plugins=list(plugins), env={**CALM_SYSTEM, **(env or {})},
                                   extra_plugins=[("extra", ExtraChecks(list(checks)))])

    return make
