"""The ``cache`` service: get/set/delete/incr on Redis when it answers, in memory otherwise.

Both modes behave the same: values go in as str, bytes, int or float and come back
from :meth:`ResilientCache.get` as ``str`` (:meth:`ResilientCache.get_bytes` gives the
raw bytes); TTLs are in seconds; ``incr`` sets its TTL only on a counter that has none
yet (a fixed window), atomically on Redis (one Lua script).

What happens to data written during an outage (see the README): it lives only in the
memory of the worker that wrote it. When the breaker closes again Redis is the
authority: the fallback is cleared (nothing is replayed into Redis, so a stale value
can never overwrite a newer one written by another worker, and the next outage does
not resurrect values from the previous one).
"""

from __future__ import annotations

from typing import Any

from .breaker import CLOSED, Transition
from .client import ResilientRedis
from .memory_cache import MemoryCache, Value, encode

#: INCRBY, then EXPIRE only when the key has no expiry yet; one round trip, atomic.
INCR_WITH_TTL = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class ResilientCache:
    """get/set/delete/incr through :class:`ResilientRedis`, with :class:`MemoryCache` as the fallback."""

    def __init__(self, redis_client: ResilientRedis, memory: MemoryCache) -> None:
        self.redis = redis_client
        self.memory = memory
        self._incr_script: Any = None
        redis_client.add_transition_listener(self._on_transition)

    @property
    def mode(self) -> str:
        """``redis`` while Redis is configured and the breaker is closed, else ``memory``."""
        return "redis" if self.redis.state == CLOSED else "memory"

    def get(self, key: str) -> str | None:
        """The value as text (UTF-8), or None when absent or expired."""
        data = self.get_bytes(key)
        return None if data is None else data.decode("utf-8", errors="replace")

    def get_bytes(self, key: str) -> bytes | None:
        """The value as stored, or None when absent or expired."""
        return self.redis.call(lambda client: client.get(key), lambda: self.memory.get(key), operation="get")

    def set(self, key: str, value: Value, ttl: float | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds (None: no expiry). False if the fallback refused it as too big."""
        data = encode(value)
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds (or None)")
        milliseconds = _milliseconds(ttl)
        return self.redis.call(lambda client: bool(client.set(key, data, px=milliseconds)),
                               lambda: self.memory.set(key, data, ttl), operation="set")

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        return self.redis.call(lambda client: bool(client.delete(key)), lambda: self.memory.delete(key),
                               operation="delete")

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the counter at ``key`` and return it; a new counter expires after ``ttl`` s."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds (or None)")
        milliseconds = _milliseconds(ttl) or 0
        return self.redis.call(
            lambda client: int(self._script(client)(keys=[key], args=[amount, milliseconds], client=client)),
            lambda: self.memory.incr(key, amount, ttl), operation="incr")

    def stats(self) -> dict[str, Any]:
        """Mode and the fallback's figures."""
        return {"mode": self.mode, **self.memory.stats()}

    def _script(self, client: Any) -> Any:
        if self._incr_script is None:
            self._incr_script = client.register_script(INCR_WITH_TTL)
        return self._incr_script

    def _on_transition(self, event: Transition) -> None:
        if event.new == CLOSED:
            self.memory.clear()


def _milliseconds(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, int(round(ttl * 1000)))
