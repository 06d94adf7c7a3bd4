"""/health/quick's snapshot: the last comprehensive report, kept fresh off the request path.

A background thread per worker (started after fork by ``stevedores_worker_started``)
refreshes it every HEALTH_REFRESH_INTERVAL seconds. A request that finds it older than
HEALTH_QUICK_TTL asks for a refresh and answers at once with what it has (and its
age); only the very first request of a process with no snapshot yet waits, and that
wait is bounded by the checks' timeouts.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from stevedores.forking import renew_in_children

from .report import Report

log = logging.getLogger("stevedores.health")


class QuickSnapshot:
    """Holds the newest report and refreshes it in the background."""

    def __init__(self, run: Callable[[], Report], ttl: float, interval: float) -> None:
        self._run, self.ttl, self.interval = run, ttl, interval
        self._report: Report | None = None
        self.after_fork()
        renew_in_children(self)

    def after_fork(self) -> None:
        """New lock, events and no thread (stevedores.forking): the refresher does not survive a fork."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._one_off: threading.Thread | None = None

    @property
    def report(self) -> Report | None:
        """The newest report, or None before the first run."""
        return self._report

    def publish(self, report: Report) -> None:
        """Keep ``report`` if it is newer than the one held (any comprehensive run publishes)."""
        with self._lock:
            current = self._report
            if current is None or report.taken_at >= current.taken_at:
                self._report = report

    def current(self) -> Report:
        """The snapshot for a request: never waits on a dependency once one exists."""
        report = self._report
        if report is None:
            return self.refresh()
        if report.age() > self.ttl:
            self.request_refresh()
        return report

    def refresh(self) -> Report:
        """Run the checks now (bounded by their timeouts) and publish the result."""
        report = self._run()
        self.publish(report)
        return report

    def request_refresh(self) -> None:
        """Refresh soon, in the background: wake the refresher, or start a one-off thread."""
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            return
        with self._lock:
            if self._one_off is not None and self._one_off.is_alive():
                return
            self._one_off = threading.Thread(target=self._refresh_quietly, name="stevedores-health-refresh",
                                             daemon=True)
            self._one_off.start()

    def start(self) -> None:
        """Start the periodic refresher in this process (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="stevedores-health-refresher", daemon=True)
            self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        """Stop the refresher; a check still running is abandoned (its threads are daemons)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the periodic refresher runs in this process."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._refresh_quietly()
            self._wake.wait(self.interval)
            self._wake.clear()

    def _refresh_quietly(self) -> None:
        if self._stop.is_set() and threading.current_thread() is self._thread:
            return
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the refresher must survive anything
            log.exception("Health snapshot refresh failed")
