"""Fixed-window counters in this process's memory: the rate limits' fallback storage.

limits' MemoryStorage starts a timer thread every few milliseconds to expire keys (a
thread start per ~10 ms of traffic, and threads do not survive a fork); these counters
expire lazily instead and are bounded: past ``max_keys`` the expired windows are
dropped, then the oldest.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

DEFAULT_MAX_KEYS = 100_000


class MemoryWindows:
    """``key -> (count, window end)`` with a lock; thread-safe, no background thread."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.time) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to the current window of ``key`` (a new one when it ended): (count, end)."""
        now = self._clock()
        with self._lock:
            count, end = self._windows.get(key, (0, 0.0))
            if end <= now:
                count, end = 0, now + expiry
                if key not in self._windows and len(self._windows) >= self.max_keys:
                    self._make_room(now)
            count += amount
            self._windows[key] = (count, end)
            return count, end

    def get(self, key: str) -> tuple[int, float]:
        """(count, end) of the current window of ``key``; (0, now) when there is none."""
        now = self._clock()
        count, end = self._windows.get(key, (0, 0.0))
        return (count, end) if end > now else (0, now)

    def clear(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._windows.pop(key, None)

    def __len__(self) -> int:
        return len(self._windows)

    def _make_room(self, now: float) -> None:
        live = {k: v for k, v in self._windows.items() if v[1] > now}
        if len(live) >= self.max_keys:  # all live: keep the newest half
            newest = sorted(live.items(), key=lambda kv: kv[1][1])[len(live) // 2:]
            live = dict(newest)
        self._windows = live
