"""Hook implementations of the security plugin: Talisman headers and CSP, HTTPS in
production, and rate limits that keep counting when Redis is down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from stevedores import HealthCheck, Middleware, Setting, get_service, hookimpl
from stevedores.settings import Config
from stevedores.telemetry import Metric

from . import csp
from .counting import ResilientCounter
from .headers import (
    HeaderSafetyNet,
    Transport,
    adopt_request_handlers,
    adopted_middleware,
    init_talisman,
)
from .health import RateLimiterCheck, SecurityCheck
from .instance_windows import instance_windows_from_environment, server_directory
from .limiting import RateLimits
from .settings import SETTINGS
from .talisman_headers import TalismanHeaders

EXTENSION = "stevedores_security"


@dataclass
class SecurityState:
    """What startup built, for the middleware and health-check hooks."""

    policy: dict[str, str]
    production: bool
    talisman_headers: TalismanHeaders
    limiter_handlers: tuple[list[Any], list[Any]]
    rate_limits: RateLimits
    counter: ResilientCounter
    transport: Transport
    safety_net: HeaderSafetyNet


def report_storage(telemetry: Any, in_use: str) -> None:
    """Gauge ``rate_limit_storage{storage}``: 1 for the storage in use, 0 for the other."""
    for storage in ("redis", "memory"):
        telemetry.gauge("rate_limit_storage", 1 if storage == in_use else 0, storage=storage)


@hookimpl
def stevedores_metrics() -> list[Metric]:
    """Refusals and the rate-limit storage in use."""
    return [Metric("rate_limit_refusals_total", "counter", "Requests refused by a rate limit (HTTP 429)."),
            Metric("rate_limit_storage", "gauge", "Rate-limit storage in use: 1 for the storage any live worker uses.",
                   "max")]


@hookimpl
def stevedores_settings() -> list[Setting]:
    """RATE_LIMITS, RATE_LIMIT_INSTANCES, CSP_POLICY and SECURITY_EXEMPT_PATHS."""
    return list(SETTINGS)


@hookimpl
def stevedores_server_starting(config: Config) -> None:
    """In the gunicorn master, before it forks: the directory of the instance's fallback counters."""
    server_directory()


@hookimpl
def stevedores_services(config: Config, telemetry: Any) -> dict[str, Any]:
    """The ``rate_limits`` service; it binds to the app in startup."""
    return {"rate_limits": RateLimits(config["RATE_LIMITS"], telemetry, config["SECURITY_EXEMPT_PATHS"])}


@hookimpl
def stevedores_startup(app: Flask, config: Config) -> None:
    """Initialise Talisman and the limiter; their request handlers are composed as middleware."""
    runtime = app.extensions["stevedores"]
    rate_limits: RateLimits | None = runtime.service("rate_limits")
    if rate_limits is None:  # not offered (e.g. dropped): limit anyway
        rate_limits = RateLimits(config["RATE_LIMITS"], runtime.telemetry, config["SECURITY_EXEMPT_PATHS"])
    policy = config["CSP_POLICY"] or csp.validate_policy(csp.DEFAULT_POLICY)
    production = config.is_production
    telemetry = runtime.telemetry

    counter = ResilientCounter(get_service(app, "redis"), config["RATE_LIMIT_INSTANCES"],
                               lambda storage, _reason: report_storage(telemetry, storage),
                               fallback=instance_windows_from_environment())
    report_storage(telemetry, counter.storage_in_use)
    made: list[Any] = []
    talisman_handlers = adopt_request_handlers(app, lambda a: made.append(init_talisman(a, policy, production)))
    talisman_headers = TalismanHeaders(app, made[0], talisman_handlers)
    app.extensions[EXTENSION] = SecurityState(
        policy=policy,
        production=production,
        talisman_headers=talisman_headers,
        limiter_handlers=adopt_request_handlers(app, lambda a: rate_limits.bind(a, counter)),
        rate_limits=rate_limits,
        counter=counter,
        transport=Transport(production, config["SECURITY_EXEMPT_PATHS"], config.get("CANONICAL_HOST")),
        safety_net=HeaderSafetyNet(policy, production, talisman_headers),
    )


@hookimpl
def stevedores_middleware(app: Flask) -> list[Middleware]:
    """HTTPS (50), header safety net (60, which also writes HSTS and Talisman's headers), Talisman's
    nonce (100), RateLimit headers and app-wide limits (299), the views' own limits (300+), and the
    verdict of an app-wide count read after the view (999: the first after_request).

    The limiter's own handlers are handed to the core one by one, in their registration order;
    Talisman's run through :class:`TalismanHeaders` (rendered once, Talisman's own handlers for a
    view with options of its own). Infrastructure routes skip them entirely (``infrastructure=False``:
    the core asks once per request): the safety net gives them the precomputed baseline headers.
    """
    state: SecurityState = app.extensions[EXTENSION]
    return [
        Middleware("https", order=50, before_request=state.transport.redirect_to_https),
        Middleware("header-safety-net", order=60, wsgi=state.safety_net.wrap),
        Middleware("talisman", order=100, before_request=state.talisman_headers.before_request,
                   after_request=state.talisman_headers.after_request, infrastructure=False),
        # Outside the limiter's own handlers: its after_request runs once theirs are done.
        Middleware("rate-limit-headers", order=299, after_request=state.rate_limits.add_headers, infrastructure=False),
        Middleware("app-rate-limits", order=299, before_request=state.rate_limits.check_app_limits,
                   infrastructure=False),
        # The verdict of an app-wide count read after the view (a safe request's): the first after_request
        # to run, so that every other one (measurement at 900 included) sees the 429 that replaces the page.
        Middleware("app-rate-limits-verdict", order=999, after_request=state.rate_limits.settle_app_limits,
                   infrastructure=False),
        # flask-limiter's before_request is left out: with no application or default limits of its
        # own it finds nothing to check, for any view; a view's limits are checked by its decorator.
        *adopted_middleware("rate-limits", 300, (
            [], [state.rate_limits.only_for_limited_views(h) for h in state.limiter_handlers[1]])),
    ]


@hookimpl
def stevedores_worker_started(app: Flask) -> None:
    """Report the storage in use from each worker (a metrics sink may have subscribed after startup)."""
    state: SecurityState | None = app.extensions.get(EXTENSION)
    if state is not None:
        report_storage(app.extensions["stevedores"].telemetry, state.counter.storage_in_use)


@hookimpl
def stevedores_health_checks(app: Flask) -> list[HealthCheck]:
    """"security" (critical only when a header is actually missing) and "rate_limiter"."""
    state: SecurityState = app.extensions[EXTENSION]
    return [
        HealthCheck("security", SecurityCheck(app, state.policy, state.production), critical=True, timeout=2.0,
                    description="Talisman initialised, CSP enabled, security headers present on a real response",
                    public=("talisman_initialized", "csp_enabled")),
        HealthCheck("rate_limiter", RateLimiterCheck(state.counter, state.rate_limits.app_limits, state.rate_limits),
                    critical=False, timeout=1.0, public=("storage",),
                    description="Rate-limit storage in use (redis or memory) and why"),
    ]
