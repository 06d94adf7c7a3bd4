"""Request metrics: one middleware (order 900, the measurement band), composed once by the core.

Its WSGI wrapper stamps the start time in the environ, before Flask routes the request
and before any other middleware's ``before_request`` runs (a request refused at order
300 by a rate limit is still timed). Its ``after_request`` counts the response by route
*pattern* (``/vessels/<int:id>``, never the raw path: label values stay few), method and
status, and observes the latency by route. Requests that match no route are counted
under ``<unmatched>``; unusual methods under ``OTHER``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from flask import request

from stevedores import Middleware

from .sink import PrometheusSink

log = logging.getLogger("stevedores.observability")

START_KEY = "stevedores.observability.start"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ORDER = 900


def request_metrics_middleware(sink: PrometheusSink) -> Middleware:
    """The middleware that records every request into ``sink``."""
    failed = False

    def stamp(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
        def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ[START_KEY] = time.perf_counter()
            return wsgi_app(environ, start_response)

        return timed

    def record(response: Any) -> Any:
        nonlocal failed
        try:
            current = request._get_current_object()  # type: ignore[attr-defined] - one proxy lookup, not four
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
