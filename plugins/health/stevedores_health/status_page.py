"""What the operators' status page shows, as one JSON-ready mapping (rendered by the
template on load, then by static/status.js on every refresh)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from stevedores import __version__

from .redact import scrub
from .report import Report
from .state import HealthState

BREAKER_KEYS = ("circuit_breaker_state", "breaker_state", "breaker", "circuit_breaker", "circuit", "state")
PERCENT_KEYS = ("memory_usage_percent", "used_percent", "usage_percent", "memory_percent", "percent_used", "percent")
USED_HINTS = ("working_set", "used", "current", "usage", "rss")


def status_data(state: HealthState, report: Report, *, operator: bool) -> dict[str, Any]:
    """Checks, breaker, memory gauge, workers and plugins, for the page and /status.json."""
    runtime = state.runtime
    secrets = runtime.config.secret_values()
    health = report.as_dict(operator=operator)
    health["age_seconds"] = round(report.age(), 1)
    for result in report.results:
        health["checks"][result.name]["plugin"] = result.plugin
    plugins = []
    for info in runtime.plugins.listing():
        entry = info.as_dict()
        if entry["error"] and not operator:
            entry["error"] = scrub(entry["error"], secrets)
        plugins.append(entry)
    return {
        "health": health,
        "breaker": breaker_state(health["checks"].get("redis"), runtime.service("redis")),
        "memory": memory_gauge(health["checks"].get("memory")),
        "workers": state.runtime.worker_decision().as_dict(),  # taken once at start-up by the core
        "plugins": plugins,
        "profile": runtime.config.profile,
        "core_version": __version__,
        "pid": os.getpid(),
        "refresh_seconds": state.settings.status_refresh,
    }


def breaker_state(redis_check: Mapping[str, Any] | None, redis_service: Any) -> dict[str, Any] | None:
    """The Redis circuit breaker's state: from the redis check's figures, else the redis service."""
    if redis_check:
        for key in BREAKER_KEYS:
            value = redis_check.get(key)
            if isinstance(value, Mapping):
                value = value.get("state")
            if isinstance(value, str) and value:
                return {"state": value, "source": "redis check", "check_status": redis_check.get("status")}
    state = getattr(redis_service, "state", None)
    if isinstance(state, str):
        return {"state": state, "source": "redis service", "check_status": None}
    return None


def memory_gauge(memory_check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Used / limit / percent from the memory check's figures (bytes or MB), or None."""
    if not memory_check:
        return None
    figures = _flatten(memory_check)
    limit = _mb(figures, lambda k: "limit" in k and "percent" not in k)
    used = _mb(figures, lambda k: any(h in k for h in USED_HINTS) and "limit" not in k and "percent" not in k)
    percent = next((float(figures[k]) for k in PERCENT_KEYS if _number(figures.get(k))), None)
    if percent is None and used is not None and limit:
        percent = used / limit * 100
    if percent is None and used is None:
        return None
    warn = figures.get("warning_percent")
    crit = figures.get("critical_percent")
    return {"used_mb": None if used is None else round(used, 1), "limit_mb": None if limit is None else round(limit, 1),
            "percent": None if percent is None else round(percent, 1), "status": memory_check.get("status"),
            "warning_percent": float(warn) if _number(warn) else 75.0,
            "critical_percent": float(crit) if _number(crit) else 90.0}


def _flatten(figures: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}".lower()
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _mb(figures: Mapping[str, Any], wanted: Any) -> float | None:
    for key, value in figures.items():
        if not wanted(key) or not _number(value):
            continue
        if key.endswith("_bytes"):
            return float(value) / 2**20
        if key.endswith("_mb"):
            return float(value)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
