"""Figures plugins report (counters, gauges, observations) without knowing who listens.

A metrics plugin subscribes a sink; with none subscribed every call is a cheap no-op.
Plugins never import the metrics plugin or its libraries: they call
``runtime.telemetry.count(...)`` (the runtime is ``app.extensions["stevedores"]`` and is
also passed to ``stevedores_services`` as ``telemetry``). Calls are safe from any thread,
and a failing sink never breaks the caller.

Names are ``snake_case`` with the unit as suffix (``_seconds``, ``_bytes``); keep label
values few (route patterns, not URLs). The plugin that reports a figure declares it
(:class:`Metric`, through the ``stevedores_metrics`` hook), so a metrics plugin learns the
kind, help text and aggregation from the runtime, never from a list of other plugins' names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Protocol

KINDS = ("counter", "gauge", "histogram")
#: How a gauge reported by several processes (gunicorn workers) reads as one figure:
#: ``max`` the highest live process's value (a state where the worst worker matters),
#: ``recent`` the latest value any live process reported (a figure about the whole instance).
GAUGE_AGGREGATIONS = ("max", "recent")


@dataclass(frozen=True)
class Metric:
    """A figure a plugin reports: ``name`` (without any exporter prefix), ``kind`` (one of
    :data:`KINDS`), ``help`` (one sentence, units included), for gauges ``aggregation``
    (one of :data:`GAUGE_AGGREGATIONS`), for histograms optional ``buckets`` (upper bounds,
    in the metric's unit). Raises ValueError for an unknown kind or aggregation."""

    name: str
    kind: str
    help: str
    aggregation: str = "recent"
    buckets: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Metric {self.name!r}: kind must be one of {', '.join(KINDS)}")
        if self.aggregation not in GAUGE_AGGREGATIONS:
            raise ValueError(f"Metric {self.name!r}: aggregation must be one of {', '.join(GAUGE_AGGREGATIONS)}")

log = logging.getLogger("stevedores.telemetry")


class Sink(Protocol):
    """What a metrics plugin subscribes: one method per kind of figure."""

    def count(self, name: str, amount: float, labels: dict[str, str]) -> None:
        """Add ``amount`` to counter ``name``."""

    def gauge(self, name: str, value: float, labels: dict[str, str]) -> None:
        """Set gauge ``name`` to ``value``."""

    def observe(self, name: str, value: float, labels: dict[str, str]) -> None:
        """Record one observation (e.g. a duration) of histogram ``name``."""


class Telemetry:
    """The fan-out from reporters to subscribed sinks, one per runtime."""

    def __init__(self) -> None:
        self._sinks: tuple[Sink, ...] = ()
        self._declared: dict[str, Metric] = {}

    def declare(self, *metrics: Metric) -> None:
        """Record what each name means (the runtime does this from ``stevedores_metrics``)."""
        self._declared.update((m.name, m) for m in metrics)

    def declared(self, name: str) -> Metric | None:
        """The declaration of ``name``, or None when no plugin declared it."""
        return self._declared.get(name)

    @property
    def metrics(self) -> Mapping[str, Metric]:
        """Every declared metric by name."""
        return dict(self._declared)

    def subscribe(self, sink: Sink) -> None:
        """Receive every figure reported from now on."""
        self._sinks = (*self._sinks, sink)

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The subscribed sinks, in subscription order."""
        return self._sinks

    @property
    def active(self) -> bool:
        """True when someone listens (skip expensive figures otherwise)."""
        return bool(self._sinks)

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name``."""
        for sink in self._sinks:
            _safely(sink.count, name, amount, labels)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name`` to ``value``."""
        for sink in self._sinks:
            _safely(sink.gauge, name, value, labels)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation of histogram ``name``."""
        for sink in self._sinks:
            _safely(sink.observe, name, value, labels)


def _safely(method, name: str, value: float, labels: dict[str, str]) -> None:  # noqa: ANN001
    try:
        method(name, value, labels)
    except Exception:  # noqa: BLE001 - reporting must never break the reporter
        log.exception("Telemetry sink failed on %s", name)
