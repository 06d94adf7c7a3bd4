"""The hook specifications: the whole contract between the core and its plugins.

Every hook runs at start-up or at a process lifecycle event, never per request.
Hooks are called through pluggy's own hook caller, so ``tryfirst``/``trylast``,
``wrapper=True`` and old-style ``hookwrapper=True`` implementations work as pluggy
documents. An implementation that raises marks its own plugin failed (fatal with
STEVEDORES_STRICT_PLUGINS=1) and answers None; the others still run.
Implementations may accept any subset of the documented arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Flask
    from sqlalchemy.engine import Engine

    from .contracts import HealthCheck, MenuLink, Middleware, WorkerProposal
    from .settings import Config, Problem, Setting
    from .telemetry import Metric, Telemetry

hookspec = pluggy.HookspecMarker("stevedores")


@hookspec
def stevedores_settings() -> list[Setting] | None:
    """Declare the environment variables this plugin reads.

    Called once, right after the plugins are loaded and before any other hook.
    Return a list of :class:`stevedores.settings.Setting` (name, parser, default,
    help, secret). The core validates them all together with its own and reports
    every bad value at once; the typed values reach the other hooks as ``config``.
    """


@hookspec
def stevedores_check_config(config: Config) -> list[Problem] | None:
    """Check rules that span several settings, once every value has parsed.

    Called right after the settings are validated one by one, before anything else.
    Return a list of :class:`stevedores.settings.Problem` (``Problem(name, message)``
    naming the setting at fault); every plugin's problems are reported together as a
    :class:`stevedores.settings.ConfigError`, so start-up stops before anything runs.
    """


@hookspec
def stevedores_metrics() -> list[Metric] | None:
    """Declare the figures this plugin reports through the telemetry.

    Called once, before ``stevedores_services``. Return a list of
    :class:`stevedores.telemetry.Metric` (name, kind, help, gauge aggregation, buckets);
    a metrics plugin reads them with ``telemetry.declared(name)``.
    """


@hookspec
def stevedores_services(config: Config, telemetry: Telemetry) -> Mapping[str, Any] | None:
    """Offer services to other plugins, by name, without them importing you.

    Called once after the settings are validated, before the app exists, with the
    runtime's :class:`stevedores.telemetry.Telemetry` for services that report
    figures (breaker transitions, fallback hits). Return a
    mapping ``name -> object``; consumers look it up with
    ``stevedores.get_service(app, name)`` (or ``runtime.service(name)``) and must work when it
    is absent. Well-known names: ``"redis"`` (the resilient Redis client) and
    ``"cache"`` (get/set/delete/incr that survives Redis outages).
    A name offered twice fails the second plugin that offers it.
    """


@hookspec
def stevedores_startup(app: Flask, config: Config) -> None:
    """The app has been created: register blueprints, extensions, routes, commands' state.

    Called once per app, after settings and services, before middleware and health
    checks are collected. ``app.extensions["stevedores"]`` is the runtime (plugins,
    config, services). Return nothing.
    """


@hookspec
def stevedores_middleware(app: Flask, config: Config) -> list[Middleware] | None:
    """Contribute request handling, composed once, in a deterministic order.

    Called once per app after startup. Return a list of
    :class:`stevedores.contracts.Middleware`. They are sorted by ``order`` (lower is
    outermost), then plugin name, then middleware name; see docs/plugins.md.
    """


@hookspec
def stevedores_health_checks(app: Flask, config: Config) -> list[HealthCheck] | None:
    """Contribute health checks (the health plugin runs them; others may list them).

    Called once per app after startup. Return a list of
    :class:`stevedores.contracts.HealthCheck` (name, func, critical, timeout). Check
    names are unique across plugins; a duplicate fails the plugin that repeats it.
    """


@hookspec
def stevedores_worker_limits(config: Config) -> WorkerProposal | list[WorkerProposal] | None:
    """Propose an upper bound on the number of gunicorn workers, with a reason.

    Called by gunicorn.conf.py in the master and by ``stevedores workers``. The core
    takes the requested count (WEB_WORKERS, then WEB_CONCURRENCY; 2 when neither is
    set and no plugin proposes anything) and the final count is the smallest of the
    request and every proposal, at least 1. The decision names who decided.
    """


@hookspec
def stevedores_menu_links(app: Flask, config: Config) -> list[MenuLink] | None:
    """Offer links for the landing page (``/``), e.g. a status page. Called once per app."""


@hookspec
def stevedores_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``stevedores`` CLI (``cli.command()`` / ``cli.add_command``).

    Called when the CLI starts, before the configuration is read: commands that need
    the app build it themselves with ``stevedores.create_app()``.
    """


@hookspec
def stevedores_preflight(config: Config, engine: Engine) -> list[str] | None:
    """Report what would stop this plugin serving the configured database (``stevedores check``).

    Called by ``stevedores check`` (a deploy pipeline's pre-flight) once the database
    answered, with a read-only SQLAlchemy ``engine`` on DATABASE_URL (an empty in-memory
    database when the SQLite file does not exist yet). Return a list of problems, each a
    sentence naming what is wrong and what to do (e.g. the schema revision behind the
    code's, and the command that migrates it); any problem makes the check exit 1.
    Must not write.
    """


@hookspec
def stevedores_server_starting(config: Config, telemetry: Telemetry) -> None:
    """The gunicorn master is starting: called when it reads its configuration, before
    the app is preloaded and before any fork (also again on a SIGHUP reload).
    ``telemetry`` is the runtime's, the same the services and (through the one runtime
    the master and its app share) the app report to.

    Use it to prepare state shared by all workers (e.g. set and clean a metrics
    directory in ``os.environ`` so that the preloaded app and the workers see it).
    """


@hookspec
def stevedores_worker_started(app: Flask, worker: Any) -> None:
    """A process is ready to serve: start per-process threads and connections here.

    Called in each gunicorn worker after fork and app load (``post_worker_init``;
    ``worker`` is gunicorn's worker object), and once by ``stevedores serve --dev``
    with ``worker=None``. Threads started before fork do not survive into workers,
    so monitors start here, never at import or startup.
    """


@hookspec
def stevedores_worker_exit(app: Flask, worker: Any) -> None:
    """This worker process is exiting (gunicorn's ``worker_exit``): stop threads, flush.

    Called in the worker itself, after its last request, before
    :func:`stevedores_shutdown`.
    """


@hookspec
def stevedores_child_exit(config: Config, pid: int) -> None:
    """A worker process ``pid`` has exited; called in the gunicorn master (``child_exit``)."""


@hookspec
def stevedores_shutdown(app: Flask) -> None:
    """The app is being shut down in this process: release what startup acquired.

    Called once per app per process (gunicorn worker exit, dev server exit, or
    ``Runtime.shutdown`` in tests). Must not raise; must be quick.
    """
