"""``GET /health/quick`` answered below Flask, from the snapshot.

Load balancers call it many times a second; the snapshot is already JSON, so the Flask
request machinery (routing, context, session, before/after handlers) is pure overhead.
This WSGI middleware sits innermost (order 990): ProxyFix, the security plugin's header
safety net and the metrics timer still wrap it, so the answer carries every baseline
header and is counted under its route. It steps aside, to the Flask view, for anything
else: another path or method, an operator's Authorization header (full details), a
process with no snapshot yet, or a draining instance (the view answers 503 "draining").
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable

from stevedores import Middleware, is_draining
from stevedores.routes import INFRASTRUCTURE_ENVIRON_KEY, ROUTE_ENVIRON_KEY

from .snapshot import QuickSnapshot

QUICK_PATH = "/health/quick"
ORDER = 990

WSGIApp = Callable[..., Any]


def quick_probe_middleware(snapshot: QuickSnapshot) -> Middleware:
    """The middleware serving /health/quick from ``snapshot`` without entering Flask."""

    def wrap(app: WSGIApp) -> WSGIApp:
        def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            method = environ.get("REQUEST_METHOD")
            if (environ.get("PATH_INFO") != QUICK_PATH or method not in ("GET", "HEAD")
                    or "HTTP_AUTHORIZATION" in environ or snapshot.report is None or is_draining()):
                return app(environ, start_response)
            report = snapshot.current()
            age = report.age()
            body = report.quick_json_with_age(age)
            status = HTTPStatus(report.http_status)
            environ[ROUTE_ENVIRON_KEY] = QUICK_PATH
            environ[INFRASTRUCTURE_ENVIRON_KEY] = True  # as the view is: the access log skips a 200
            start_response(f"{status.value} {status.phrase}", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"), ("Age", str(int(age))),
            ])
            return [b""] if method == "HEAD" else [body]

        return serve

    return Middleware("quick-probe", order=ORDER, wsgi=wrap)
