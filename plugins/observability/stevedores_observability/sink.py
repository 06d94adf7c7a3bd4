"""The telemetry sink: figures reported by any plugin become Prometheus metrics.

One sink per runtime, subscribed to ``runtime.telemetry``. The metrics themselves live
in a :class:`~stevedores_observability.backend.MetricsBackend` built lazily, once per
process: a gunicorn worker forked from a preloaded master gets a fresh backend on its
first figure, in multiprocess mode when the master exported PROMETHEUS_MULTIPROC_DIR
(see ``multiprocess.py``). prometheus_client is only imported when a backend is built.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

from stevedores.forking import renew_in_children

if TYPE_CHECKING:
    from stevedores.telemetry import Metric

    from .backend import MetricsBackend

log = logging.getLogger("stevedores.observability")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

class PrometheusSink:
    """Receives ``count``/``gauge``/``observe`` from the telemetry and records request metrics."""

    def __init__(self, declared: Callable[[str], Metric | None] = lambda _name: None) -> None:
        self._declared = declared  # telemetry.declared, handed to each process's backend
        self._backend: MetricsBackend | None = None
        self._replay = True  # the next backend built gets the remembered gauges (first one, after a fork)
        self._lock = threading.Lock()
        renew_in_children(self)
        # the last value of every gauge series, replayed into a forked worker's new backend
        # (gauges such as the memory limit are reported once, at start-up, in the master)
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        # The gunicorn master's pid once it has exported the shared directory: the master
        # reports gauges only while it preloads the app (the breaker's initial state, the
        # rate-limit storage chosen at start-up). Written to the shared files under the
        # master's pid, which lives as long as the server, they would never go away and
        # would mask the workers' own values (a stale ``livemax`` 1 hides every worker's 0).
        # They are remembered instead and replayed by each forked worker.
        self._master_pid: int | None = None

    # --- the telemetry Sink protocol ---------------------------------------------------

    def count(self, name: str, amount: float, labels: dict[str, str]) -> None:
        """Add ``amount`` to counter ``name``."""
        self.backend().report("counter", name, amount, labels)

    def gauge(self, name: str, value: float, labels: dict[str, str]) -> None:
        """Set gauge ``name`` to ``value``."""
        self._gauges[(name, tuple(labels.items()))] = value
        if self._master_pid == os.getpid():
            return  # replayed by each worker instead (see __init__)
        self.backend().report("gauge", name, value, labels)

    def observe(self, name: str, value: float, labels: dict[str, str]) -> None:
        """Record one observation of histogram ``name``."""
        self.backend().report("histogram", name, value, labels)

    # --- this plugin's own figures and the scrape --------------------------------------

    def record_request(self, route: str, method: str, status: str, seconds: float | None) -> None:
        """Count one request and, when its start time is known, observe its latency."""
        self.backend().record_request(route, method, status, seconds)

    def render(self, extra_collectors: Iterable[Any] = ()) -> bytes:
        """The exposition text of every worker's metrics plus ``extra_collectors``."""
        return self.backend().render(extra_collectors)

    @property
    def multiprocess(self) -> bool:
        """True when this process records into the shared multiprocess directory."""
        return bool(self.backend().multiprocess_dir)

    # --- one backend per process -------------------------------------------------------

    def backend(self) -> MetricsBackend:
        """This process's backend, built on first use and again after a fork."""
        backend = self._backend
        if backend is not None:
            return backend
        with self._lock:
            if self._backend is None:
                self._backend = self._build()
                if self._replay:
                    for (name, labels), value in list(self._gauges.items()):
                        self._backend.report("gauge", name, value, dict(labels))
                    self._replay = False
            return self._backend

    def after_fork(self) -> None:
        """In a forked worker (stevedores.forking): a backend of its own, with the master's gauges replayed."""
        self._lock = threading.Lock()
        self._backend = None
        self._replay = True

    def server_starting(self) -> None:
        """This process is the gunicorn master and just exported the shared directory: build
        the backend again.

        Counts the master itself reports from now on (e.g. from ``stevedores_child_exit``)
        then land in the shared files; its gauges do not (see ``__init__``).
        """
        with self._lock:
            self._backend = None
            self._master_pid = os.getpid()

    def _build(self) -> MetricsBackend:
        from .backend import MetricsBackend

        directory = os.environ.get(MULTIPROC_ENV) or None  # prometheus_client reads it there too
        if directory and not os.path.isdir(directory):
            log.error("%s=%s is not a directory: metrics of this process (pid %d) are not shared with the "
                      "other workers", MULTIPROC_ENV, directory, os.getpid())
            directory = None
        return MetricsBackend(directory, self._declared)
