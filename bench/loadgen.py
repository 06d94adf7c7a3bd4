"""A small closed-loop HTTP load generator for drills: N clients, keep-alive, per-request records.

Python threads are enough to hold 50+ concurrent clients against a local gunicorn and to
see every failure with its time; throughput figures for the guide's targets come from
ab/wrk in bench/harness.py.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Record:
    """One request: when it started (seconds since the run began), how long it took, outcome."""

    started: float
    elapsed: float
    path: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx response."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Stats:
    """What a run measured."""

    records: list[Record] = field(default_factory=list)
    duration: float = 0.0

    @property
    def sent(self) -> int:
        """Requests sent."""
        return len(self.records)

    @property
    def failures(self) -> list[Record]:
        """Non-2xx responses and transport errors."""
        return [r for r in self.records if not r.ok]

    def percentile(self, q: float) -> float:
        """Latency percentile in seconds (nearest rank)."""
        times = sorted(r.elapsed for r in self.records)
        if not times:
            return 0.0
        return times[min(len(times) - 1, max(0, round(q / 100 * len(times)) - 1))]

    @property
    def slowest(self) -> float:
        """The slowest response in seconds."""
        return max((r.elapsed for r in self.records), default=0.0)

    def summary(self) -> str:
        """One line: sent, non-2xx, errors, slowest, p50/p99, rate."""
        non2xx = sum(1 for r in self.records if r.status is not None and not r.ok)
        errors = sum(1 for r in self.records if r.status is None)
        rate = self.sent / self.duration if self.duration else 0.0
        return (f"sent={self.sent} non_2xx={non2xx} errors={errors} slowest={self.slowest * 1000:.0f}ms "
                f"p50={self.percentile(50) * 1000:.1f}ms p99={self.percentile(99) * 1000:.1f}ms rate={rate:.0f}/s")


class Load:
    """``clients`` threads requesting ``paths`` in turn against ``base_url`` until stopped."""

    def __init__(self, base_url: str, paths: Sequence[str], clients: int = 50, timeout: float = 15.0,
                 headers: dict[str, str] | None = None, on_record: Callable[[Record], None] | None = None) -> None:
        """``on_record``: called with each finished request instead of keeping it in ``stats``
        (a long run then keeps counts, not a record per request); it must be thread-safe."""
        parts = urlsplit(base_url)
        self.headers = {"Connection": "keep-alive", **(headers or {})}
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.paths, self.clients, self.timeout, self.on_record = list(paths), clients, timeout, on_record
        self.stats = Stats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._t0

    def start(self) -> Load:
        """Start the clients."""
        self._t0 = time.monotonic()
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(i,), daemon=True, name=f"load-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Stats:
        """Stop the clients, wait for their last request, and return the stats."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.stats.duration = self.now()
        return self.stats

    def run_for(self, seconds: float) -> Stats:
        """Start, wait ``seconds``, stop."""
        self.start()
        time.sleep(seconds)
        return self.stop()

    def _client(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = index
        while not self._stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            started = self.now()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", path, headers=self.headers)
                response = conn.getresponse()
                response.read()
                record = Record(started, self.now() - started, path, response.status)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                record = Record(started, self.now() - started, path, None, f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
            if self.on_record is not None:
                self.on_record(record)
                continue
            with self._lock:
                self.stats.records.append(record)
        if conn is not None:
            conn.close()
