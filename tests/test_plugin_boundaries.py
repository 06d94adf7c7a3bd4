"""The health and observability plugins show and export what other plugins produce without
naming it: no other plugin's check figures or metric names appear in their source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Keys every check result may carry (the HealthCheck contract and the health report's own).
CONTRACT_KEYS = {"status", "error", "critical", "response_time_ms", "plugin"}
NEUTRAL = ["health", "observability"]


def _source(plugin: str) -> str:
    root = REPO / "plugins" / plugin / f"stevedores_{plugin}"
    return "\n".join(p.read_text() for p in sorted(root.rglob("*")) if p.suffix in (".py", ".html", ".js"))


@pytest.fixture
def produced(make_stevedores_app: Callable) -> dict[str, set[str]]:
    """Per plugin: the metric names it declares and the keys of its checks' results."""
    app = make_stevedores_app()
    runtime = app.extensions["stevedores"]
    names: dict[str, set[str]] = {}
    for plugin, metric in runtime.plugins.call("stevedores_metrics"):
        names.setdefault(plugin, set()).update(m.name for m in metric)
    # the core's own words (its worker decision and plugin listing) are everyone's to use
    # ("workers": the page's card of the core's worker decision)
    core = set(runtime.worker_decision().as_dict()) | set(runtime.plugins.listing()[0].as_dict()) | {"workers"}
    for plugin, check in runtime.health_checks:
        names.setdefault(plugin, set()).update(set(check.func()) - CONTRACT_KEYS - core)
    return names


@pytest.mark.parametrize("neutral", NEUTRAL)
def test_neutral_plugins_name_no_other_plugins_figures(produced: dict[str, set[str]], neutral: str) -> None:
    source = _source(neutral)
    found: list[str] = []
    for plugin, keys in produced.items():
        if plugin == neutral:
            continue
        found += [f"{plugin}:{key}" for key in sorted(keys) if re.search(rf"[\"']{re.escape(key)}[\"']", source)]
    assert found == []
    assert {"memory_guard", "redis_resilience", "security"} <= set(produced)  # the test sees real figures


def test_observability_exports_what_the_reporting_plugin_declared(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["observability", "redis_resilience"], env={"METRICS_ALLOW": "127.0.0.1"})
    telemetry = app.extensions["stevedores"].telemetry
    declared: Any = telemetry.declared("redis_breaker_state")
    assert declared.kind == "gauge" and declared.aggregation == "max"
    telemetry.gauge("redis_breaker_state", 2)
    body = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    assert f"# HELP stevedores_redis_breaker_state {declared.help}" in body
