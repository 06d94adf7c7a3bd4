"""Hook implementations of the redis_resilience plugin.

Offers the ``redis`` and ``cache`` services (docs/plugins.md), the non-critical
``redis`` health check, and renews the connection pool in each worker after fork.
"""

from __future__ import annotations

from typing import Any

from stevedores import HealthCheck, Setting, get_service, hookimpl
from stevedores.telemetry import Metric

from .cache import ResilientCache
from .client import ResilientRedis
from .health import breaker_panel, redis_check
from .memory_cache import MemoryCache
from .settings import SETTINGS


@hookimpl
def stevedores_settings() -> list[Setting]:
    """REDIS_URL (optional: without it the dashboard uses the in-memory fallback), timeouts, breaker, bounds."""
    return list(SETTINGS)


def build_services(config: Any, telemetry: Any = None) -> dict[str, Any]:
    """The ``redis`` and ``cache`` services for a validated configuration."""
    redis_client = ResilientRedis(
        config["REDIS_URL"],
        connect_timeout=config["REDIS_CONNECT_TIMEOUT_MS"] / 1000,
        read_timeout=config["REDIS_READ_TIMEOUT_MS"] / 1000,
        health_check_interval=config["REDIS_HEALTH_CHECK_INTERVAL"],
        failure_threshold=config["REDIS_BREAKER_FAILURE_THRESHOLD"],
        recovery_timeout=config["REDIS_BREAKER_RECOVERY_TIMEOUT"],
        half_open_probes=config["REDIS_BREAKER_HALF_OPEN_PROBES"],
        telemetry=telemetry,
    )
    memory = MemoryCache(config["REDIS_FALLBACK_MAX_ENTRIES"], config["REDIS_FALLBACK_MAX_BYTES"])
    return {"redis": redis_client, "cache": ResilientCache(redis_client, memory)}


@hookimpl
def stevedores_metrics() -> list[Metric]:
    """The breaker's state and transitions, and what the fallback served."""
    return [
        Metric("redis_breaker_state", "gauge",
               "Redis circuit breaker: 0 closed, 1 half-open, 2 open (worst live worker).", "max"),
        Metric("redis_breaker_transitions_total", "counter",
               "Redis circuit breaker transitions, by the state entered (label to)."),
        Metric("redis_fallback_total", "counter",
               "Operations served from the in-memory fallback instead of Redis, by operation."),
    ]


@hookimpl
def stevedores_services(config: Any, telemetry: Any) -> dict[str, Any]:
    """``redis``: the resilient client; ``cache``: get/set/delete/incr that survive outages."""
    return build_services(config, telemetry)


@hookimpl
def stevedores_health_checks(app: Any, config: Any) -> list[HealthCheck]:
    """The non-critical ``redis`` check (its timeout covers one connect plus one read)."""
    redis_client = get_service(app, "redis")
    if not isinstance(redis_client, ResilientRedis):
        return []
    timeout = max(1.0, redis_client.connect_timeout + redis_client.read_timeout + 0.5)
    return [HealthCheck("redis", redis_check(redis_client, get_service(app, "cache")), critical=False,
                        timeout=timeout, description="Redis answers PING; otherwise the in-memory fallback serves",
                        panel=breaker_panel, public=("circuit_breaker_state", "fallback"))]


@hookimpl
def stevedores_worker_started(app: Any) -> None:
    """After fork: make sure no connection of the master's pool is used in this worker."""
    redis_client = get_service(app, "redis")
    if isinstance(redis_client, ResilientRedis):
        redis_client.forget_inherited_pool()


@hookimpl
def stevedores_shutdown(app: Any) -> None:
    """Close this process's Redis connections."""
    redis_client = get_service(app, "redis")
    if isinstance(redis_client, ResilientRedis):
        redis_client.close()
