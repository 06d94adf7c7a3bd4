"""Hook implementations of the health plugin.

Everything is wired once: the blueprint at start-up, the three checks through the same
hook third parties use, the snapshot refresher after fork. Requests never call a hook.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from stevedores import HealthCheck, MenuLink, Middleware, Setting, get_runtime, hookimpl
from stevedores.contracts import ResourcesService
from stevedores.telemetry import Metric

from .checks import application_check, database_check, host_cpus, system_check, writable_location
from .fast_probe import quick_probe_middleware
from .settings import SETTINGS
from .state import EXTENSION, HealthSettings, HealthState
from .views import create_blueprint


@hookimpl
def stevedores_settings() -> list[Setting]:
    """HEALTH_* settings (see the README)."""
    return list(SETTINGS)


@hookimpl
def stevedores_metrics() -> list[Metric]:
    """The latest result and the duration of each check."""
    return [Metric("health_check_status", "gauge", "Latest result of each health check: 1 pass, 0 fail."),
            Metric("health_check_duration_seconds", "histogram", "Duration of each health check run.")]


@hookimpl
def stevedores_startup(app: Flask, config: Any) -> None:
    """Register the routes and the per-app state."""
    app.extensions[EXTENSION] = HealthState(app, get_runtime(app), HealthSettings.from_config(config))
    app.register_blueprint(create_blueprint())


@hookimpl
def stevedores_middleware(app: Flask) -> list[Middleware]:
    """/health/quick served below Flask from the snapshot (see fast_probe.py)."""
    state: HealthState = app.extensions[EXTENSION]
    return [quick_probe_middleware(state.snapshot)]


@hookimpl
def stevedores_health_checks(app: Flask, config: Any) -> list[HealthCheck]:
    """database (critical), application and system."""
    runtime = get_runtime(app)
    settings = HealthSettings.from_config(config)
    resources = runtime.service("resources")
    return [
        database_check(runtime, settings.database_timeout),
        application_check(app, runtime),
        system_check(writable_location(runtime), settings.disk_min_free_percent, settings.load_warn_per_cpu,
                     resources.cpus if isinstance(resources, ResourcesService) else host_cpus),
    ]


@hookimpl
def stevedores_menu_links() -> list[MenuLink]:
    """The status page and the probes on the landing page."""
    return [
        MenuLink("Status", "/status", "Every health check, the Redis breaker, memory, workers and plugins.",
                 nav=True),
        MenuLink("Health", "/health", "Comprehensive health (JSON; 503 when a critical check fails)."),
        MenuLink("Liveness probe", "/health/live", "The process answers (no dependency checked)."),
    ]


@hookimpl
def stevedores_worker_started(app: Flask) -> None:
    """After fork: keep /health/quick's snapshot fresh from a thread of this worker."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.start()


@hookimpl
def stevedores_worker_exit(app: Flask) -> None:
    """Stop this worker's refresher."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.stop()


@hookimpl
def stevedores_shutdown(app: Flask) -> None:
    """Stop threads and release the check pool."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.shutdown()
