"""Hook implementations of the observability plugin: Prometheus metrics and Sentry.

- ``stevedores_services``: subscribe a :class:`PrometheusSink` to every runtime's
  telemetry (also the gunicorn master's, which has no app; it offers no service);
- ``stevedores_startup``: ``GET /metrics`` and Sentry (when SENTRY_DSN is set);
- ``stevedores_middleware``: request counts and latency (order 900);
- ``stevedores_server_starting`` / ``stevedores_child_exit``: the multiprocess directory.
"""

from __future__ import annotations

import logging

from flask import Flask

from stevedores import Middleware, Setting, hookimpl
from stevedores.settings import Config
from stevedores.telemetry import Telemetry

from . import multiprocess
from .endpoint import register_metrics_route
from .request_metrics import request_metrics_middleware
from .sentry import init_sentry
from .settings import SETTINGS
from .sink import PrometheusSink

log = logging.getLogger("stevedores.observability")

EXTENSION = "stevedores_observability"


def sink_for(telemetry: Telemetry) -> PrometheusSink:
    """The sink subscribed to ``telemetry`` (the runtime's own), subscribing one the first time."""
    sink = next((s for s in telemetry.sinks if isinstance(s, PrometheusSink)), None)
    if sink is None:
        sink = PrometheusSink(telemetry.declared)
        telemetry.subscribe(sink)
    return sink


@hookimpl
def stevedores_settings() -> list[Setting]:
    """METRICS_ALLOW, METRICS_MULTIPROC_DIR and the Sentry settings."""
    return list(SETTINGS)


@hookimpl(tryfirst=True)
def stevedores_services(telemetry: Telemetry) -> None:
    """Listen to the figures every plugin reports, from the start.

    ``tryfirst``: services report as they are built (the breaker's initial state), so the
    sink must be subscribed before any other plugin's services exist.
    """
    sink_for(telemetry)


@hookimpl
def stevedores_startup(app: Flask, config: Config) -> None:
    """Publish /metrics and start Sentry when configured."""
    runtime = app.extensions["stevedores"]
    sentry = init_sentry(config)  # first: if it raises, the plugin fails before adding anything
    sink = sink_for(runtime.telemetry)
    register_metrics_route(app, sink, runtime.plugins, config["METRICS_ALLOW"], bool(config["OPS_TOKEN"]),
                           development=config.profile == "development")
    app.extensions[EXTENSION] = {"sink": sink, "sentry": sentry}


@hookimpl
def stevedores_middleware(app: Flask) -> list[Middleware]:
    """Count and time every request."""
    return [request_metrics_middleware(app.extensions[EXTENSION]["sink"])]


@hookimpl
def stevedores_server_starting(config: Config, telemetry: Telemetry) -> None:
    """In the gunicorn master as it reads its configuration, before the app is preloaded and before
    any fork (again on a SIGHUP reload): the directory the workers share, exported to them."""
    multiprocess.server_directory(config["METRICS_MULTIPROC_DIR"])
    sink_for(telemetry).server_starting()  # the master's sink was single-process until now


@hookimpl
def stevedores_child_exit(pid: int) -> None:
    """In the gunicorn master: worker ``pid`` is gone, drop its live gauges."""
    multiprocess.worker_exited(pid)

