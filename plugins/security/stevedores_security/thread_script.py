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
import os
import threading
from typing import Any, Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


class ThreadConnectionScript:
    """``script(client, keys, args)``: run the Lua ``source`` with EVALSHA on this thread's own
    connection from ``client``'s pool, loading the script again when Redis lost it (NOSCRIPT,
    after a restart or ``SCRIPT FLUSH``). Returns the script's reply as redis-py parses it.

    A thread keeps one connection per pool (made by ``pool.make_connection()``, so it has the
    pool's settings but is never handed to anyone else) and per process (a forked child makes its
    own). A connection found broken when it is used again (Redis restarted, the connection
    idled out) is replaced once within the call; a second failure, a timeout or any other error
    propagates as redis-py raised it (``redis.exceptions.ConnectionError``, ``TimeoutError``,
    ``ResponseError``), for the ``redis`` service's breaker to judge.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._local = threading.local()

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply for ``keys`` and ``args`` (see the class doc for errors)."""
        held = self._held(client)
        connection = held.connection
        try:
            try:
                reply = self._run(connection, keys, args)
            except RedisConnectionError:
                if not held.answered:
                    raise
                connection.disconnect()  # stale since its last answer: one fresh attempt, as the pool's check
                reply = self._run(connection, keys, args)
        except BaseException as exc:
            held.answered = isinstance(exc, ResponseError)  # Redis answered: the connection is sound
            raise
        held.answered = True
        return reply

    def _run(self, connection: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # As the pool does before each command: a no-op when connected. Left to send_packed_command, the
        # connect would skip a Sentinel connection's own connect() and reach localhost:6379 instead.
        connection.connect()
        connection.send_packed_command(connection.pack_command("EVALSHA", self.sha, len(keys), *keys, *args))
        try:
            return connection.read_response()
        except NoScriptError:
            connection.send_packed_command(connection.pack_command("EVAL", self.source, len(keys), *keys, *args))
            return connection.read_response()

    def _held(self, client: Any) -> _Held:
        """This thread's connection for ``client``'s pool in this process, made on first use."""
        pool = client.connection_pool
        held: _Held | None = getattr(self._local, "held", None)
        pid = os.getpid()
        if held is not None and held.pool is pool and held.pid == pid:
            return held
        if held is not None and held.pid == pid:
            held.connection.disconnect()  # the service made a new client: the old connection is not used again
        held = self._local.held = _Held(pool, pid, pool.make_connection())
        return held


class _Held:
    """A thread's connection: its pool, the process that made it, and whether its last use was answered."""

    __slots__ = ("pool", "pid", "connection", "answered")

    def __init__(self, pool: Any, pid: int, connection: Any) -> None:
        self.pool, self.pid, self.connection, self.answered = pool, pid, connection, False
