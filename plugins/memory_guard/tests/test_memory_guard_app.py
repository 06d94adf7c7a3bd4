"""The plugin inside an app: health check "memory", the operator's gc action, the monitor's lifecycle."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import pytest
from stevedores_memory_guard.guard import EXTENSION


def memory_check(app: Any) -> Any:
    checks = {check.name: check for _plugin, check in app.extensions["stevedores"].health_checks}
    return checks["memory"]


def test_health_is_healthy_below_warning_with_per_worker_figures(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["memory_guard"], env={"MEMORY_LIMIT_MB": "100000"})
    check = memory_check(app)
    assert check.critical is False
    result = check.func()
    assert result["status"] == "healthy" and result["limit_mb"] == 100000
    assert 0 < result["used_mb"] < 100000 and result["memory_usage_percent"] < 75
    assert result["usage_source"] == "process tree PSS" and result["limit_source"] == "MEMORY_LIMIT_MB"
    (me,) = result["workers"]
    assert me["pid"] == os.getpid() and me["rss_mb"] >= me["uss_mb"] > 0


def test_health_is_degraded_at_the_warning_threshold(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["memory_guard"], env={"MEMORY_LIMIT_MB": "32", "MEMORY_WARNING_PERCENT": "1",
                                                             "MEMORY_CRITICAL_PERCENT": "99"})
    result = memory_check(app).func()
    assert result["status"] == "degraded" and result["memory_usage_percent"] >= 1


def test_gc_action_is_absent_without_a_token(make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(plugins=["memory_guard"]).test_client()
    assert client.post("/ops/memory/gc").status_code == 404


def test_gc_action_needs_the_operator_token_and_reports_before_and_after(make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(plugins=["memory_guard"], env={"OPS_TOKEN": "operator-token-123"}).test_client()
    assert client.post("/ops/memory/gc").status_code == 401
    assert client.post("/ops/memory/gc", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/ops/memory/gc", headers={"Authorization": "Bearer operator-token-123"}).status_code == 405
    response = client.post("/ops/memory/gc", headers={"Authorization": "Bearer operator-token-123"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["pid"] == os.getpid() and isinstance(body["collected_objects"], int)
    for when in ("before", "after"):
        assert body[when]["used_mb"] > 0 and body[when]["process"]["uss_mb"] > 0


def test_monitor_starts_after_fork_only_and_stops_on_shutdown(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["memory_guard"], env={"MEMORY_CHECK_INTERVAL": "0.1"})
    guard = app.extensions[EXTENSION]
    assert guard.monitor is None  # nothing starts at import or startup
    runtime = app.extensions["stevedores"]
    runtime.worker_started(app, None)
    assert guard.monitor.running and guard.monitor.recycle is None
    assert any(t.name == "memory-guard-monitor" for t in threading.enumerate())
    runtime.shutdown(app)
    assert guard.monitor is None
    assert not any(t.name == "memory-guard-monitor" for t in threading.enumerate())


def test_unordered_thresholds_stop_start_up_naming_the_settings(make_stevedores_app: Callable) -> None:
    from stevedores import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=["memory_guard"], env={"MEMORY_WARNING_PERCENT": "90",
                                                           "MEMORY_CRITICAL_PERCENT": "80"})
    (problem,) = caught.value.problems
    assert problem.name == "MEMORY_CRITICAL_PERCENT"
    assert "80 must be above MEMORY_WARNING_PERCENT (90)" in problem.message
