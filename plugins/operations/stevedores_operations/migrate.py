"""Schema migrations (Alembic) with their own version table, run at start-up or by command.

Several processes may start at once (gunicorn without preload, several containers):
the upgrade takes a lock first (locks.py: a PostgreSQL advisory lock, or an exclusive file
lock beside an SQLite file), so exactly one of them migrates and the others find the schema
already at head.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from .locks import exclusive

log = logging.getLogger("stevedores.operations")

VERSION_TABLE = "alembic_version_operations"
MIGRATIONS = Path(__file__).with_name("migrations")


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
    with exclusive(engine, "migrate") as conn:
        before = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        command.upgrade(alembic_config(conn), revision)
        after = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if before != after:
        log.info("operations schema upgraded from %s to %s", before or "empty", after)
    return before, after
