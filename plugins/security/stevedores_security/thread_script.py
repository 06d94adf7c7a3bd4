"""A Redis Lua script run on a connection of the calling thread's own: the rate limits' one
Redis call on every page, without redis-py's per-command machinery.

Every request counts its client's app-wide limits in Redis (:mod:`.counting`). Through
redis-py's ``Script`` object that call cost 85 µs of client CPU on this 2-core machine, of
which the socket round trip is about 25 µs: ``Script.__call__`` → ``evalsha`` →
``execute_command`` → the pool's ``get_connection`` (a lock, its observability counters and a
``can_read`` poll per command) → ``Retry`` → ``release``. Packing the command and sending it on
a connection the thread keeps cost 34 µs (20,000 EVALSHA calls of the counting script in one
thread against a local redis-server, ``time.process_time``; redis-server's own CPU per call
fell too, from 47 to 38 µs). The connection is still redis-py's (its socket options, timeouts,
TLS, Sentinel discovery, health checks and reply parser), made by the client's own pool.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from stevedores.forking import renew_in_children

#: Packed commands kept (all are forgotten when there are more).
MAX_PACKED = 10_000


class ThreadConnectionScript:
    """``script(client, keys, args)``: run the Lua ``source`` with EVALSHA on this thread's own
    connection from ``client``'s pool, loading the script again when Redis lost it (NOSCRIPT,
    after a restart or ``SCRIPT FLUSH``). Returns the script's reply as redis-py parses it.
    ``script.send(client, keys, args)`` sends it now and returns a :class:`Sent` whose ``reply()``
    reads the reply later, so that the thread works while Redis answers.

    A thread keeps one connection per pool (the pool's connection class and settings, never handed
    to anyone else, not counted against the pool's ``max_connections``) and per process (a forked child makes its
    own). A connection found broken when it is used again (Redis restarted, the connection
    idled out) is replaced once within the call; a second failure, a timeout or any other error
    propagates as redis-py raised it (``redis.exceptions.ConnectionError``, ``TimeoutError``,
    ``ResponseError``), for the ``redis`` service's breaker to judge. A reply nobody read (a
    request that ended before asking for it) is read and dropped before the connection's next use.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._local = threading.local()
        self._packed: dict[tuple[Any, ...], Any] = {}  # (keys, args) -> the packed EVALSHA, for the clients seen lately
        renew_in_children(self)

    def after_fork(self) -> None:
        """In a forked child (:mod:`stevedores.forking`): no thread's connection is inherited; each is made
        again on first use (the parent's sockets stay the parent's)."""
        self._local = threading.local()

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply for ``keys`` and ``args`` (see the class doc for errors)."""
        return self.send(client, keys, args).reply()

    def send(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Sent:
        """Send the script for ``keys`` and ``args`` on this thread's connection; read it with ``reply()``
        on the same thread (see the class doc for errors, raised here or by ``reply()``)."""
        held = self._held(client)
        if held.pending is not None:
            unread = held.pending
            unread.settle()
            if unread.failed_with_outage:  # one Redis timeout per call at most: no second wait behind it
                raise unread.outcome
        connection, reused = held.connection, held.answered
        sent_at = time.time()
        try:
            try:
                self._send(connection, "EVALSHA", self.sha, keys, args)
            except RedisConnectionError:
                if not reused:
                    raise
                reused = False
                connection.disconnect()  # stale since its last answer: one fresh attempt, as the pool's check
                self._send(connection, "EVALSHA", self.sha, keys, args)
        except BaseException:
            held.answered = False
            raise
        sent = held.pending = Sent(self, held, keys, args, reused, sent_at)
        return sent

    def _send(self, connection: Any, command: str, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        # As the pool does before each command: a no-op when connected. Left to send_packed_command, the
        # connect would skip a Sentinel connection's own connect() and reach localhost:6379 instead.
        connection.connect()
        if command != "EVALSHA":
            connection.send_packed_command(connection.pack_command(command, script, len(keys), *keys, *args))
            return
        # The same few clients' counts again and again: packing them was ~2 % of a page's CPU (py-spy).
        wanted = (*keys, *args)
        packed = self._packed.get(wanted)
        if packed is None:
            if len(self._packed) >= MAX_PACKED:
                self._packed.clear()
            packed = self._packed[wanted] = connection.pack_command(command, script, len(keys), *keys, *args)
        connection.send_packed_command(packed)

    def _read(self, connection: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return connection.read_response()
        except NoScriptError:
            self._send(connection, "EVAL", self.source, keys, args)
            return connection.read_response()

    def _held(self, client: Any) -> _Held:
        """This thread's connection for ``client``'s pool in this process, made on first use."""
        pool = client.connection_pool
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.pool is pool:
            return held
        if held is not None:
            held.connection.disconnect()  # the service made a new client: the old connection is not used again
        # The pool's connection class and settings (socket options, timeouts, TLS, Sentinel discovery), but not
        # pool.make_connection(): that counts against max_connections, and this connection never goes back.
        held = self._local.held = _Held(pool, pool.connection_class(**pool.connection_kwargs))
        return held


_UNREAD = object()


class Sent:
    """A script sent on a thread's connection (:meth:`ThreadConnectionScript.send`), its reply not read yet."""

    def __init__(self, script: ThreadConnectionScript, held: _Held, keys: Sequence[str], args: Sequence[Any],
                 reused: bool, sent_at: float) -> None:
        self._script, self._held, self._keys, self._args, self._reused = script, held, keys, args, reused
        #: When it was sent (epoch seconds): about when Redis ran it (its TTLs count from then).
        self.sent_at = sent_at
        self._outcome: Any = _UNREAD
        self._failed = False

    @property
    def outcome(self) -> Any:
        """The reply or the error, once settled."""
        return self._outcome

    @property
    def failed_with_outage(self) -> bool:
        """True when reading the reply failed for want of Redis (not an error reply)."""
        return self._failed and not isinstance(self._outcome, ResponseError)

    def reply(self) -> Any:
        """The script's reply (read once; later calls give the same), or the error reading it raised."""
        if self._outcome is _UNREAD:
            self.settle()
        if self._failed:
            raise self._outcome
        return self._outcome

    def settle(self) -> None:
        """Read the reply now (or keep the error), so that the connection is free for its next command."""
        if self._outcome is not _UNREAD:
            return
        held = self._held
        held.pending = None
        connection = held.connection
        try:
            try:
                outcome = self._script._read(connection, self._keys, self._args)
            except RedisConnectionError:
                if not self._reused:
                    raise
                connection.disconnect()  # the send went into a stale connection: one fresh attempt
                self._script._send(connection, "EVALSHA", self._script.sha, self._keys, self._args)
                outcome = self._script._read(connection, self._keys, self._args)
        except Exception as exc:  # noqa: BLE001 - kept for reply(), which raises it on the asking thread
            held.answered = isinstance(exc, ResponseError)  # Redis answered: the connection is sound
            self._outcome, self._failed = exc, True
            return
        except BaseException:
            held.answered = False
            raise
        held.answered = True
        self._outcome = outcome


class _Held:
    """A thread's connection: its pool, whether its last use was answered, and the script sent on it
    whose reply is not read yet."""

    __slots__ = ("pool", "connection", "answered", "pending")

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool, self.connection, self.answered = pool, connection, False
        self.pending: Sent | None = None
