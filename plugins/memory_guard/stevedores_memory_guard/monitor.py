"""The memory monitor: a daemon thread in each worker that watches the container's memory.

Every ``interval`` seconds it samples the container's memory against the limit:

- at or above the warning threshold it logs ``Memory usage high: 390MB of 512MB (76.2%)``
  (one worker logs, at most once per ``warning_repeat`` seconds for the whole tree);
- at or above the critical threshold it runs ``gc.collect()`` in its own process and
  samples again; if still critical, the worker using the most memory (USS: what it
  gives back when it exits) recycles itself gracefully, at most one worker per
  ``cooldown`` seconds across the tree. The recycle is logged with its cause and
  counted (``worker_recycles_total{cause}``).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .coordination import Coordinator
from .processes import ProcessMemory
from .resources import MB
from .sampling import MemorySample

log = logging.getLogger("stevedores.memory_guard")

CAUSE_MEMORY_CRITICAL = "memory_critical"


@dataclass(frozen=True)
class Thresholds:
    """When to warn, when to act, and how often."""

    warning_percent: float = 75.0
    critical_percent: float = 85.0
    interval: float = 5.0
    cooldown: float = 60.0
    warning_repeat: float = 60.0

    def __post_init__(self) -> None:
        if self.critical_percent <= self.warning_percent:
            raise ValueError(f"MEMORY_CRITICAL_PERCENT ({self.critical_percent:g}) must be above "
                             f"MEMORY_WARNING_PERCENT ({self.warning_percent:g})")

    def status(self, percent: float) -> str:
        """``healthy`` below the warning threshold, ``degraded`` at or above it."""
        return "healthy" if percent < self.warning_percent else "degraded"


class Sampler(Protocol):
    """Anything that reads the container's memory."""

    def sample(self) -> MemorySample:
        """Memory in use now, against the limit."""


class Telemetry(Protocol):
    """The runtime's telemetry (see stevedores.telemetry)."""

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to a counter."""


class MemoryMonitor:
    """Samples memory, warns, collects garbage and recycles the largest worker when critical.

    ``recycle(cause)`` makes this process exit gracefully (None: not under gunicorn,
    never recycle). ``workers()`` lists the sibling workers' figures. ``stopping()`` tells
    whether this worker is already shutting down (gunicorn's ``worker.alive`` is False):
    it then neither warns nor recycles. :meth:`check_once` is one tick, usable without the thread.
    """

    def __init__(self, sampler: Sampler, workers: Callable[[], list[ProcessMemory]], coordinator: Coordinator,
                 telemetry: Telemetry, thresholds: Thresholds, recycle: Callable[[str], None] | None,
                 collect: Callable[[], int] = gc.collect, pid: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.sampler = sampler
        self.workers = workers
        self.coordinator = coordinator
        self.telemetry = telemetry
        self.thresholds = thresholds
        self.recycle = recycle
        self.collect = collect
        self.pid = pid or os.getpid()
        self.clock = clock
        self.stopping = stopping
        self.state = "ok"
        self._recycling = False
        self._said_cannot_recycle = False
        self._last_gc_log = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one tick ------------------------------------------------------------------------

    def check_once(self) -> str:
        """Sample and act once; returns the state: ok, warning, critical, recycling or stopping."""
        if self._recycling:
            return "recycling"
        if self.stopping():
            return "stopping"
        sample = self._sample()
        if sample.percent < self.thresholds.warning_percent:
            if self.state != "ok":
                log.info("Memory usage back to normal: %s", sample.describe())
            self.state = "ok"
            return self.state
        if self.coordinator.claim("warning", self.thresholds.warning_repeat):
            log.warning("Memory usage high: %s", sample.describe())
        if sample.percent < self.thresholds.critical_percent:
            self.state = "warning"
            return self.state
        self.state = self._handle_critical(sample)
        return self.state

    def _sample(self) -> MemorySample:
        sample = self.sampler.sample()
        self.telemetry.gauge("memory_used_bytes", sample.used_bytes)
        self.telemetry.gauge("memory_limit_bytes", sample.limit_bytes)
        return sample

    def _handle_critical(self, before: MemorySample) -> str:
        collected = self.collect()
        after = self._sample()
        now = self.clock()
        if now - self._last_gc_log >= self.thresholds.warning_repeat:
            self._last_gc_log = now
            log.warning("Memory usage critical: %s; gc.collect() in worker %d freed %d objects; now %s",
                        before.describe(), self.pid, collected, after.describe())
        if after.percent < self.thresholds.critical_percent:
            return "warning"
        if self.recycle is None:
            if not self._said_cannot_recycle:
                self._said_cannot_recycle = True
                log.warning("Memory usage critical (%s) but this process is not a gunicorn worker: "
                            "not recycling", after.describe())
            return "critical"
        workers = self.workers()
        me = next((w for w in workers if w.pid == self.pid), None)
        largest = max(workers, key=lambda w: w.uss, default=None)
        if me is None or largest is None or largest.pid != self.pid:
            return "critical"  # the largest worker's own monitor acts
        if self.stopping():
            return "stopping"  # gunicorn is already stopping this worker
        if not self.coordinator.claim("recycle", self.thresholds.cooldown, cause=CAUSE_MEMORY_CRITICAL):
            return "critical"  # another worker recycled within the cool-down
        others = ", ".join(f"{w.pid}: {w.uss / MB:.0f}MB" for w in workers if w.pid != self.pid) or "none"
        log.warning("Recycling worker %d (cause: %s): memory %s after gc.collect(); this worker uses the most "
                    "(USS %.0fMB; others %s); it finishes its current requests, then gunicorn replaces it",
                    self.pid, CAUSE_MEMORY_CRITICAL, after.describe(), me.uss / MB, others)
        self.telemetry.count("worker_recycles_total", cause=CAUSE_MEMORY_CRITICAL)
        self._recycling = True
        self.recycle(CAUSE_MEMORY_CRITICAL)
        return "recycling"

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon thread (call after fork, in the worker)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="memory-guard-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it briefly."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.thresholds.interval):
            try:
                if self.check_once() in ("recycling", "stopping"):
                    return
            except Exception:  # noqa: BLE001 - a failing sample must not kill the monitor
                log.exception("memory_guard: memory check failed")
