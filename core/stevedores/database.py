"""The database engine every plugin shares: SQLite by default, PostgreSQL in production.

One engine per process: after a fork the inherited pool is discarded (never closed,
which would close the parent's sockets) and a fresh one is used.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .forking import renew_in_children

if TYPE_CHECKING:
    from .settings import Config


def normalize_url(raw: str) -> URL:
    """``postgres://`` and ``postgresql://`` use psycopg 3; relative SQLite paths stay relative."""
    url = make_url(raw)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def build_engine(config: Config) -> Engine:
    """A new engine from DATABASE_URL: pre-ping, the per-worker pool, and every wait bounded.

    Bounds (seconds, from the settings): DATABASE_CONNECT_TIMEOUT to connect,
    DATABASE_POOL_TIMEOUT to get a pooled connection (else ``sqlalchemy.exc.TimeoutError``),
    DATABASE_STATEMENT_TIMEOUT per statement (PostgreSQL cancels it; SQLite's busy timeout).
    On PostgreSQL the client also stops waiting for an answer one second after the
    statement timeout (see :class:`BoundedConnection`), and TCP keepalives plus
    ``tcp_user_timeout`` let the kernel drop a connection whose peer vanished.
    """
    url = normalize_url(config["DATABASE_URL"])
    statement_timeout = config["DATABASE_STATEMENT_TIMEOUT"]
    if url.get_backend_name() == "sqlite":
        pool: dict[str, Any] = {}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            pool["pool_timeout"] = config["DATABASE_POOL_TIMEOUT"]  # a file has a QueuePool; memory has none
        engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": statement_timeout}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    answer_timeout = statement_timeout + ANSWER_GRACE_SECONDS
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=config["DB_POOL_SIZE"], max_overflow=config["DB_MAX_OVERFLOW"],
        pool_recycle=1800, pool_timeout=config["DATABASE_POOL_TIMEOUT"], connect_args=postgres_connect_args(config),
    )
    if url.get_driver_name() == "psycopg":
        event.listen(engine, "do_connect", _bounded_connect(answer_timeout))
        engine.dialect.do_ping = _bounded_ping(engine.dialect.do_ping,  # type: ignore[method-assign]
                                               float(config["DATABASE_CONNECT_TIMEOUT"]))
    return engine


#: Seconds the client waits for an answer beyond the statement timeout before it drops the connection.
ANSWER_GRACE_SECONDS = 1.0


def own_connection_params(engine: Engine, config: Config) -> dict[str, Any]:
    """psycopg keyword arguments for a connection of one's own beside ``engine``'s pool (a LISTEN
    connection): the engine's URL as its dialect reads it, and :func:`postgres_connect_args`.
    PostgreSQL with psycopg only."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # SQLAlchemy's type adapters: a plain psycopg connection needs none
    return {**params, **postgres_connect_args(config)}


def postgres_connect_args(config: Config) -> dict[str, Any]:
    """The libpq connection parameters of every PostgreSQL connection of the engine (psycopg keywords):
    the connect timeout, the statement timeout, TCP keepalives and ``tcp_user_timeout`` (ms).

    Public so that a plugin opening a connection of its own beside the pool (the operations
    plugin's LISTEN connection) bounds its waits the same way.
    """
    statement_timeout = config["DATABASE_STATEMENT_TIMEOUT"]
    return {
        "connect_timeout": config["DATABASE_CONNECT_TIMEOUT"],
        "options": f"-c statement_timeout={round(statement_timeout * 1000)}",
        # A peer that vanished without a reset (a frozen network): the kernel gives up on an idle
        # pooled connection after 10 + 3 x 5 s of unanswered keepalives, and on unacknowledged
        # data after the answer timeout, instead of TCP's ~15 minutes of retransmissions.
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        "tcp_user_timeout": round((statement_timeout + ANSWER_GRACE_SECONDS) * 1000),
    }


class NoAnswer(psycopg.OperationalError):
    """The database did not answer within the answer timeout; the connection was closed."""


class BoundedConnection(psycopg.Connection):
    """A psycopg connection that stops waiting for the server after ``answer_timeout`` seconds.

    The server's statement_timeout cannot help when the network between us freezes
    (no reset, packets dropped or a proxy that stops forwarding): the cancel never
    arrives, the answer never comes, and psycopg waits forever (the issue measured
    requests hanging for a whole 90 s freeze). psycopg's own ``Connection.wait`` takes a
    ``timeout``; every query, fetch, commit and SQLAlchemy's pre-ping goes through it.
    On expiry the connection is closed (its protocol state is unknown) and
    :class:`NoAnswer` raised, which SQLAlchemy sees as a disconnect. A wait given a timeout of its
    own by the caller (psycopg's ``notifies(timeout=...)``) is left to psycopg: running out of that
    time says nothing about the server.
    """

    answer_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:  # noqa: D102
        limit = self.answer_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            return super().wait(gen, interval=interval, timeout=limit)
        except psycopg.OperationalError as exc:
            if timeout is not None or limit is None or self.closed or time.monotonic() - started < limit:
                raise
            self.pgconn.finish()
            raise NoAnswer(f"no answer from the database within {limit:g} s: connection closed") from exc


def _bounded_connect(answer_timeout: float) -> Any:
    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.answer_timeout = answer_timeout
        return connection

    return connect


def _bounded_ping(ping: Any, timeout: float) -> Any:
    """SQLAlchemy's pre-ping with the connect timeout as its answer timeout: a ping is trivial, so a
    frozen network is given up on as fast as a new connection would be (then one is opened)."""

    def bounded_ping(dbapi_connection: Any) -> bool:
        saved = getattr(dbapi_connection, "answer_timeout", None)
        if saved is None:
            return ping(dbapi_connection)
        dbapi_connection.answer_timeout = min(saved, timeout)
        try:
            return ping(dbapi_connection)
        finally:
            dbapi_connection.answer_timeout = saved

    return bounded_ping


@contextmanager
def unbounded_statements(connection: Connection) -> Iterator[Connection]:
    """Lift the statement and answer timeouts for the current transaction of ``connection``.

    For work that may legitimately run long: migrations, waiting for another
    instance's advisory lock, bulk loads. The server's ``statement_timeout`` is set to 0
    with ``SET LOCAL`` (ends with the transaction); the client's answer timeout is
    restored on exit. SQLite: nothing to lift.
    """
    if connection.dialect.name != "postgresql":
        yield connection
        return
    connection.execute(text("SET LOCAL statement_timeout = 0"))
    dbapi = connection.connection.dbapi_connection
    saved = getattr(dbapi, "answer_timeout", None)
    if saved is not None:
        dbapi.answer_timeout = None
    try:
        yield connection
    finally:
        if saved is not None:
            dbapi.answer_timeout = saved


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
        renew_in_children(self)

    def get(self) -> Engine:
        """The engine for this process."""
        if self._engine is None:
            self._engine = build_engine(self._config)
        return self._engine

    def after_fork(self) -> None:
        """In a forked child (stevedores.forking): drop the parent's connections without closing them under it."""
        if self._engine is not None:
            self._engine.dispose(close=False)

    def dispose(self) -> None:
        """Close this process's connections."""
        if self._engine is not None:
            self._engine.dispose()


def read_only_engine(raw_url: str) -> Engine:
    """An engine on ``raw_url`` that cannot write: PostgreSQL with read-only transactions,
    an SQLite file opened ``mode=ro``, or, when that file does not exist yet (it is created at
    the first start), an empty in-memory database. Dispose it after use."""
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            if not Path(url.database).exists():
                return create_engine("sqlite://")
            url = url.set(database=f"file:{Path(url.database).resolve()}?mode=ro", query={"uri": "true"})
        return create_engine(url)
    return create_engine(url, connect_args={"connect_timeout": 5,
                                            "options": "-c default_transaction_read_only=on"})


def probe_database(raw_url: str) -> str:
    """Connect to ``raw_url`` read-only and run ``SELECT 1``; return the backend's name.

    An SQLite file that does not exist yet is not created (it is at the first start):
    ``"sqlite, created at first start"``. Raises whatever the driver raises.
    """
    url = normalize_url(raw_url)
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database and url.database != ":memory:" and not Path(url.database).exists():
        return "sqlite, created at first start"
    engine = read_only_engine(raw_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return backend
