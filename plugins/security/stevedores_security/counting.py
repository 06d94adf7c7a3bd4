"""Counting rate-limit hits in Redis through the resilient ``redis`` service, or in memory.

flask-limiter asks a *strategy* object to ``hit``/``test``/``get_window_stats``; this
module's :class:`ResilientCounter` is that strategy (fixed windows). Each operation goes
to Redis through ``redis.call(fn, fallback)`` (docs/plugins.md), so:

- Redis answering: counts are shared by every worker and instance (full limits).
- Redis down, slow or its breaker open: ``call`` returns the fallback, which counts in
  this process's memory with the limit divided by the worker count (an instance then
  still allows about the configured total). No error, no 500; a request waits at most
  one Redis timeout (after one failed call the rest of the request stays in memory),
  and with the breaker open it does not wait at all.
- Redis back (the breaker closes): counting returns to Redis by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar

from flask import g, has_app_context
from limits import RateLimitItem
from limits.util import WindowStats

from .memory_windows import MemoryWindows

log = logging.getLogger("stevedores.security")

T = TypeVar("T")

REDIS_PREFIX = "stevedores:ratelimit:"

# INCRBY and (re)arm the expiry in one atomic round trip; a key without TTL is re-armed,
# so a lost EXPIRE can never leave a counter that lives forever.
INCR_EXPIRE_LUA = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1] * 1000)
  ttl = ARGV[1] * 1000
end
return {count, ttl}
"""

_GAVE_UP = "_stevedores_rate_limit_in_memory"
_WINDOWS = "_stevedores_rate_limit_windows"


class ResilientCounter:
    """Fixed-window rate limiting over the ``redis`` service with an in-memory fallback
    (flask-limiter's strategy interface: hit, test, get_window_stats, clear).

    ``redis`` is the service (or None); ``workers`` divides in-memory limits;
    ``on_storage_change(storage, reason)`` is called when the storage in use changes.
    """

    def __init__(self, redis: Any, workers: int, on_storage_change: Callable[[str, str], None] | None = None) -> None:
        self.memory = MemoryWindows()
        self.redis = redis if redis is not None and getattr(redis, "configured", False) else None
        self.workers = max(1, int(workers))
        self._on_change = on_storage_change
        self._lock = threading.Lock()
        if self.redis is not None:
            self.storage_in_use, self.reason = "redis", "Redis answers (counts shared by all workers)"
        else:
            self.storage_in_use = "memory"
            self.reason = ("REDIS_URL is not set" if redis is not None
                           else "no redis service (redis_resilience plugin not installed)")

    # --- the strategy interface flask-limiter uses -------------------------------------------

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Consume ``cost`` from the limit; True when it was not exceeded."""
        key = item.key_for(*identifiers)

        def in_redis(client: Any) -> bool:
            script = client.register_script(INCR_EXPIRE_LUA)
            count, ttl_ms = script(keys=[REDIS_PREFIX + key], args=[item.get_expiry(), cost])
            _remember_window(key, int(count), time.time() + int(ttl_ms) / 1000)
            return int(count) <= item.amount

        def in_memory() -> bool:
            return self.memory.incr(key, item.get_expiry(), cost)[0] <= self.share(item)

        return self._redis_or_memory(in_redis, in_memory)

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """True when ``cost`` could be consumed without exceeding the limit (consumes nothing)."""
        key = item.key_for(*identifiers)

        def in_redis(client: Any) -> bool:
            return int(client.get(REDIS_PREFIX + key) or 0) < item.amount - cost + 1

        return self._redis_or_memory(in_redis, lambda: self.memory.get(key)[0] < self.share(item) - cost + 1)

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
            count, end = self.memory.get(key)
            return WindowStats(end, max(0, self.share(item) - count))

        return self._redis_or_memory(in_redis, in_memory)

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        """Forget the counts of this limit (Redis and memory)."""
        key = item.key_for(*identifiers)
        self._redis_or_memory(lambda client: client.delete(REDIS_PREFIX + key), lambda: None)
        self.memory.clear(key)

    # --- helpers ------------------------------------------------------------------------

    def share(self, item: RateLimitItem) -> int:
        """This worker's share of ``item``'s amount for in-memory counting (at least 1)."""
        return max(1, item.amount // self.workers)

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
        if fell_back:
            _give_up_for_this_request()
            self._observe("memory", reason_for(getattr(self.redis, "state", "")))
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
            log.warning("Rate limits now counted in memory (limits divided by %d workers): %s", self.workers, reason)
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


def _remember_window(key: str, count: int, reset_at: float) -> None:
    if has_app_context():
        windows = g.get(_WINDOWS)
        if windows is None:
            windows = {}
            setattr(g, _WINDOWS, windows)
        windows[key] = (count, reset_at)


def _known_window(key: str) -> tuple[int, float] | None:
    if not has_app_context():
        return None
    windows = g.get(_WINDOWS)
    return windows.get(key) if windows else None
