"""Request metrics: one middleware (order 900, the measurement band), composed once by the core.

Its WSGI wrapper stamps the start time in the environ, before Flask routes the request
and before any other middleware's ``before_request`` runs (a request refused at order
300 by a rate limit is still timed). Its ``after_request`` counts the response by route
*pattern* (``/vessels/<int:id>``, never the raw path: label values stay few), method and
status, and observes the latency by route. Requests that match no route are counted
under ``<unmatched>``; unusual methods under ``OTHER``. A response made below Flask by
another plugin's WSGI middleware (no ``after_request`` runs) is counted by the wrapper
itself, under the route that middleware names in ``ROUTE_ENVIRON_KEY``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from flask import request

from stevedores import Middleware
from stevedores.routes import ROUTE_ENVIRON_KEY

from .sink import PrometheusSink

log = logging.getLogger("stevedores.observability")

START_KEY = "stevedores.observability.start"
RECORDED_KEY = "stevedores.observability.recorded"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ORDER = 900


def request_metrics_middleware(sink: PrometheusSink) -> Middleware:
    """The middleware that records every request into ``sink``."""
    failed = False

    def stamp(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
        def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ[START_KEY] = started = time.perf_counter()
            statuses: list[str] = []

            def start(status: str, headers: Any, exc_info: Any = None) -> Any:
                statuses.append(status)
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            result = wsgi_app(environ, start)
            if statuses and RECORDED_KEY not in environ:  # answered below Flask: no after_request ran
                below_flask(environ, statuses[-1], started)
            return result

        return timed

    def below_flask(environ: dict[str, Any], status: str, started: float) -> None:
        nonlocal failed
        try:
            method = environ.get("REQUEST_METHOD", "")
            sink.record_request(environ.get(ROUTE_ENVIRON_KEY, UNMATCHED), method if method in METHODS else "OTHER",
                                status.split(" ", 1)[0], time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - measuring must never break a response
            if not failed:
                failed = True
                log.exception("Recording request metrics failed (logged once)")

    def record(response: Any) -> Any:
        nonlocal failed
        try:
            current = request._get_current_object()  # type: ignore[attr-defined] - one proxy lookup, not four
            current.environ[RECORDED_KEY] = True
            started = current.environ.get(START_KEY)
            rule = current.url_rule
            method = current.method if current.method in METHODS else "OTHER"
            sink.record_request(rule.rule if rule is not None else UNMATCHED, method, str(response.status_code),
                                time.perf_counter() - started if started is not None else None)
        except Exception:  # noqa: BLE001 - measuring must never break a response
            if not failed:
                failed = True
                log.exception("Recording request metrics failed (logged once)")
        return response

    return Middleware("request-metrics", order=ORDER, wsgi=stamp, after_request=record)
