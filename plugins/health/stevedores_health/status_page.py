"""What the operators' status page shows, as one JSON-ready mapping (rendered by the
template on load, then by static/status.js on every refresh, with the same formatting).

The cards beside the checks are drawn by the plugins that own the checks
(``HealthCheck.panel``): this page names no other plugin's figures.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from typing import Any, Mapping

from stevedores import StatusPanel, __version__

from .redact import scrub
from .report import Report
from .state import HealthState

log = logging.getLogger("stevedores.health")


def status_data(state: HealthState, report: Report, *, operator: bool) -> dict[str, Any]:
    """Checks, the checks' panels, workers and plugins, for the page and /status.json."""
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
        "panels": panels(runtime.health_checks, health["checks"]),
        "workers": state.runtime.worker_decision().as_dict(),  # taken once at start-up by the core
        "plugins": plugins,
        "profile": runtime.config.profile,
        "core_version": __version__,
        "pid": os.getpid(),
        "refresh_seconds": state.settings.status_refresh,
    }


def panels(checks: list[tuple[str, Any]], results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each check's own card (``HealthCheck.panel`` of its shown result), with the check's name and status."""
    drawn = []
    for plugin, check in checks:
        result = results.get(check.name)
        if check.panel is None or not result:
            continue
        try:
            panel = check.panel(result)
        except Exception as exc:  # noqa: BLE001 - a plugin's drawing code never breaks the page
            log.warning("Status panel of check %s (plugin %s) failed: %s: %s", check.name, plugin,
                        type(exc).__name__, exc)
            continue
        if isinstance(panel, StatusPanel):
            drawn.append({"check": check.name, "status": result.get("status"), **asdict(panel)})
    return drawn


def shown(value: Any) -> str:
    """A figure as the page shows it, the same as static/status.js's ``show``: JSON for
    lists and mappings (compact, as JSON.stringify), ``true``/``false``, nothing for None,
    whole floats without ``.0`` (as JavaScript prints numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(_as_javascript_numbers(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return str(_as_javascript_numbers(value))


def _as_javascript_numbers(value: Any) -> Any:
    """Whole floats as ints, in nested lists and mappings too (JavaScript prints 20.0 as 20)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _as_javascript_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_javascript_numbers(v) for v in value]
    return value
