"""Marking infrastructure endpoints: routes called by load balancers, probes and scrapers.

Such routes are never rate limited, never redirected to HTTPS and never need a
session. Plugins that limit or redirect (security) ask :func:`is_infrastructure`
about the endpoint being served; nobody imports anybody.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from flask import current_app, request

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "_stevedores_infrastructure"
#: The answer for the current request (asked many times); gunicorn's access log reads it after the
#: response (stevedores.access_log). WSGI middleware answering an infrastructure route itself sets it.
INFRASTRUCTURE_ENVIRON_KEY = "stevedores.infrastructure"

#: WSGI middleware that answers a request itself, below Flask, puts the route pattern it
#: served here, so that measuring middleware can still label the request.
ROUTE_ENVIRON_KEY = "stevedores.route"


def infrastructure(view: F) -> F:
    """Decorate a view (put it under the route decorator) as an infrastructure endpoint."""
    setattr(view, _MARK, True)
    return view


def is_infrastructure(endpoint: str | None = None) -> bool:
    """True when ``endpoint`` (default: the current request's) is an infrastructure endpoint."""
    if endpoint is not None:
        return _marked(endpoint)
    environ = request._get_current_object().environ  # type: ignore[attr-defined] - one proxy lookup, not two
    answer = environ.get(INFRASTRUCTURE_ENVIRON_KEY)
    if answer is None:
        answer = environ[INFRASTRUCTURE_ENVIRON_KEY] = _marked(request.endpoint)
    return answer


def _marked(endpoint: str | None) -> bool:
    view = current_app.view_functions.get(endpoint or "")
    return bool(view is not None and getattr(view, _MARK, False))
