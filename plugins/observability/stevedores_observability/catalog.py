"""What each telemetry name becomes in Prometheus: kind, help text, gauge aggregation, buckets.

Each name is declared by the plugin that reports it (``stevedores_metrics``, read through
``telemetry.declared``); this plugin knows only its own request metrics. A name reported
but never declared is still exported, created on first use with a generic help text (see
:func:`spec_for`).

Every exported name gets the ``stevedores_`` prefix. Under gunicorn each worker writes its
own figures; Prometheus' multiprocess collector then combines them per metric:

- counters and histograms are summed over every worker that ever lived since start-up
  (so they never go backwards when a worker is recycled);
- gauges use a *live* mode, so a dead worker's last value disappears with it:
  ``livemax`` for a declared aggregation ``max`` (states where the worst worker matters),
  ``livemostrecent`` for ``recent`` (figures about the whole instance that any worker may
  refresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from stevedores.telemetry import Metric

PREFIX = "stevedores_"

#: Latency buckets (seconds): dashboard pages and probes, from 5 ms to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GENERIC_GAUGE_MODE = "livemostrecent"


@dataclass(frozen=True)
class MetricSpec:
    """How one telemetry name is exported."""

    kind: str  # counter | gauge | histogram
    help: str
    gauge_mode: str = GENERIC_GAUGE_MODE
    buckets: tuple[float, ...] = LATENCY_BUCKETS


#: This plugin's own figures (reported by the request middleware, not through telemetry).
#: Every other name is declared by the plugin that reports it (``stevedores_metrics``).
OWN: dict[str, MetricSpec] = {
    "http_requests_total": MetricSpec("counter", "HTTP requests by route pattern, method and status."),
    "http_request_duration_seconds": MetricSpec("histogram", "HTTP request latency by route pattern."),
}

GENERIC_HELP = {
    "counter": "Counter {name} reported through the Stevedores telemetry.",
    "gauge": "Gauge {name} reported through the Stevedores telemetry (latest value of any live worker).",
    "histogram": "Observations of {name} reported through the Stevedores telemetry.",
}

#: A declared gauge aggregation (stevedores.telemetry) as prometheus_client's multiprocess mode.
GAUGE_MODES = {"max": "livemax", "recent": "livemostrecent"}


def spec_for(name: str, kind: str, declared: Callable[[str], Metric | None] = lambda _name: None) -> MetricSpec:
    """How ``name`` is exported: this plugin's own, else as its reporter declared it, else a
    generic spec of ``kind`` (a name reported but never declared is still exported)."""
    own = OWN.get(name)
    if own is not None:
        return own
    metric = declared(name)
    if metric is not None:
        return MetricSpec(metric.kind, metric.help, GAUGE_MODES[metric.aggregation], metric.buckets or LATENCY_BUCKETS)
    return MetricSpec(kind, GENERIC_HELP[kind].format(name=name))
