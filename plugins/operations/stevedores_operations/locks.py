"""One process at a time across instances: a PostgreSQL advisory lock, or a file lock beside an SQLite file.

Several instances start at once (gunicorn without preload, several containers, each running
``stevedores demo-data`` in its start command): migrations and one-off loaders must run once.
The work runs inside :func:`exclusive`'s transaction and checks its precondition there
(check-inside-lock), so the second process finds the work done.
"""

from __future__ import annotations

import fcntl
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from stevedores import unbounded_statements

#: Advisory lock keys (any constants shared by every process of this plugin; ``migrate`` keeps the
#: key earlier releases used, so an old and a new instance starting together still exclude each other).
LOCK_KEYS = {"migrate": 0x5E7E_D0E5, "demo-data": 0x5E7E_D0E6}


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction (committed on success) that holds lock ``name`` (a key of :data:`LOCK_KEYS`).

    PostgreSQL: ``pg_advisory_xact_lock``, released with the transaction; SQLite file: an
    exclusive ``flock`` on ``<database>.operations-<name>.lock``. Waiting for the lock and the
    work are exempt from the statement timeout (``stevedores.unbounded_statements``).
    """
    key = LOCK_KEYS[name]
    with ExitStack() as stack:
        database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        if database and database != ":memory:":
            handle = stack.enter_context(open(Path(f"{database}.operations-{name}.lock"), "a"))
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        conn = stack.enter_context(engine.begin())
        stack.enter_context(unbounded_statements(conn))
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield conn
