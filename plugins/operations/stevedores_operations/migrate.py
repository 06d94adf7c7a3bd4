"""Schema migrations (Alembic) with their own version table, run at start-up or by command.

Several processes may start at once (gunicorn without preload, several containers):
the upgrade takes a lock first (a PostgreSQL advisory lock, or an exclusive file lock
beside an SQLite file), so exactly one of them migrates and the others find the schema
already at head.
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from stevedores import unbounded_statements

log = logging.getLogger("stevedores.operations")

VERSION_TABLE = "alembic_version_operations"
MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK_KEY = 0x5E7E_D0E5  # any constant shared by every process of this plugin


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic configuration pointing at this package's migrations (no alembic.ini needed)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision`` under a lock; returns (revision before, revision after)."""
    with _migration_lock(engine), engine.begin() as conn, unbounded_statements(conn):
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        before = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        command.upgrade(alembic_config(conn), revision)
        after = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if before != after:
        log.info("operations schema upgraded from %s to %s", before or "empty", after)
    return before, after


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive file lock beside an SQLite database file; nothing for other databases."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database + ".operations-migrate.lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
