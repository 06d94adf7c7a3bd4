"""Counting rate-limit hits in Redis through the resilient ``redis`` service, or in the
instance's fallback store.

flask-limiter asks a *strategy* object to ``hit``/``test``/``get_window_stats``; this
module's :class:`ResilientCounter` is that strategy (fixed windows). Each operation goes
to Redis through ``redis.call(fn, fallback)`` (docs/plugins.md), so:

- Redis answering: counts are shared by every worker and instance (full limits). The
  app-wide limits of a request are counted in one round trip (one Lua script for all of
  them, stopping at the first one exceeded, as flask-limiter does).
- Redis down, slow or its breaker open: ``call`` returns the fallback, which counts in the
  instance's store (:mod:`.instance_windows`: shared by every worker of the gunicorn
  master, kept across worker replacements; a process's own memory outside gunicorn).
  Each instance then enforces the limit divided by RATE_LIMIT_INSTANCES (default 1), so
  a fleet that states its size still allows about the configured total. No error, no
  500; a request waits at most one Redis timeout (after one failed call the rest of the
  request stays in the fallback), and with the breaker open it does not wait at all.
- Redis back (the breaker closes): counting returns to Redis by itself.

The limit a client sees in ``RateLimit-*`` headers is the one enforced
(:meth:`ResilientCounter.enforced_amount`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Protocol, TypeVar

from flask import g, has_app_context
from limits import RateLimitItem
from limits.util import WindowStats

from stevedores.contracts import DeferredRedisService, RedisService

from .memory_windows import MemoryWindows
from .thread_script import Sent, ThreadConnectionScript

log = logging.getLogger("stevedores.security")

T = TypeVar("T")

REDIS_PREFIX = "stevedores:ratelimit:"

# For each key in order: INCRBY and (re)arm the expiry, stopping after the first count over
# its limit (the later limits are not consumed, as when flask-limiter hits them one by one).
# ARGV: cost, then (expiry seconds, amount) per key. Returns {count, ttl ms} per key counted.
# A key without TTL is re-armed, so a lost EXPIRE can never leave a counter that lives forever.
INCR_EXPIRE_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, ARGV[1])
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[2 * i] * 1000)
    ttl = ARGV[2 * i] * 1000
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
  if count > tonumber(ARGV[2 * i + 1]) then break end
end
return out
"""

#: Clients whose app-wide window keys are kept ready (all are forgotten when there are more).
MAX_KEPT_CLIENTS = 10_000

#: flask-limiter's scope of application limits (``ApplicationLimit.scope``): (client, scope) identify them.
APPLICATION_SCOPE = "global"

_GAVE_UP = "_stevedores_rate_limit_in_memory"
_WINDOWS = "_stevedores_rate_limit_windows"


class AppWindow(NamedTuple):
    """One app-wide limit's window after a request was counted: the limit, the client's count in it,
    when it ends (epoch seconds), the amount enforced (the full amount in Redis, the instance's
    share in the fallback store) and whether Redis counted it."""

    item: RateLimitItem
    count: int
    reset_at: float
    enforced: int
    #: True when counted in Redis (shared by the fleet), False in the fallback store.
    shared: bool = True

    @property
    def exceeded(self) -> bool:
        """True when the count is over the enforced amount (the request is refused)."""
        return self.count > self.enforced

    @property
    def remaining(self) -> int:
        """What is left of the enforced amount (at least 0)."""
        return max(0, self.enforced - self.count)


class AppCounting:
    """The app-wide count of one request (:meth:`ResilientCounter.start_app_limits`): ``window()``
    gives its :class:`AppWindow` (reading Redis's reply the first time it is asked)."""

    def __init__(self, window: AppWindow | None, read: Callable[[], AppWindow] | None = None) -> None:
        self._window, self._read = window, read

    @property
    def pending(self) -> bool:
        """True while Redis's reply has not been read."""
        return self._window is None

    def window(self) -> AppWindow:
        """The counted window (the first exceeded, else the smallest)."""
        if self._window is None:
            assert self._read is not None
            self._window = self._read()
        return self._window


class Windows(Protocol):
    """Fixed-window counters: :class:`MemoryWindows` or :class:`~.instance_windows.InstanceWindows`."""

    def incr(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]: ...
    def get(self, key: str) -> tuple[int, float]: ...
    def clear(self, key: str) -> None: ...


class ResilientCounter:
    """Fixed-window rate limiting over the ``redis`` service with a fallback store
    (flask-limiter's strategy interface: hit, test, get_window_stats, clear).

    ``redis`` is the service (or None); ``instances`` (RATE_LIMIT_INSTANCES, >= 1) divides
    the limits enforced by the fallback; ``fallback`` is the instance's store (None: this
    process's memory); ``on_storage_change(storage, reason)`` is called when the storage
    in use changes. :meth:`batch` names the app-wide limits counted in one round trip.
    """

    def __init__(self, redis: RedisService | None, instances: int = 1,
                 on_storage_change: Callable[[str, str], None] | None = None,
                 fallback: Windows | None = None) -> None:
        self.memory = MemoryWindows()
        self.fallback: Windows = fallback if fallback is not None else self.memory
        self.redis = redis if isinstance(redis, RedisService) and redis.configured else None
        # Asked once: a runtime-checkable Protocol's isinstance looks up every member (~15 % of a page's
        # instructions when it was asked per request).
        self._deferred = isinstance(self.redis, DeferredRedisService)
        self.instances = max(1, int(instances))
        self._on_change = on_storage_change
        self._lock = threading.Lock()
        self._batch: tuple[RateLimitItem, ...] = ()
        self._batch_args: list[int] = [1]
        self._batch_keys: dict[str, tuple[list[str], list[str]]] = {}
        self._script = ThreadConnectionScript(INCR_EXPIRE_LUA)
        self._fallback_failed_logged = False
        if self.redis is not None:
            self.storage_in_use, self.reason = "redis", "Redis answers (counts shared by all workers)"
        else:
            self.storage_in_use = "memory"
            self.reason = ("REDIS_URL is not set" if redis is not None
                           else "no redis service (redis_resilience plugin not installed)")

    @property
    def fallback_scope(self) -> str:
        """Who shares the fallback counts: ``"instance"`` (every worker of the master) or ``"process"``."""
        return "process" if self.fallback is self.memory else "instance"

    def batch(self, items: Iterable[RateLimitItem]) -> None:
        """The app-wide limits (shared identifiers on every request): counted together."""
        self._batch = tuple(sorted(items))
        self._batch_args = [1, *(n for i in self._batch for n in (i.get_expiry(), i.amount))]
        self._batch_keys.clear()

    def _app_keys(self, client: str) -> tuple[list[str], list[str]]:
        """(window keys, Redis keys) of ``client``'s app-wide limits, kept for the clients seen lately:
        building them took a tenth of the counting's own CPU per request (cProfile)."""
        keys = self._batch_keys.get(client)
        if keys is None:
            if len(self._batch_keys) >= MAX_KEPT_CLIENTS:
                self._batch_keys.clear()
            plain = [i.key_for(client, APPLICATION_SCOPE) for i in self._batch]
            keys = self._batch_keys[client] = (plain, [REDIS_PREFIX + k for k in plain])
        return keys

    # --- the strategy interface flask-limiter uses -------------------------------------------

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Consume ``cost`` from the limit; True when it was not exceeded.

        A view's own limit (logins, tally posts) or a service hit. Counted in Redis and, always,
        in the instance's store too: a Redis that restarted empty (or failed over to a replica
        that had not received the counts) would otherwise give every client a fresh window, and
        a client that alternates with outages would get the limit once per outage. The
        instance never counts more than the fleet, so with Redis intact this refuses nothing
        more; it costs one store update (~20 µs) on these few routes, not on every page."""
        key = item.key_for(*identifiers)

        def in_redis(client: Any) -> int:
            count, ttl_ms = self._script(client, [REDIS_PREFIX + key], [cost, item.get_expiry(), item.amount])
            _remember_window(key, int(count), time.time() + int(ttl_ms) / 1000)
            return int(count)

        counted = self._redis_or_memory(in_redis, lambda: None)
        # Outside the Redis call: the store's own waits (its lock) must never count as Redis being slow.
        here = self._incr_fallback(key, item.get_expiry(), cost)
        if counted is None:
            return here <= self.share(item)
        return counted <= item.amount and here <= item.amount

    def start_app_limits(self, client: str) -> AppCounting | None:
        """Count one request of ``client`` against every app-wide limit (:meth:`batch`) in one Redis
        call, or in the fallback store; smallest window first, stopping at the first one exceeded
        (the later ones are not consumed), as flask-limiter does when it hits them one by one.

        ``window()`` of the result gives the window to report (the first exceeded, else the
        smallest). With a ``redis`` service that can defer (:class:`DeferredRedisService`) the count
        is sent now and its reply read by ``window()`` on the same thread, which may work in
        between; otherwise, and in the fallback store, it is counted now. None without app-wide limits.
        """
        items = self._batch
        if not items:
            return None
        keys, redis_keys = self._app_keys(client)

        def in_memory() -> AppWindow:
            return self._app_in_memory(keys)

        def send(redis_client: Any) -> Sent:
            return self._script.send(redis_client, redis_keys, self._batch_args)

        if self.redis is None or _gave_up():
            return AppCounting(in_memory())
        if not self._deferred:
            return AppCounting(self._redis_or_memory(lambda c: self._app_from_reply(send(c)), in_memory))
        return self._deferred_app_count(send, in_memory)

    def _deferred_app_count(self, send: Callable[[Any], Sent], in_memory: Callable[[], AppWindow]) -> AppCounting:
        """The app-wide count sent through ``redis.start`` now, read by the result's ``window()``."""
        fell_back: list[bool] = []

        def fallback() -> AppWindow:
            fell_back.append(True)
            return in_memory()

        try:
            started = self.redis.start(send, fallback)  # type: ignore[union-attr] - a DeferredRedisService
        except Exception:  # noqa: BLE001 - a broken service must never turn a page into a 500
            log.exception("The redis service raised instead of falling back; counting in memory")
            return AppCounting(self._outcome(True, in_memory()))
        if started.fell_back:
            return AppCounting(self._outcome(True, started.finish(self._app_from_reply)))

        def read() -> AppWindow:
            try:
                window = started.finish(self._app_from_reply)
            except Exception:  # noqa: BLE001 - as above
                log.exception("The redis service raised instead of falling back; counting in memory")
                return self._outcome(True, fallback())
            return self._outcome(bool(fell_back), window)

        return AppCounting(None, read)

    def _app_in_memory(self, keys: list[str]) -> AppWindow:
        """The app-wide count in the fallback store (the instance's share enforced)."""
        first: AppWindow | None = None
        for k, i in zip(keys, self._batch, strict=True):
            count, ends = self._incr_fallback_window(k, i.get_expiry())
            window = AppWindow(i, count, ends, self.share(i), shared=False)
            if window.exceeded:
                return window
            first = first or window
        assert first is not None
        return first

    def _app_from_reply(self, sent: Sent) -> AppWindow:
        """The window to report from the counting script's reply ({count, ttl ms} per key counted)."""
        out, items = sent.reply(), self._batch
        n = len(out) // 2 - 1  # the script stops after the first count over its limit: the last one counted
        item, count = items[n], int(out[2 * n])
        if count <= item.amount:
            item, count, n = items[0], int(out[0]), 0
        # The TTL is Redis's when it ran the script: about when it was sent, not when read.
        return AppWindow(item, count, sent.sent_at + int(out[2 * n + 1]) / 1000, item.amount, shared=True)

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """True when ``cost`` could be consumed without exceeding the limit (consumes nothing)."""
        key = item.key_for(*identifiers)

        counted = self._redis_or_memory(lambda client: int(client.get(REDIS_PREFIX + key) or 0), lambda: None)
        here = self._get_fallback(key)[0]  # the instance's own count too (see hit), outside the Redis call
        if counted is None:
            return here < self.share(item) - cost + 1
        return max(counted, here) < item.amount - cost + 1

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """(reset time, remaining) of the limit; reuses what this request's hit already learnt."""
        key = item.key_for(*identifiers)
        known = _known_window(key)
        if known is not None and not _gave_up():
            count, reset_at = known
            return WindowStats(reset_at, max(0, item.amount - count))

        def in_redis(client: Any) -> WindowStats:
            pipe = client.pipeline(transaction=False)
            pipe.get(REDIS_PREFIX + key)
            pipe.pttl(REDIS_PREFIX + key)
            count, ttl_ms = pipe.execute()
            reset_at = time.time() + max(0, int(ttl_ms)) / 1000
            return WindowStats(reset_at, max(0, item.amount - int(count or 0)))

        def in_memory() -> WindowStats:
            count, end = self._get_fallback(key)
            return WindowStats(end, max(0, self.share(item) - count))

        return self._redis_or_memory(in_redis, in_memory)

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget the counts of this limit (Redis and memory)."""
        key = item.key_for(*identifiers)
        self._redis_or_memory(lambda client: client.delete(REDIS_PREFIX + key), lambda: None)
        self.memory.clear(key)
        if self.fallback is not self.memory:
            try:
                self.fallback.clear(key)
            except (sqlite3.Error, OSError) as exc:
                self._fallback_failed(exc)

    # --- helpers ------------------------------------------------------------------------

    def share(self, item: RateLimitItem) -> int:
        """This instance's share of ``item``'s amount when the fallback counts (at least 1)."""
        return max(1, item.amount // self.instances)

    def enforced_amount(self, item: RateLimitItem) -> int:
        """The amount of ``item`` enforced for the current request: the share when this
        request was counted by the fallback, the full amount in Redis."""
        if self.redis is None or _gave_up():
            return self.share(item)
        return item.amount

    def _incr_fallback(self, key: str, expiry: float, cost: int) -> int:
        return self._incr_fallback_window(key, expiry, cost)[0]

    def _incr_fallback_window(self, key: str, expiry: float, cost: int = 1) -> tuple[int, float]:
        """(count, window end) after counting ``cost`` in the instance's store (this process's memory
        when the store fails)."""
        if self.fallback is not self.memory:
            try:
                return self.fallback.incr(key, expiry, cost)
            except (sqlite3.Error, OSError) as exc:
                self._fallback_failed(exc)
        return self.memory.incr(key, expiry, cost)

    def _get_fallback(self, key: str) -> tuple[int, float]:
        if self.fallback is not self.memory:
            try:
                return self.fallback.get(key)
            except (sqlite3.Error, OSError) as exc:
                self._fallback_failed(exc)
        return self.memory.get(key)

    def _fallback_failed(self, exc: BaseException) -> None:
        if not self._fallback_failed_logged:
            self._fallback_failed_logged = True
            log.error("The instance's rate-limit store cannot be used (%s): this worker counts in its own "
                      "memory instead", exc)

    def _redis_or_memory(self, in_redis: Callable[[Any], T], in_memory: Callable[[], T]) -> T:
        if self.redis is None:
            return in_memory()
        if _gave_up():
            return in_memory()
        fell_back = False

        def fallback() -> T:
            nonlocal fell_back
            fell_back = True
            return in_memory()

        try:
            result = self.redis.call(in_redis, fallback)
        except Exception:  # noqa: BLE001 - a broken service must never turn a page into a 500
            log.exception("The redis service raised instead of falling back; counting in memory")
            fell_back = True
            result = in_memory()
        return self._outcome(fell_back, result)

    def _outcome(self, fell_back: bool, result: T) -> T:
        """``result``, after noting where it was counted: the rest of a request that fell back stays in
        the fallback (one Redis timeout per request at most), and the storage in use is reported."""
        if fell_back:
            _give_up_for_this_request()
            self._observe("memory", reason_for(self.redis.state if self.redis is not None else ""))
        else:
            self._observe("redis", "Redis answers (counts shared by all workers)")
        return result

    def _observe(self, storage: str, reason: str) -> None:
        if storage == self.storage_in_use:
            if storage == "memory":
                self.reason = reason
            return
        with self._lock:
            if storage == self.storage_in_use:
                return
            self.storage_in_use, self.reason = storage, reason
        if storage == "memory":
            log.warning("Rate limits now counted in the %s's memory (limits divided by RATE_LIMIT_INSTANCES=%d): %s",
                        self.fallback_scope, self.instances, reason)
        else:
            log.info("Rate limits counted in Redis again")
        if self._on_change is not None:
            self._on_change(storage, reason)


def reason_for(state: str) -> str:
    return {
        "open": "Redis circuit breaker is open",
        "half-open": "Redis circuit breaker is half-open (probe in flight)",
        "not-configured": "REDIS_URL is not set",
    }.get(state, "a Redis call failed or timed out")


def _gave_up() -> bool:
    return has_app_context() and bool(g.get(_GAVE_UP))


def _give_up_for_this_request() -> None:
    if has_app_context():
        setattr(g, _GAVE_UP, True)


def _request_dict(name: str) -> dict[Any, Any] | None:
    """A dict kept on ``g`` for this request (None outside a request)."""
    if not has_app_context():
        return None
    found = g.get(name)
    if found is None:
        found = {}
        setattr(g, name, found)
    return found


def _remember_window(key: str, count: int, reset_at: float) -> None:
    windows = _request_dict(_WINDOWS)
    if windows is not None:
        windows[key] = (count, reset_at)


def _known_window(key: str) -> tuple[int, float] | None:
    if not has_app_context():
        return None
    windows = g.get(_WINDOWS)
    return windows.get(key) if windows else None
