"""The app factory."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from flask import Flask, render_template
from flask.sessions import SecureCookieSessionInterface

from . import operator
from .body_limit import BodyLimit
from .logs import configure_logging
from .proxies import ForwardedHeaders
from .routes import is_infrastructure
from .runtime import Runtime
from .unavailable import DashboardFlask
from .unavailable import register as register_unavailable
from .version import __version__


def create_app(environ: Mapping[str, str] | None = None, *, load_entry_points: bool = True,
               extra_plugins: Iterable[tuple[str, object]] = (), runtime: Runtime | None = None) -> Flask:
    """Build the dashboard: load plugins, validate settings, run the start-up hooks.

    ``environ`` defaults to ``os.environ``. ``extra_plugins`` are ``(name, object)``
    pairs registered beside the entry points (tests, embedded plugins). Raises
    :class:`stevedores.settings.ConfigError` listing every bad setting.
    """
    runtime = runtime or Runtime.load(environ, load_entry_points=load_entry_points, extra_plugins=extra_plugins)
    config = runtime.config
    configure_logging(config)
    app = DashboardFlask("stevedores")  # one retry of a read whose database connection dropped
    app.config.update(
        SECRET_KEY=config["SECRET_KEY"],
        STEVEDORES_PROFILE=config.profile,
        TESTING=config.profile == "testing",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.is_production,
        PREFERRED_URL_SCHEME="https" if config.is_production else "http",
        MAX_CONTENT_LENGTH=config["MAX_CONTENT_LENGTH"],  # bounds form and JSON parsing too
    )
    app.session_interface = CachedSerializerSessions()
    app.extensions["stevedores"] = runtime
    register_unavailable(app)
    runtime.attach(app)
    operator.install(app)  # after the plugins' startup: it counts through their rate_limits service
    # Just outside Flask, inside the plugins' WSGI layers (their headers and metrics cover the 413).
    app.wsgi_app = BodyLimit(app.wsgi_app, config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    _compose_middleware(app, runtime)
    app.context_processor(lambda: {"stevedores_nav": [(p, link) for p, link in runtime.menu_links if link.nav]})
    if not any(rule.rule == "/" for rule in app.url_map.iter_rules()):
        app.add_url_rule("/", "stevedores_landing", _landing)
    # Outermost: everything below sees the client address and scheme as the trusted proxy gave them.
    app.wsgi_app = ForwardedHeaders(app.wsgi_app, config["FORWARDED_ALLOW_IPS"],  # type: ignore[method-assign]
                                    config["TRUSTED_PROXIES"])
    return app


class CachedSerializerSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, with the signing serializer built once instead of per request, no
    cookie parsing for a request that sends no cookie (Flask's answer then: a new empty session;
    parsing the absent header cost ~5 % of an anonymous page's CPU in-process, cProfile), and no
    cookie settings looked up when there is no cookie to write."""

    def __init__(self) -> None:
        self._serializer: tuple[object, object] | None = None

    def open_session(self, app: Flask, request: Any) -> Any:
        """Flask's, short-cut for a request without a Cookie header."""
        if "HTTP_COOKIE" not in request.environ and self.get_signing_serializer(app) is not None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        """Flask's; for an empty session nobody changed, only its ``Vary: Cookie`` (when the session was
        read), without the seven cookie-setting lookups Flask makes first (~5 % of an anonymous page's
        CPU in-process, cProfile) that only a cookie to write or delete needs."""
        if not session and not session.modified:
            if session.accessed:  # werkzeug's ``vary`` parses and rewrites the header: only when there is one
                if "Vary" in response.headers:
                    response.vary.add("Cookie")
                else:
                    response.headers["Vary"] = "Cookie"
            return
        super().save_session(app, session, response)

    def get_signing_serializer(self, app: Flask):  # noqa: ANN201 - as in Flask
        """The serializer for the app's current secret key(s), cached while they do not change."""
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._serializer
        if cached is None or cached[0] != key:
            cached = self._serializer = (key, super().get_signing_serializer(app))
        return cached[1]


def _compose_middleware(app: Flask, runtime: Runtime) -> None:
    """Apply the sorted middleware once: lowest order outermost.

    All before_request handlers run in order inside one Flask handler (the first that
    answers ends the request); all after_request handlers run in reverse order inside
    another, so lower orders wrap higher ones. One Flask handler each instead of one
    per plugin keeps Flask's per-handler work off the request path. For an infrastructure
    route only the handlers of middleware with ``infrastructure=True`` run (asked once).
    """
    ordered = [mw for _plugin, mw in runtime.middleware]
    befores = tuple(mw.before_request for mw in ordered if mw.before_request)
    afters = tuple(mw.after_request for mw in reversed(ordered) if mw.after_request)
    infra_befores = tuple(mw.before_request for mw in ordered if mw.before_request and mw.infrastructure)
    infra_afters = tuple(mw.after_request for mw in reversed(ordered) if mw.after_request and mw.infrastructure)
    if befores:
        def before_request() -> Any:
            for handler in infra_befores if is_infrastructure() else befores:
                answer = handler()
                if answer is not None:
                    return answer
            return None

        app.before_request(before_request)
    if afters:
        def after_request(response: Any) -> Any:
            for handler in infra_afters if is_infrastructure() else afters:
                response = handler(response)
            return response

        app.after_request(after_request)
    for mw in reversed(ordered):
        if mw.wsgi:
            app.wsgi_app = mw.wsgi(app.wsgi_app)  # type: ignore[method-assign]


def _landing() -> str:
    from flask import current_app

    runtime: Runtime = current_app.extensions["stevedores"]
    return render_template("stevedores/landing.html", links=[link for _p, link in runtime.menu_links],
                           plugins=runtime.plugins.listing(), version=__version__)
