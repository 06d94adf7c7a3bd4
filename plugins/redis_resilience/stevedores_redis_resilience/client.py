"""The resilient Redis client: redis-py behind the circuit breaker, with explicit timeouts.

Offered to other plugins as the ``redis`` service (docs/plugins.md). ``call(fn, fallback)``
runs ``fn(client)`` through the breaker and returns ``fallback()`` whenever Redis is not
configured, the breaker refuses, or the call fails, times out or is slower than the read
timeout. Nothing a caller does through it waits longer than the connect plus read
timeouts, and with the breaker open it does not wait at all.

redis-py is configured for this: connect and read timeouts in milliseconds (its
default read timeout is None: an outage would hang until TCP gives up), no retries of
its own (the breaker decides; redis-py 6+ retries three times by default),
``health_check_interval`` to PING connections that idled, and ``rediss://`` verifies the
server's certificate and host name unless the URL itself says otherwise.

A ``redis+sentinel://`` REDIS_URL (:mod:`.sentinel`) gives a client from redis-py's
``Sentinel(...).master_for(service)``: each new connection asks the sentinels where the
master is, so after a failover the calls that failed against the old master open the
breaker, and the probe after the recovery timeout reaches the promoted replica. The
sentinels are asked with the same timeouts and without retries.

A peer that answers but is not Redis (an HTTP server on the port, a proxy sending
garbage) raises ``InvalidResponse`` (a protocol error), or a ``ResponseError`` while the
connection is being set up: both count as failures, like a refused connection. Without
that, every call opened a new connection to the wrong peer (measured before: 4,702 new
connections for 2,544 requests in 5 s, the breaker never opening).

One connection pool per process: the pool is created lazily by the first call in a
process, and a fork (gunicorn workers) throws the inherited pool away in the child
(its sockets are closed there without shutting the parent's connections down), so no
socket is ever shared across fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from typing import Any, Callable, Generic, TypeVar

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from stevedores.forking import renew_in_children

from .breaker import OPEN, STATE_GAUGE, CircuitBreaker, Ticket, Transition
from .sentinel import is_sentinel_url, parse_sentinel_url

log = logging.getLogger("stevedores.redis_resilience")

T = TypeVar("T")

NOT_CONFIGURED = "not-configured"

#: Errors that mean "Redis is not answering": they count against the breaker.
#: (AuthenticationError and BusyLoadingError are ConnectionErrors; ReadOnlyError is a
#: replica that was failed over; InvalidResponse is a peer that does not speak Redis.)
#: Other errors are answers from a working server, except a ResponseError raised while
#: the connection is being set up (see :func:`_failed_handshake`).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError,
                                                  InvalidResponse, OSError)

#: Seconds between two warnings about the same non-outage error type.
ERROR_LOG_INTERVAL = 60.0


class ResilientRedis:
    """redis-py behind a circuit breaker; the ``redis`` service.

    ``state`` is ``closed``, ``open``, ``half-open`` or ``not-configured``;
    ``configured`` tells whether REDIS_URL is set; ``read_timeout`` and
    ``connect_timeout`` are in seconds; ``fallbacks`` counts the calls served by their
    fallback in this process.
    """

    def __init__(self, url: str | None, *, connect_timeout: float = 0.3, read_timeout: float = 0.3,
                 health_check_interval: int = 30, failure_threshold: int = 5, recovery_timeout: float = 60.0,
                 half_open_probes: int = 1, telemetry: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.health_check_interval = health_check_interval
        self.telemetry = telemetry
        # A probe that never reports (a caller that started a deferred call and never finished it) would
        # otherwise keep the breaker half-open and every call on its fallback until a restart. The deadline:
        # one recovery timeout, and at least one connect and one read; a probe still running past it only
        # delays the recovery by one more recovery timeout (its late answer is ignored).
        self.breaker = CircuitBreaker(failure_threshold, recovery_timeout, half_open_probes, clock=clock,
                                      on_transition=self._on_transition,
                                      probe_timeout=max(recovery_timeout, connect_timeout + read_timeout))
        self.fallbacks = 0
        self._count_lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._pool: redis.ConnectionPool | None = None
        self._sentinel: redis.sentinel.Sentinel | None = None
        self._pid = os.getpid()
        self._create_lock = threading.Lock()
        self._error_logged_at: dict[str, float] = {}
        self._transition_listeners: list[Callable[[Transition], None]] = []
        if url and telemetry is not None:
            telemetry.gauge("redis_breaker_state", STATE_GAUGE[self.breaker.state])
        renew_in_children(self)

    # --- the service contract ----------------------------------------------------------

    @property
    def configured(self) -> bool:
        """True when REDIS_URL is set."""
        return bool(self.url)

    @property
    def state(self) -> str:
        """``closed``, ``open``, ``half-open`` or ``not-configured``."""
        return self.breaker.state if self.url else NOT_CONFIGURED

    def call(self, fn: Callable[[redis.Redis], T], fallback: Callable[[], T], operation: str = "call") -> T:
        """``fn(client)`` through the breaker, or ``fallback()`` at once when Redis cannot answer.

        ``operation`` labels the ``redis_fallback_total`` counter. Exceptions raised by
        ``fallback`` itself propagate.
        """
        return self.start(lambda client: client, fallback, operation).finish(fn)

    def start(self, fn: Callable[[redis.Redis], Any], fallback: Callable[[], T], operation: str = "call") -> Started[T]:
        """A call in two steps (the ``deferred redis`` contract, docs/plugins.md): ``fn(client)`` now, for a
        command sent whose answer is read later by ``.finish(read)``, which returns ``read(what fn
        returned)`` or ``fallback()``. One ticket of the breaker spans both, so it hears one outcome per
        call: writing to a socket is not an answer. The read timeout judges the read alone.
        """
        if not self.url:
            return Started(self, None, None, None, operation, value=fallback())
        ticket = self.breaker.admit()
        if ticket is None:
            return Started(self, None, None, None, operation, value=self._fall_back(fallback, operation))
        try:
            sent = fn(self.client())
        except BaseException as exc:  # noqa: BLE001 - judged as call() judges it, in one place
            return Started(self, None, None, None, operation,
                           value=self._judge_failure(ticket, exc, fallback, operation))
        return Started(self, ticket, sent, fallback, operation)

    def _judge_failure(self, ticket: Ticket, exc: BaseException, fallback: Callable[[], T], operation: str) -> T:
        """The breaker's verdict on a call that raised ``exc``, and the fallback (BaseException re-raised)."""
        if isinstance(exc, OUTAGE_ERRORS):
            self.breaker.failed(ticket, _describe(exc))
        elif isinstance(exc, ResponseError):
            if not _failed_handshake(exc):
                self.breaker.succeeded(ticket)  # Redis answered; the caller's command was wrong
                self._warn_sometimes(exc, operation)
            else:
                self.breaker.failed(ticket, _describe(exc))
        elif isinstance(exc, Exception):
            self.breaker.succeeded(ticket)  # Redis answered; the caller's command was wrong
            self._warn_sometimes(exc, operation)
        else:
            self.breaker.failed(ticket, "call interrupted")
            raise exc
        return self._fall_back(fallback, operation)

    # --- for the cache, the health check and operators ------------------------------------

    def client(self) -> redis.Redis:
        """This process's redis-py client (its pool is created on first use in each process)."""
        client = self._client
        if client is None or self._pid != os.getpid():
            with self._create_lock:
                if self._client is None or self._pid != os.getpid():
                    self._drop_inherited()
                    if is_sentinel_url(self.url):
                        self._client = self._sentinel_client()
                        self._pool = self._client.connection_pool
                    else:
                        self._pool = redis.ConnectionPool.from_url(self.url, **self.connection_options())
                        self._client = redis.Redis(connection_pool=self._pool)
                    self._pid = os.getpid()
                client = self._client
        return client

    def connection_options(self) -> dict[str, Any]:
        """The redis-py options used for every connection (options in REDIS_URL's query win)."""
        options: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.read_timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": self.health_check_interval,
            "socket_keepalive": True,
            "client_name": "stevedores",
        }
        if self.url and self.url.lower().startswith("rediss://"):
            options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        return options

    def _sentinel_client(self) -> redis.Redis:
        """The master's client through redis-py's Sentinel, asked with the same timeouts, no retries."""
        target = parse_sentinel_url(self.url or "")
        asking = {"socket_connect_timeout": self.connect_timeout, "socket_timeout": self.read_timeout,
                  "retry": Retry(NoBackoff(), 0), **target.credentials()}
        self._sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=asking,
                                                 **target.credentials())
        return self._sentinel.master_for(target.service, db=target.db, **self.connection_options())

    def ping(self) -> float | None:
        """Round-trip milliseconds of a PING through the breaker, or None when it was refused or failed."""
        started = time.monotonic()
        answered = self.call(lambda client: bool(client.ping()), lambda: False, operation="ping")
        return round((time.monotonic() - started) * 1000, 2) if answered else None

    def add_transition_listener(self, listener: Callable[[Transition], None]) -> None:
        """Also call ``listener(transition)`` on every breaker state change (must not raise)."""
        self._transition_listeners.append(listener)

    def after_fork(self) -> None:
        """In a forked child (called by the at-fork hook): renew the locks, drop the parent's pool."""
        self._create_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.breaker.after_fork()
        with self._create_lock:
            self._drop_inherited()

    def forget_inherited_pool(self) -> None:
        """Drop a pool created in another process (no-op in the process that created it)."""
        with self._create_lock:
            if self._pool is not None and self._pid != os.getpid():
                self._drop_inherited()

    def close(self) -> None:
        """Disconnect this process's pools (shutdown)."""
        with self._create_lock:
            if self._pid == os.getpid():
                self._drop_inherited()  # in the creating process: a plain disconnect of each pool
            else:
                self._pool, self._client, self._sentinel = None, None, None

    # --- internals --------------------------------------------------------------------

    def _fall_back(self, fallback: Callable[[], T], operation: str) -> T:
        with self._count_lock:
            self.fallbacks += 1
        if self.telemetry is not None:
            self.telemetry.count("redis_fallback_total", 1, operation=operation)
        return fallback()

    def _drop_inherited(self) -> None:
        """Forget a pool made in another process, closing (not shutting down) its sockets here."""
        pools = [self._pool] + [s.connection_pool for s in getattr(self._sentinel, "sentinels", ())]
        self._pool, self._client, self._sentinel = None, None, None
        for pool in pools:
            if pool is None:
                continue
            if self._pid == os.getpid():
                try:
                    pool.disconnect()
                except Exception:  # noqa: BLE001 - best effort
                    log.debug("Redis pool disconnect failed", exc_info=True)
                continue
            for attr in ("_available_connections", "_in_use_connections"):
                for conn in list(getattr(pool, attr, ()) or ()):
                    try:
                        conn.disconnect()  # redis-py shuts a socket down only in the process that opened it
                    except Exception:  # noqa: BLE001 - best effort on a dead pool
                        pass

    def _on_transition(self, event: Transition) -> None:
        if event.new == OPEN and event.old == "closed":
            log.warning("Circuit breaker OPEN after %d consecutive Redis failures (last: %s); serving from the "
                        "in-memory fallback; next probe in %gs", event.failures, event.reason,
                        event.recovery_timeout)
        elif event.new == OPEN:
            log.warning("Circuit breaker OPEN again: the probe failed (%s); next probe in %gs", event.reason,
                        event.recovery_timeout)
        elif event.new == "half-open":
            log.info("Circuit breaker HALF-OPEN: letting %d probe call(s) through to Redis", event.probes)
        else:
            log.info("Circuit breaker CLOSED: Redis answered the probe; using Redis again")
        if self.telemetry is not None:
            self.telemetry.gauge("redis_breaker_state", STATE_GAUGE[event.new])
            self.telemetry.count("redis_breaker_transitions_total", 1, to=event.new)
        for listener in self._transition_listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must not break the caller
                log.exception("Circuit breaker listener failed")

    def _warn_sometimes(self, exc: Exception, operation: str) -> None:
        """One warning per error type per minute: a wrong command is a bug, but must not flood the log."""
        kind = type(exc).__name__
        now = time.monotonic()
        if now - self._error_logged_at.get(kind, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
            self._error_logged_at[kind] = now
            log.warning("Redis %s failed with %s (Redis is up; served the fallback instead)", operation,
                        _describe(exc))


def _failed_handshake(exc: BaseException) -> bool:
    """True when ``exc`` was raised while redis-py set the connection up (AUTH, HELLO,
    CLIENT SETNAME, SELECT in ``on_connect``): the peer refused the handshake, so it is
    not a Redis we can use, unlike an error reply to the caller's own command."""
    return any(frame.f_code.co_name in ("on_connect", "on_connect_check_health")
               for frame, _line in traceback.walk_tb(exc.__traceback__))


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class Started(Generic[T]):
    """A call begun by :meth:`ResilientRedis.start`: ``finish(read)`` reads its answer through the same
    ticket (or gives the fallback's value when the start already fell back)."""

    def __init__(self, redis_service: ResilientRedis, ticket: Ticket | None, sent: Any,
                 fallback: Callable[[], T] | None, operation: str, value: Any = None) -> None:
        """``ticket`` None: the start fell back and ``value`` is the fallback's; else ``sent`` awaits ``read``."""
        self._service, self._ticket, self._sent, self._operation = redis_service, ticket, sent, operation
        self._fallback, self._value = fallback, value

    @property
    def fell_back(self) -> bool:
        """True when the start already gave the fallback's value (nothing was sent)."""
        return self._fallback is None and self._ticket is None

    def finish(self, read: Callable[[Any], T]) -> T:
        """``read(what the start's fn returned)`` through the breaker, or the fallback (once; later calls
        return the same value). Call it once per start: until then the ticket is held (a half-open
        breaker's probe among them)."""
        ticket, fallback = self._ticket, self._fallback
        if ticket is None or fallback is None:
            return self._value  # type: ignore[no-any-return]
        self._ticket = None
        service = self._service
        started = time.monotonic()
        try:
            result = read(self._sent)
        except BaseException as exc:  # noqa: BLE001 - judged as call() judges it
            self._value = service._judge_failure(ticket, exc, fallback, self._operation)
            return self._value  # type: ignore[no-any-return]
        elapsed = time.monotonic() - started
        if elapsed > service.read_timeout:
            service.breaker.failed(ticket, f"call took {elapsed * 1000:.0f} ms, over the read timeout")
        else:
            service.breaker.succeeded(ticket)
        self._value = result
        return result
