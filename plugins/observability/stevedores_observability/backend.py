"""The prometheus_client metrics of one process, and their text exposition.

Two modes, chosen when the backend is built (once per process, see ``sink.py``):

- single process (dev server, tests, ``flask run``): a private ``CollectorRegistry``;
- multiprocess (gunicorn): every value lives in a per-process file under the shared
  directory and a scrape reads all the files with ``MultiProcessCollector``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from stevedores.telemetry import Metric

from . import archive
from .catalog import PREFIX, spec_for

log = logging.getLogger("stevedores.observability")

#: Series per metric beyond which new label values are dropped (a reporter putting
#: unbounded values such as raw URLs or ids in a label would otherwise exhaust memory).
MAX_SERIES_PER_METRIC = 1000

# The classic exposition format's names: recent prometheus_client versions accept any UTF-8
# name (quoted in the output), which older scrapers and most queries cannot use.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def use_multiprocess_values() -> None:
    """Make metrics built from now on in this process write to the multiprocess files.

    prometheus_client picks its value class when it is first imported, from
    PROMETHEUS_MULTIPROC_DIR. In the gunicorn master the plugins are loaded (and their
    services report figures, importing prometheus_client) before
    ``stevedores_server_starting`` exports that variable, so the choice made at import
    can be the single-process one; a backend built afterwards switches to the
    multiprocess value class here (the assignment prometheus_client makes at import when
    the variable is already set).
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


@dataclass
class _Family:
    """One exported metric and its children by label values."""

    kind: str
    metric: Any
    labelnames: tuple[str, ...]
    children: dict[tuple[str, ...], Any] = field(default_factory=dict)


class MetricsBackend:
    """The metrics of this process; thread-safe; never raises from :meth:`report`."""

    def __init__(self, multiprocess_dir: str | None,
                 declared: Callable[[str], Metric | None] = lambda _name: None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._declared = declared  # telemetry.declared: what the reporting plugin says a name is
        if multiprocess_dir:
            use_multiprocess_values()
        # multiprocess: the files are the registry; metrics are not registered anywhere
        self.registry: CollectorRegistry | None = None if multiprocess_dir else CollectorRegistry()
        self._families: dict[str, _Family] = {}
        self._rejected: set[str] = set()
        self._warned: set[tuple[str, str]] = set()
        self._requests: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    # --- recording ---------------------------------------------------------------------

    def report(self, kind: str, name: str, value: float, labels: dict[str, str]) -> None:
        """Apply one figure: add to a counter, set a gauge, observe into a histogram."""
        family = self._families.get(name)
        if family is None:
            if name in self._rejected:
                return
            family = self._create(name, kind, labels)
            if family is None:
                return
        if family.kind != kind:
            self._warn_once(name, "kind", "%s is a %s; a %s report of it is ignored", name, family.kind, kind)
            return
        if family.labelnames:
            try:
                key = tuple(str(labels[n]) for n in family.labelnames)
            except KeyError:
                key = ()
            if len(key) != len(labels) or not key:
                self._warn_once(name, "labels", "%s has labels %s; a report with %s is ignored", name,
                                list(family.labelnames), sorted(labels))
                return
            child = family.children.get(key)
            if child is None:
                child = self._child(name, family, key)
                if child is None:
                    return
        elif labels:
            self._warn_once(name, "labels", "%s has no labels; a report with %s is ignored", name, sorted(labels))
            return
        else:
            child = family.metric
        try:
            if kind == "counter":
                child.inc(value)
            elif kind == "gauge":
                child.set(value)
            else:
                child.observe(value)
        except (TypeError, ValueError) as exc:
            self._warn_once(name, "value", "%s: value %r ignored (%s)", name, value, exc)

    def record_request(self, route: str, method: str, status: str, seconds: float | None) -> None:
        """Count one request and observe its latency: the per-request path, one cached lookup."""
        children = self._requests.get((route, method, status))
        if children is None:
            children = self._request_children(route, method, status)
            if children is None:
                return
        children[0].inc(1)
        if seconds is not None:
            children[1].observe(seconds)

    def _request_children(self, route: str, method: str, status: str) -> tuple[Any, Any] | None:
        labels = {"route": route, "method": method, "status": status}
        counted = self._child_for("counter", "http_requests_total", labels)
        timed = self._child_for("histogram", "http_request_duration_seconds", {"route": route})
        if counted is None or timed is None:
            return None
        self._requests[(route, method, status)] = (counted, timed)
        return counted, timed

    def _child_for(self, kind: str, name: str, labels: dict[str, str]) -> Any:
        family = self._families.get(name) or self._create(name, kind, labels)
        if family is None or family.kind != kind or set(family.labelnames) != set(labels):
            return None
        key = tuple(labels[n] for n in family.labelnames)
        return family.children.get(key) or self._child(name, family, key)

    def _create(self, name: str, kind: str, labels: dict[str, str]) -> _Family | None:
        with self._lock:
            family = self._families.get(name)
            if family is not None:
                return family
            spec = spec_for(name, kind, self._declared)
            labelnames = tuple(labels)
            options: dict[str, Any] = {"registry": self.registry}
            if spec.kind == "gauge":
                options["multiprocess_mode"] = spec.gauge_mode
            elif spec.kind == "histogram":
                options["buckets"] = spec.buckets
            try:
                _check_names(name, labelnames)
                metric = _KINDS[spec.kind](PREFIX + name, spec.help, labelnames, **options)
            except ValueError as exc:  # invalid metric or label name
                self._rejected.add(name)
                log.warning("Telemetry name %r cannot be exported to Prometheus: %s", name, exc)
                return None
            family = self._families[name] = _Family(spec.kind, metric, labelnames)
            return family

    def _child(self, name: str, family: _Family, key: tuple[str, ...]) -> Any:
        with self._lock:
            child = family.children.get(key)
            if child is None:
                if len(family.children) >= MAX_SERIES_PER_METRIC:
                    self._warn_once(name, "cardinality", "%s has %d series already; new label values are dropped",
                                    name, MAX_SERIES_PER_METRIC)
                    return None
                child = family.children[key] = family.metric.labels(*key)
            return child

    def _warn_once(self, name: str, what: str, message: str, *args: Any) -> None:
        if (name, what) not in self._warned:
            self._warned.add((name, what))
            log.warning(message, *args)

    # --- exposition --------------------------------------------------------------------

    def render(self, extra_collectors: Iterable[Any] = ()) -> bytes:
        """The Prometheus text exposition of every worker's metrics plus ``extra_collectors``."""
        registry = CollectorRegistry(auto_describe=False)
        for collector in extra_collectors:
            registry.register(collector)
        if not self.multiprocess_dir:
            if self.registry is not None:
                registry.register(_Forward(self.registry))
            return generate_latest(registry)
        registry.register(_HeaderedFiles(self.multiprocess_dir))
        # Under the lock the master's compaction (child_exit) takes: a scrape never sees a dead
        # worker's counts both in its file and in the archive, nor in neither.
        with archive.scrape_lock(self.multiprocess_dir):
            try:
                archive.compact_dead(self.multiprocess_dir)  # workers that died without a child_exit
            except OSError as exc:
                log.error("Could not archive dead workers' metrics files in %s: %s", self.multiprocess_dir, exc)
            return generate_latest(registry)


def _check_names(name: str, labelnames: tuple[str, ...]) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError("expected letters, digits, '_' and ':' (not starting with a digit)")
    for label in labelnames:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"label {label!r}: expected letters, digits and '_' (not starting with a digit or __)")


class _HeaderedFiles:
    """prometheus_client's MultiProcessCollector (its ``merge``), leaving out a file a process is
    creating this instant.

    prometheus_client opens a new process's file and only then sizes it: a scrape that globbed the
    directory in between read an empty file and failed (``struct.error``, a 500 on /metrics; seen
    once in a test run, when a process recorded its first counter during a scrape). An empty file
    holds no value yet, so leaving it out loses nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Any]:
        """The merged metrics of every file that has its header."""
        files = []
        for path in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(path) >= 8:  # prometheus_client's header: the used size and padding
                    files.append(path)
            except OSError:  # removed meanwhile (compacted): nothing to read
                pass
        return MultiProcessCollector.merge(files, accumulate=True)


class _Forward:
    """Expose another registry's metrics inside a scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        """Every metric of the source registry."""
        yield from self.source.collect()
