"""Hook implementations of the observability plugin: Prometheus metrics and Sentry.

- ``stevedores_services``: subscribe a :class:`PrometheusSink` to every runtime's
  telemetry (also the gunicorn master's, which has no app; it offers no service);
- ``stevedores_startup``: ``GET /metrics`` and Sentry (when SENTRY_DSN is set);
- ``stevedores_middleware``: request counts and latency (order 900);
- ``stevedores_server_starting`` / ``stevedores_child_exit``: the multiprocess directory.
"""

from __future__ import annotations

import logging
import weakref

from flask import Flask

from stevedores import Middleware, Setting, hookimpl
from stevedores.settings import Config
from stevedores.telemetry import Telemetry

from . import multiprocess
from .endpoint import register_metrics_route
from .request_metrics import request_metrics_middleware
from .sentry import init_sentry
from .settings import SETTINGS
from .sink import PrometheusSink, mark_gunicorn_master

log = logging.getLogger("stevedores.observability")

EXTENSION = "stevedores_observability"

# The sink of each runtime's telemetry, found again at startup (weak: a runtime that is
# gone takes its sink with it; this is per-runtime state, not a plugin registry).
_sinks: weakref.WeakKeyDictionary[Telemetry, PrometheusSink] = weakref.WeakKeyDictionary()


def sink_for(telemetry: Telemetry) -> PrometheusSink:
    """The sink subscribed to ``telemetry``, subscribing one the first time."""
    sink = _sinks.get(telemetry)
    if sink is None:
        sink = _sinks[telemetry] = PrometheusSink()
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
    register_metrics_route(app, sink, runtime.plugins, config["METRICS_ALLOW"], bool(config["OPS_TOKEN"]))
    app.extensions[EXTENSION] = {"sink": sink, "sentry": sentry}


@hookimpl
def stevedores_middleware(app: Flask) -> list[Middleware]:
    """Count and time every request."""
    return [request_metrics_middleware(app.extensions[EXTENSION]["sink"])]


@hookimpl
def stevedores_server_starting(config: Config) -> None:
    """In the gunicorn master as it reads its configuration, before the app is preloaded and before
    any fork (again on a SIGHUP reload): the directory the workers share, exported to them."""
    multiprocess.server_directory(config["METRICS_MULTIPROC_DIR"])
    mark_gunicorn_master()
    for sink in list(_sinks.values()):  # sinks built in this master before now are single-process
        sink.server_starting()


@hookimpl
def stevedores_child_exit(pid: int) -> None:
    """In the gunicorn master: worker ``pid`` is gone, drop its live gauges."""
    multiprocess.worker_exited(pid)

