"""The shared engine: SQLite by default, the real PostgreSQL in production."""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from stevedores import unbounded_statements
from stevedores.database import normalize_url
from stevedores.testing import temporary_postgres_database


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of its own on the shared PostgreSQL, dropped after the module."""
    with temporary_postgres_database() as url:
        yield url


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_default_is_an_sqlite_file(make_stevedores_app: Callable, tmp_path) -> None:  # noqa: ANN001
    app = make_stevedores_app(plugins=[], env={"DATABASE_URL": f"sqlite:///{tmp_path}/nested/dir/db.sqlite3"})
    engine = app.extensions["stevedores"].engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert (tmp_path / "nested" / "dir" / "db.sqlite3").exists()


def test_postgresql_with_pre_ping_and_pool_size(make_stevedores_app: Callable, postgres_url: str) -> None:
    app = make_stevedores_app(plugins=[], env={"DATABASE_URL": postgres_url, "DB_POOL_SIZE": "3"})
    engine = app.extensions["stevedores"].engine
    assert engine.pool.size() == 3 and engine.pool._pre_ping
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == postgres_url.rsplit("/", 1)[1]


def test_a_forked_child_gets_a_fresh_pool(make_stevedores_app: Callable, postgres_url: str) -> None:
    app = make_stevedores_app(plugins=[], env={"DATABASE_URL": postgres_url})
    runtime = app.extensions["stevedores"]
    with runtime.engine.connect() as conn:
        parent_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            with runtime.engine.connect() as conn:
                os.write(write, str(conn.execute(text("SELECT pg_backend_pid()")).scalar()).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    child_backend = int(os.read(read, 64) or b"0")
    assert status == 0 and child_backend not in (0, parent_pid)
    with runtime.engine.connect() as conn:  # the parent's pooled connection still works
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == parent_pid


def test_postgresql_waits_are_bounded_and_migrations_may_lift_them(make_stevedores_app: Callable,
                                                                    postgres_url: str) -> None:
    app = make_stevedores_app(plugins=[], env={"DATABASE_URL": postgres_url, "DATABASE_STATEMENT_TIMEOUT": "0.5",
                                               "DATABASE_POOL_TIMEOUT": "0.3"})
    engine = app.extensions["stevedores"].engine
    assert engine.pool.timeout() == 0.3
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"
        with pytest.raises(OperationalError, match="canceling statement due to statement timeout"):
            conn.execute(text("SELECT pg_sleep(3)"))
    with engine.begin() as conn, unbounded_statements(conn):
        conn.execute(text("SELECT pg_sleep(1.6)"))  # beyond both the statement and the answer timeout
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"
        assert conn.connection.dbapi_connection.answer_timeout == 1.5


def test_sqlite_busy_timeout_is_the_statement_timeout(make_stevedores_app: Callable, tmp_path) -> None:  # noqa: ANN001
    app = make_stevedores_app(plugins=[], env={"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
                                               "DATABASE_STATEMENT_TIMEOUT": "2.5"})
    with app.extensions["stevedores"].engine.connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 2500
