"""The in-memory fallback: get/set/delete/incr with TTLs, bounded by entries and by bytes.

A fallback must never become the memory leak the memory guard then has to fight:
the least recently used entries are evicted when either bound would be passed, a
value larger than the whole byte budget is not stored at all, and expired entries
are removed (not merely hidden) as the clock passes their deadline: every operation
first pops the entries whose deadline is behind it from a heap of deadlines.

Values are stored the way Redis stores them (bytes; ``str`` as UTF-8, numbers as
their decimal text), so the cache answers the same in both modes.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Union

from stevedores.forking import renew_in_children

Value = Union[str, bytes, int, float]

#: Bytes charged per entry beyond its key and value (dict slot, tuple, object headers).
ENTRY_OVERHEAD = 96


def encode(value: Value) -> bytes:
    """The bytes Redis would store for ``value`` (as redis-py encodes it)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"cache values are str, bytes, int or float, not {type(value).__name__}")
    return repr(value).encode("ascii")


@dataclass
class _Entry:
    value: bytes
    expires_at: float | None
    size: int


class MemoryCache:
    """A thread-safe LRU cache with per-entry TTLs and two bounds (entries, bytes)."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 8 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._deadlines: list[tuple[float, str]] = []
        self._bytes = 0
        self.evictions = 0
        self.rejected = 0
        renew_in_children(self)

    # --- the cache operations -----------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        with self._lock:
            self._expire(self._clock())
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def set(self, key: str, value: Value, ttl: float | None = None) -> bool:
        """Store ``value`` (for ``ttl`` seconds, or until evicted); False if it is too big to keep."""
        data = encode(value)
        with self._lock:
            now = self._clock()
            self._expire(now)
            expires_at = now + ttl if ttl is not None else None
            return self._store(key, data, expires_at)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        with self._lock:
            self._expire(self._clock())
            return self._drop(key)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (0 when absent) and return it.

        ``ttl`` is set only when the key has no expiry yet (a new counter), like the
        Redis side, so a fixed window is not pushed forward by every hit. Raises
        ValueError when the stored value is not an integer.
        """
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(key)
            current, expires_at = 0, None
            if entry is not None:
                try:
                    current = int(entry.value)
                except ValueError:
                    raise ValueError(f"value at {key!r} is not an integer") from None
                expires_at = entry.expires_at
            if expires_at is None and ttl is not None:
                expires_at = now + ttl
            result = current + amount
            self._store(key, str(result).encode("ascii"), expires_at)
            return result

    def ttl(self, key: str) -> float | None:
        """Seconds left for ``key`` (None: absent or no expiry)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(key)
            return None if entry is None or entry.expires_at is None else entry.expires_at - now

    def clear(self) -> None:
        """Forget everything (Redis is back and is the authority again)."""
        with self._lock:
            self._entries.clear()
            self._deadlines.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Entries, bytes charged, the bounds, evictions and values refused as too big."""
        with self._lock:
            self._expire(self._clock())
            return {"entries": len(self._entries), "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "evictions": self.evictions, "rejected": self.rejected}

    def __len__(self) -> int:
        return len(self._entries)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held by a thread that is gone)."""
        self._lock = threading.Lock()

    # --- internals (the lock is held) --------------------------------------------------

    def _store(self, key: str, data: bytes, expires_at: float | None) -> bool:
        size = len(key.encode("utf-8")) + len(data) + ENTRY_OVERHEAD
        self._drop(key)
        if size > self.max_bytes:
            self.rejected += 1
            return False
        while self._entries and (len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes):
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        self._entries[key] = _Entry(data, expires_at, size)
        self._bytes += size
        if expires_at is not None:
            heapq.heappush(self._deadlines, (expires_at, key))
            if len(self._deadlines) > 2 * len(self._entries) + 64:
                self._rebuild_deadlines()
        return True

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True

    def _expire(self, now: float) -> None:
        """Remove every entry whose deadline has passed (heap items of replaced entries are skipped)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            expires_at, key = heapq.heappop(deadlines)
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at == expires_at:
                self._drop(key)

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [(e.expires_at, k) for k, e in self._entries.items() if e.expires_at is not None]
        heapq.heapify(self._deadlines)
