"""The database engine every plugin shares: SQLite by default, PostgreSQL in production.

One engine per process: after a fork the inherited pool is discarded (never closed,
which would close the parent's sockets) and a fresh one is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

if TYPE_CHECKING:
    from .settings import Config


def normalize_url(raw: str) -> URL:
    """``postgres://`` and ``postgresql://`` use psycopg 3; relative SQLite paths stay relative."""
    url = make_url(raw)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def build_engine(config: Config) -> Engine:
    """A new engine from DATABASE_URL with pre-ping and the per-worker pool size."""
    url = normalize_url(config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=config["DB_POOL_SIZE"], max_overflow=config["DB_MAX_OVERFLOW"],
        pool_recycle=1800, pool_timeout=10, connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer across workers
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a commit no longer waits for the disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class EngineHolder:
    """Builds the engine lazily and renews its pool in a forked child."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._engine: Engine | None = None
        self._pid = os.getpid()

    def get(self) -> Engine:
        """The engine for this process."""
        if self._engine is None:
            self._engine, self._pid = build_engine(self._config), os.getpid()
        elif self._pid != os.getpid():
            self.after_fork()
        return self._engine

    def after_fork(self) -> None:
        """Drop connections inherited from the parent without closing them under it."""
        if self._engine is not None:
            self._engine.dispose(close=False)
        self._pid = os.getpid()

    def dispose(self) -> None:
        """Close this process's connections."""
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
