"""Hook implementations of the operations plugin: settings, start-up, health check, links, commands."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError

from stevedores import Bool, Choice, Csv, HealthCheck, Int, MenuLink, Setting, get_runtime, get_service, hookimpl
from stevedores.contracts import RateLimitsService
from stevedores.database import own_connection_params
from stevedores.forking import renew_in_children
from stevedores.runtime import Runtime
from stevedores.settings import RateLimit

from .changes import ChangeListener, health_figures, no_version
from .context import OperationsState, login_account_key
from .domain import DEFAULT_SHIFTS, ShiftStarts, as_utc, utcnow
from .schema_gate import SchemaGate
from .summary import SummaryCache
from .tables import tallies, vessel_calls
from .validation import register_converters
from .vessel_views import VesselViews

log = logging.getLogger("stevedores.operations")


@hookimpl
def stevedores_settings() -> list[Setting]:
    """The operations plugin's settings."""
    return [
        Setting("OPERATIONS_AUTO_MIGRATE", Bool(), True,
                "Upgrade the operations schema at start-up (off: run 'stevedores db upgrade' before deploying)."),
        Setting("OPERATIONS_STALE_TALLY_MINUTES", Int(min=1, max=1440), 30,
                "Health check 'operations' warns when an active vessel has had no tally for this many minutes."),
        Setting("OPERATIONS_SUMMARY_CACHE_SECONDS", Int(min=0, max=3600), 10,
                "Seconds the dashboard summary is cached (0: computed on every request)."),
        Setting("OPERATIONS_TALLY_RATE_LIMIT", RateLimit(), "120 per minute",
                "Rate limit of tally posts per client address (needs the rate_limits service)."),
        Setting("OPERATIONS_LOGIN_RATE_LIMIT", RateLimit(), "5 per minute; 30 per hour",
                "Failed logins allowed per client address (needs the rate_limits service)."),
        Setting("OPERATIONS_ACCOUNT_LOGIN_RATE_LIMIT", RateLimit(), "20 per hour; 100 per day",
                "Failed logins allowed per account, from any address (needs the rate_limits service; "
                "NIST SP 800-63B: at most 100 in a row)."),
        Setting("OPERATIONS_SHIFT_STARTS", ShiftStarts(), DEFAULT_SHIFTS,
                "Shift start times, UTC, comma-separated HH:MM (rates and shift labels)."),
        Setting("OPERATIONS_BERTHS", Csv(), (), "Berths always listed on the dashboard, even when free."),
        Setting("OPERATIONS_DASHBOARD_REFRESH_SECONDS", Int(min=0, max=3600), 30,
                "Seconds after which the dashboard reloads itself (a wall screen); 0: never."),
        Setting("OPERATIONS_CHANGE_NOTIFICATIONS", Choice("auto", "off"), "auto",
                "auto: with PostgreSQL, each worker LISTENs for changes (one more connection per worker) and "
                "pages skip the 'has anything changed?' query while nothing has; off: that query on every page "
                "(a pooler in transaction mode, which drops notifications)."),
    ]


def _limit(app: Flask, spec: str, scope: str, deduct_when: Callable[[Any], bool] | None = None,
           key: Callable[[], str] | None = None) -> Callable:
    """The rate_limits service's decorator (per client address, or per ``key()``), or a no-op without it."""
    limits = get_service(app, "rate_limits")
    if not isinstance(limits, RateLimitsService):
        return lambda view: view
    if key is not None:
        return limits.limit(spec, scope=scope, deduct_when=deduct_when, key=key)
    return limits.limit(spec, scope=scope, deduct_when=deduct_when)


def _failed_login(response: Any) -> bool:
    return response.status_code == 401


@hookimpl
def stevedores_startup(app: Flask, config: Any) -> None:
    """Migrate (if enabled), then register the pages, the API and the per-app state."""
    from .api import build_api
    from .manager_pages import build_manager_pages
    from .pages import build_pages

    runtime = get_runtime(app)
    gate = SchemaGate(lambda: runtime.engine, config["OPERATIONS_AUTO_MIGRATE"])
    try:
        schema = gate.check()
        if not schema.servable:
            log.error("%s; pages and API answer 503 until then", schema.problem)
    except (OperationalError, InterfaceError, TimeoutError) as exc:  # out of reach: requests check again
        log.error("operations schema not checked, the database is out of reach (%s)", type(exc).__name__)
    changes = _change_listener(runtime, config)
    version = changes.version if changes is not None else no_version
    summary = SummaryCache(lambda: runtime.engine, get_service(app, "cache"),
                           config["OPERATIONS_SUMMARY_CACHE_SECONDS"], config["OPERATIONS_SHIFT_STARTS"],
                           config["OPERATIONS_BERTHS"], version)
    app.extensions["operations"] = OperationsState(lambda: runtime.engine, summary, config["OPERATIONS_SHIFT_STARTS"],
                                                   config["OPERATIONS_STALE_TALLY_MINUTES"],
                                                   vessel_views=VesselViews(version=version), changes=changes)
    login_limits = [
        _limit(app, config["OPERATIONS_LOGIN_RATE_LIMIT"], "operations-login", deduct_when=_failed_login),
        _limit(app, config["OPERATIONS_ACCOUNT_LOGIN_RATE_LIMIT"], "operations-login-account",
               deduct_when=_failed_login, key=login_account_key),
    ]
    tally_limit = _limit(app, config["OPERATIONS_TALLY_RATE_LIMIT"], "operations-tallies")
    register_converters(app)
    app.extensions["operations_schema"] = gate
    for blueprint in (build_pages(app, login_limits), build_manager_pages(), build_api(app, tally_limit)):
        blueprint.before_request(gate.guard)  # 503 while the schema is behind (schema_gate.py)
        app.register_blueprint(blueprint)
    app.jinja_env.globals["operations_refresh_seconds"] = config["OPERATIONS_DASHBOARD_REFRESH_SECONDS"]


def _change_listener(runtime: Runtime, config: Any) -> ChangeListener | None:
    """The change listener on PostgreSQL (psycopg) unless OPERATIONS_CHANGE_NOTIFICATIONS is off; else None.

    Built here (in the gunicorn master with ``preload_app``), started per process by
    ``stevedores_worker_started``: a process that never serves (the master, a CLI command) opens no
    connection for it, and neither does the Flask test client (requests then query, as on SQLite), so
    tests that write behind the app's back keep their immediate answers.
    """
    engine = runtime.engine
    if config["OPERATIONS_CHANGE_NOTIFICATIONS"] == "off" or engine.dialect.name != "postgresql" \
            or engine.dialect.driver != "psycopg":
        return None
    listener = ChangeListener(own_connection_params(engine, config))
    renew_in_children(listener)
    return listener


@hookimpl
def stevedores_worker_started(app: Flask, worker: Any) -> None:
    """Start this process's change listener (a gunicorn worker after fork, or ``serve --dev``)."""
    changes = app.extensions["operations"].changes if "operations" in app.extensions else None
    if changes is not None:
        changes.start(worker)


@hookimpl
def stevedores_shutdown(app: Flask) -> None:
    """Stop this process's change listener and close its connection."""
    changes = app.extensions["operations"].changes if "operations" in app.extensions else None
    if changes is not None:
        changes.stop()


@hookimpl
def stevedores_menu_links() -> list[MenuLink]:
    """The dashboard and the log-in page in every page's navigation; the API on the landing page."""
    return [MenuLink("Dashboard", "/", "Vessel calls, tallies and berths.", nav=True),
            MenuLink("Log in", "/login", "Clerks, managers and operators sign in here.", nav=True),
            MenuLink("Operations API", "/api/vessel-calls", "JSON: vessel calls and tallies.")]


def freshness(engine: Any, stale_minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Minutes since the last tally on the stalest active vessel (or since its operations began)."""
    now = now or utcnow()
    last_tally = (select(tallies.c.vessel_call_id, func.max(tallies.c.tallied_at).label("last"))
                  .group_by(tallies.c.vessel_call_id).subquery())
    with engine.connect() as conn:
        rows = conn.execute(
            select(vessel_calls.c.vessel_name, vessel_calls.c.operations_active_at, last_tally.c.last)
            .outerjoin(last_tally, last_tally.c.vessel_call_id == vessel_calls.c.id)
            .where(vessel_calls.c.status == "operations_active")).all()
    if not rows:
        return {"status": "healthy", "active_vessels": 0, "minutes_since_last_tally": None,
                "warn_after_minutes": stale_minutes}
    ages = []
    for name, started, last in rows:
        since = max(filter(None, [as_utc(started), as_utc(last)]), default=now)
        ages.append((max((now - since).total_seconds() / 60, 0.0), name))
    minutes, vessel = max(ages)
    return {"status": "warning" if minutes > stale_minutes else "healthy", "active_vessels": len(rows),
            "minutes_since_last_tally": round(minutes, 1), "stalest_vessel": vessel,
            "warn_after_minutes": stale_minutes}


@hookimpl
def stevedores_health_checks(app: Flask, config: Any) -> list[HealthCheck]:
    """'operations': data freshness (non-critical); 'operations_schema': the migration gate (critical)."""
    if "operations" not in app.extensions:
        return []
    runtime = get_runtime(app)
    stale = config["OPERATIONS_STALE_TALLY_MINUTES"]
    return [HealthCheck("operations", lambda: freshness(runtime.engine, stale), critical=False, timeout=2.0,
                        description="Minutes since the last tally on an active vessel"),
            HealthCheck("operations_schema", app.extensions["operations_schema"].health, critical=True, timeout=3.0,
                        description="The operations schema is at this code's revision (else pages and API 503)",
                        public=("revision", "head", "problems")),  # what an operator needs at a glance
            HealthCheck("operations_changes", lambda: _changes_health(app), critical=False, timeout=1.0,
                        description="This worker's change listener (pages skip their freshness query while it holds)")]


def _changes_health(app: Flask) -> dict[str, Any]:
    changes = app.extensions["operations"].changes
    if changes is not None:
        return changes.health()
    return health_figures("off")


@hookimpl
def stevedores_preflight(config: Any, engine: Any) -> list[str]:
    """``stevedores check``: the schema behind this code while OPERATIONS_AUTO_MIGRATE is off."""
    if config["OPERATIONS_AUTO_MIGRATE"]:
        return []  # the first instance to start migrates it
    schema = SchemaGate(lambda: engine, auto_migrate=False).check()
    return [] if schema.servable else [schema.problem]


@hookimpl
def stevedores_register_commands(cli: Any) -> None:
    """``stevedores users create|token``, ``stevedores demo-data``, ``stevedores db upgrade|current``."""
    from .commands import register

    register(cli)


