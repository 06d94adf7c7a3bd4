"""The non-critical "redis" health check.

Shapes (what ``/health`` shows under ``checks.redis``):

- no REDIS_URL: ``{"status": "healthy", "mode": "in-memory", "circuit_breaker_state": "not-configured"}``;
- Redis answers: ``{"status": "healthy", "mode": "redis", "circuit_breaker_state": "closed", "ping_ms": ...}``;
- outage (breaker open): the deployment guide's ``{"status": "error", "fallback": "in-memory",
  "circuit_breaker_state": "open"}`` plus ``failures`` and ``seconds_until_probe``;
- half-open: ``status`` ``degraded``; a failed PING while still closed: ``status`` ``error``.

The PING goes through the breaker: with the breaker open it is refused at once (the
check never waits on a dead Redis), and after the recovery timeout it may be the probe
that closes the breaker again.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from stevedores import StatusPanel

from .breaker import CLOSED, HALF_OPEN, OPEN
from .cache import ResilientCache
from .client import ResilientRedis


def redis_check(redis_client: ResilientRedis, cache: ResilientCache | None = None) -> Callable[[], dict[str, Any]]:
    """The check function for ``HealthCheck("redis", ...)``."""

    def check() -> dict[str, Any]:
        if not redis_client.configured:
            return {"status": "healthy", "mode": "in-memory", "circuit_breaker_state": "not-configured"}
        ping_ms = redis_client.ping()
        snap = redis_client.breaker.snapshot()
        fallback_figures = cache.memory.stats() if cache is not None else {}
        if snap.state == CLOSED and ping_ms is not None:
            return {"status": "healthy", "mode": "redis", "circuit_breaker_state": CLOSED, "ping_ms": ping_ms}
        result: dict[str, Any] = {
            "status": "degraded" if snap.state == HALF_OPEN else "error",
            "fallback": "in-memory",
            "circuit_breaker_state": snap.state,
            "failures": snap.consecutive_failures,
            "last_error": snap.last_failure.split(":")[0],  # the kind only: no addresses
        }
        if snap.state == OPEN:
            result["seconds_until_probe"] = round(snap.seconds_until_probe or 0.0, 1)
        if fallback_figures:
            result["fallback_entries"] = fallback_figures["entries"]
            result["fallback_bytes"] = fallback_figures["bytes"]
        return result

    return check


def breaker_panel(result: Mapping[str, Any]) -> StatusPanel | None:
    """The status page's card for the check's result: the breaker's state and the mode."""
    state = result.get("circuit_breaker_state")
    if not isinstance(state, str):
        return None
    mode = result.get("mode") or (f"serving from {result['fallback']}" if result.get("fallback") else "")
    return StatusPanel("Redis circuit breaker", state, detail=str(mode))
