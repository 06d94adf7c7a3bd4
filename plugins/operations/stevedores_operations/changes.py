"""A cheap "has the operations data changed?" signal, so that pages skip the query that asks.

Every dashboard, ``/api/summary`` and vessel page request used to run one statement to learn
whether the data had changed (``summary.data_fingerprint``, ``store.vessel_call_totals``):
a pool checkout with its pre-ping and the statement, two round trips, about 15-20 % of a
worker's CPU plus the server's. This module tells a request, with no I/O, that the data has
certainly *not* changed since the version it cached under; when it cannot say so it answers
``None`` and the request runs the query as before (the fingerprint stays the source of truth).

A version is ``(token, generation)``:

- ``token``: 8 random bytes in anonymous shared memory (``mmap``, created when this module is
  imported, which the gunicorn master does before it forks, as ``stevedores.drain`` does for
  its flag). Every write path of this plugin writes a fresh token right after its commit
  (:func:`announce_change`), so every worker of this instance sees its own instance's writes
  on its very next request: a NOTIFY reaches another worker's listener thread only some time
  later (the GIL hands threads over every 5 ms). A fresh random value rather than a counter:
  two writers racing cannot lose an update (each leaves a value never seen before) and no
  lock is needed. Taken after the commit, a reader that sees the new token runs its query
  after the commit, so what it caches under that token holds the write.
- ``generation``: per process, bumped by the listener thread on every PostgreSQL
  notification (migration 0005's triggers notify at the commit of any write to vessel calls
  or tallies, by anyone: another instance, ``psql``, a script), on every (re)connection and
  whenever contact had been lost (notifications may have been missed meanwhile).

The version is given only while the listener's contact with the database is confirmed: a
heartbeat (which also checks that the triggers exist and are enabled) answered within the
last :data:`VALID_SECONDS`, counted from when it was sent. A dropped connection ends it at
once; a frozen one (nothing answers) within :data:`VALID_SECONDS`; the requests meanwhile
query. At (re)connection a notification sent from a second connection must come back
(a PgBouncer in transaction mode swallows them): otherwise a warning, once, and this
process stays on the query path.

A request takes the version *before* running the query whose result it caches (so a write
that commits in between makes the cached entry older than the version, never newer).
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import secrets
import select
import socket
import threading
import time
from typing import Any, Callable, Hashable, TypeVar

import psycopg

from stevedores.database import BoundedConnection

log = logging.getLogger("stevedores.operations")

#: The channel migration 0005's triggers notify on.
CHANNEL = "stevedores_operations_changes"
#: The ``application_name`` of the listener's connection (in ``pg_stat_activity``).
APPLICATION_NAME = "stevedores-operations-changes"
#: A version is given while the last answered heartbeat was sent less than this many seconds ago.
VALID_SECONDS = 2.0
#: A heartbeat this often (seconds), whatever else arrives.
HEARTBEAT_SECONDS = 0.5
#: A heartbeat not answered within this many seconds closes the connection (frozen network).
ANSWER_SECONDS = 1.0
#: How long the start-up check waits for its own notification to come back (seconds).
PROBE_SECONDS = 2.0
#: Waits between reconnection attempts (seconds, doubling up to the second figure).
RETRY_SECONDS = (0.2, 5.0)
#: Answers the number of enabled change triggers: 2 when migration 0005 is in place.
HEARTBEAT_SQL = ("SELECT count(*) FROM pg_trigger WHERE tgname = 'operations_changes_notify' AND tgenabled <> 'D' "
                 "AND tgrelid IN (to_regclass('operations_vessel_calls'), to_regclass('operations_tallies'))")
TRIGGERS = 2


class SharedToken:
    """8 bytes of anonymous ``MAP_SHARED`` memory: the last write's token, seen by every process
    forked after it was created (the gunicorn master's workers)."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 8)
        self._memory[:8] = secrets.token_bytes(8)
        #: The process that created it: a worker that finds its own pid here has siblings that do not share it.
        self.created_in = os.getpid()

    def read(self) -> bytes:
        """The current token (8 bytes; about 0.1 µs, no system call)."""
        return self._memory[:8]

    def announce(self) -> None:
        """A write has committed: a fresh random token (never a read-modify-write, so no lost update)."""
        self._memory[:8] = secrets.token_bytes(8)


#: This instance's token (one per gunicorn master and its workers; created at import, in the master).
WRITES = SharedToken()

F = TypeVar("F", bound=Callable[..., Any])


def announce_change() -> None:
    """Call right after a commit that changed vessel calls or tallies (never before it)."""
    WRITES.announce()


def announces_change(func: F) -> F:
    """Decorate a write that commits before it returns: :func:`announce_change` after it, even when
    it raises (an announcement without a change only costs the next requests a query)."""

    @functools.wraps(func)
    def announcing(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            WRITES.announce()

    return announcing  # type: ignore[return-value]


class Freshness:
    """The validity rule, without I/O: ``version()`` for requests; ``changed()``, ``confirmed()``
    and ``lost()`` for the listener. ``clock`` is a monotonic clock in seconds."""

    def __init__(self, token: SharedToken = WRITES, clock: Callable[[], float] = time.monotonic,
                 valid_for: float = VALID_SECONDS) -> None:
        self._token, self._clock, self.valid_for = token, clock, valid_for
        self.generation = 0
        self.confirmed_at = float("-inf")

    def version(self) -> Hashable | None:
        """``(token, generation)`` while contact is confirmed, else None (then query). The hot path:
        two attribute reads, a clock call and an 8-byte copy (about 0.3 µs)."""
        confirmed = self.confirmed_at  # read before the generation: confirmed() bumps it before confirming
        if self._clock() - confirmed >= self.valid_for:
            return None
        return self._token.read(), self.generation

    def changed(self) -> None:
        """A notification arrived: whatever was cached under an earlier version is suspect."""
        self.generation += 1

    def confirmed(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` was answered (and the notifications before its answer
        handled). If the signal had expired meanwhile (or never held), notifications may have been
        missed: the generation moves on before the signal is given again."""
        if sent_at - self.confirmed_at >= self.valid_for:
            self.generation += 1
        self.confirmed_at = max(self.confirmed_at, sent_at)

    def lost(self) -> None:
        """The connection dropped, or the triggers are missing: no version until confirmed again."""
        self.confirmed_at = float("-inf")

    def age(self) -> float | None:
        """Seconds since the last confirmed contact (None: none yet)."""
        confirmed = self.confirmed_at
        return None if confirmed == float("-inf") else round(self._clock() - confirmed, 3)


def _connect(params: dict[str, Any]) -> BoundedConnection:
    """A connection whose every wait without a timeout of its own (a heartbeat, LISTEN) gives up
    after ANSWER_SECONDS, closing it (the core's BoundedConnection); the notifications' own waits
    carry theirs."""
    conn = BoundedConnection.connect(**params)
    conn.answer_timeout = ANSWER_SECONDS
    return conn


def health_figures(state: str, contact_age_s: float | None = None, notifications: int = 0, reconnects: int = 0,
                   backend_pid: int | None = None) -> dict[str, Any]:
    """The ``operations_changes`` health check's result: ``warning`` when notifications do not come back."""
    return {"status": "warning" if state == "unsupported" else "healthy", "change_listener": state,
            "change_contact_age_s": contact_age_s, "change_notifications": notifications,
            "change_reconnects": reconnects, "change_backend_pid": backend_pid}


class ChangeListener:
    """One per app and process: the listener thread and the :class:`Freshness` it keeps.

    ``connect_params``: psycopg keyword arguments (host, dbname, user, ..., and the core's
    timeouts and keepalives, ``stevedores.database.postgres_connect_args``).
    ``state`` for the health check: ``stopped``, ``connecting``, ``listening``, ``no triggers``
    (migration 0005 missing or disabled), ``reconnecting``, ``unsupported`` (notifications do
    not come back) or ``not shared`` (see :meth:`start`).
    """

    #: Where the start-up check sends its notification (tests send it elsewhere, as a pooler would lose it).
    probe_channel = CHANNEL

    def __init__(self, connect_params: dict[str, Any], freshness: Freshness | None = None) -> None:
        self._params = {**connect_params, "application_name": APPLICATION_NAME, "autocommit": True}
        self.freshness = freshness or Freshness()
        self.version = self.freshness.version  # what requests call
        self.state = "stopped"
        self.notifications = self.reconnects = 0
        self.backend_pid: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._stopping = threading.Event()
        self._wake: tuple[socket.socket, socket.socket] | None = None  # made by start(): no descriptors before
        self._thread: threading.Thread | None = None
        self._probe: str | None = None
        self._probe_seen = False
        self._outage_logged = False
        self._unsupported_logged = False

    def start(self, worker: Any = None) -> None:
        """Start the thread (``stevedores_worker_started``: a gunicorn worker, or ``serve --dev`` with
        ``worker=None``). A gunicorn worker that imported this module itself (not the master before the
        fork) shares no token with its siblings: their writes would not show at once, so it stays on the
        query path (state ``not shared``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if worker is not None and WRITES.created_in == os.getpid():
            self.state = "not shared"
            log.warning("operations change notifications unused in worker %d: the plugin was not loaded by the "
                        "gunicorn master before the fork (use stevedores.gunicorn_conf); every page queries",
                        os.getpid())
            return
        self._stopping.clear()
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="operations-changes", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread and close its connection (waits at most ``timeout`` seconds)."""
        self._stopping.set()
        self.freshness.lost()
        if self._wake is not None:
            self._wake[1].send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._wake is not None and (self._thread is None or not self._thread.is_alive()):
            for end in self._wake:
                end.close()
            self._wake = None
        self.state = "stopped"

    def after_fork(self) -> None:
        """In a forked child: the thread is gone and the connection belongs to the parent."""
        self.freshness.lost()
        self.state = "stopped"
        self._reset()

    def health(self) -> dict[str, Any]:
        """The listener's figures for the ``operations_changes`` health check."""
        return health_figures(self.state, self.freshness.age(), self.notifications, self.reconnects,
                              self.backend_pid)

    # --- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        pause = RETRY_SECONDS[0]
        while not self._stopping.is_set():
            if self.state != "unsupported":  # stays so while the check is retried
                self.state = "connecting" if self.state in ("stopped", "connecting") else "reconnecting"
            try:
                with _connect(self._params) as conn:
                    self.backend_pid = conn.info.backend_pid
                    conn.execute(f"LISTEN {CHANNEL}")
                    if self._probe_comes_back(conn):
                        pause = RETRY_SECONDS[0]
                        self._listen(conn)
                    else:  # tried again after the pause: one check missed on a starved machine is no pooler
                        self._unsupported()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure: each one is an outage
                self._lost(exc)
            finally:
                self.freshness.lost()
                self.backend_pid = None
            self._stopping.wait(pause)
            pause = min(pause * 2, RETRY_SECONDS[1])
            self.reconnects += 1

    def _unsupported(self) -> None:
        self.state = "unsupported"
        if not self._unsupported_logged:
            self._unsupported_logged = True
            log.warning("operations change notifications do not come back from the database (a pooler in "
                        "transaction mode?): every page queries while they do not; set "
                        "OPERATIONS_CHANGE_NOTIFICATIONS=off to skip this check")

    def _lost(self, exc: Exception) -> None:
        self.freshness.lost()
        if not self._stopping.is_set():
            self.state = "reconnecting"
        if not self._outage_logged and not self._stopping.is_set():
            self._outage_logged = True
            log.warning("operations change listener lost the database (%s: %s); pages query until it is back",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

    def _probe_comes_back(self, conn: psycopg.Connection) -> bool:
        """Send a notification from a second connection; True if it reaches ``conn`` in time."""
        self._probe, self._probe_seen = f"probe:{secrets.token_hex(8)}", False
        # Its own application_name: pg_stat_activity then counts listeners, not their start-up checks.
        with _connect({**self._params, "application_name": f"{APPLICATION_NAME}-check"}) as other:
            other.execute("SELECT pg_notify(%s, %s)", (self.probe_channel, self._probe))
        deadline = time.monotonic() + PROBE_SECONDS
        while not self._probe_seen and time.monotonic() < deadline and not self._stopping.is_set():
            self._wait(conn, deadline - time.monotonic())
            self._drain(conn)
        return self._probe_seen or self._stopping.is_set()

    def _listen(self, conn: psycopg.Connection) -> None:
        """Heartbeat every HEARTBEAT_SECONDS and handle notifications as they come, until stopped or lost."""
        beat = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= beat:
                sent = beat = time.monotonic()
                triggers = conn.execute(HEARTBEAT_SQL).fetchone()[0]  # type: ignore[index]
                self._drain(conn)  # what arrived before the answer counts before the confirmation
                if triggers == TRIGGERS:
                    self.freshness.confirmed(sent)
                    self.state, self._outage_logged = "listening", False
                else:
                    self._no_triggers(triggers)
                beat = sent + HEARTBEAT_SECONDS
            self._wait(conn, beat - time.monotonic())
            self._drain(conn)

    def _no_triggers(self, found: int) -> None:
        self.freshness.lost()
        if self.state != "no triggers":
            self.state = "no triggers"
            log.warning("operations change triggers missing or disabled (%d of %d; migration "
                        "0005_change_notifications): pages query until they are back", found, TRIGGERS)

    def _wait(self, conn: psycopg.Connection, seconds: float) -> None:
        """Until the connection has something to read, :meth:`stop` is called, or ``seconds`` pass."""
        assert self._wake is not None  # the thread runs only after start() made it
        # poll(), not select(): a gthread worker with many keep-alive clients has descriptors past 1024.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        poller.register(self._wake[0], select.POLLIN)
        ready = {fd for fd, _event in poller.poll(max(seconds, 0.0) * 1000)}
        if self._wake[0].fileno() in ready:
            self._wake[0].recv(64)

    def _drain(self, conn: psycopg.Connection) -> None:
        """Handle every notification received so far (raises psycopg's error if the connection dropped)."""
        for notify in conn.notifies(timeout=0):
            self.notifications += 1
            self.freshness.changed()
            if notify.payload == self._probe:
                self._probe_seen = True


def no_version() -> None:
    """The version function where there is no signal (SQLite, the setting off): always query."""
    return None
