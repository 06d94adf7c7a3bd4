"""What each telemetry name becomes in Prometheus: kind, help text, gauge aggregation, buckets.

The names are those of docs/plugins.md's telemetry table plus this plugin's own request
metrics. A name reported by a plugin but missing here is still exported, created on first
use with a generic help text (see :func:`spec_for`).

Every exported name gets the ``stevedores_`` prefix. Under gunicorn each worker writes its
own figures; Prometheus' multiprocess collector then combines them per metric:

- counters and histograms are summed over every worker that ever lived since start-up
  (so they never go backwards when a worker is recycled);
- gauges use a *live* mode, so a dead worker's last value disappears with it:
  ``livemax`` for states where the worst worker matters (an open breaker in any worker
  shows as open; the memory limit is the same everywhere), ``livemostrecent`` for figures
  about the whole instance that any worker may refresh (container memory in use, the
  latest result of a health check).
"""

from __future__ import annotations

from dataclasses import dataclass

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


KNOWN: dict[str, MetricSpec] = {
    "redis_breaker_state": MetricSpec(
        "gauge", "Redis circuit breaker: 0 closed, 1 half-open, 2 open (worst live worker).", "livemax"),
    "redis_breaker_transitions_total": MetricSpec(
        "counter", "Redis circuit breaker transitions, by the state entered (label to)."),
    "redis_fallback_total": MetricSpec(
        "counter", "Operations served from the in-memory fallback instead of Redis, by operation."),
    "rate_limit_refusals_total": MetricSpec("counter", "Requests refused by a rate limit (HTTP 429)."),
    "rate_limit_storage": MetricSpec(
        "gauge", "Rate-limit storage in use: 1 for the storage any live worker uses.", "livemax"),
    "memory_used_bytes": MetricSpec("gauge", "Container memory in use (working set), latest reading."),
    "memory_limit_bytes": MetricSpec("gauge", "Container memory limit.", "livemax"),
    "worker_recycles_total": MetricSpec("counter", "Gunicorn worker recycles, by cause."),
    "health_check_status": MetricSpec("gauge", "Latest result of each health check: 1 pass, 0 fail."),
    "health_check_duration_seconds": MetricSpec("histogram", "Duration of each health check run."),
    # this plugin's own figures (reported by the request middleware, not through telemetry)
    "http_requests_total": MetricSpec("counter", "HTTP requests by route pattern, method and status."),
    "http_request_duration_seconds": MetricSpec("histogram", "HTTP request latency by route pattern."),
}

GENERIC_HELP = {
    "counter": "Counter {name} reported through the Stevedores telemetry.",
    "gauge": "Gauge {name} reported through the Stevedores telemetry (latest value of any live worker).",
    "histogram": "Observations of {name} reported through the Stevedores telemetry.",
}


def spec_for(name: str, kind: str) -> MetricSpec:
    """The spec of a known name, or a generic one of ``kind`` for a name first seen now."""
    known = KNOWN.get(name)
    if known is not None:
        return known
    return MetricSpec(kind, GENERIC_HELP[kind].format(name=name))
