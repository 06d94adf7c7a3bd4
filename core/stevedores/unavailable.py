"""503 Service Unavailable instead of 500 when the database is out of reach, and one retry
of an idempotent read that lost its connection.

Every view goes through here, so no view handles database faults itself:

- A request that cannot get the database within the bounded waits (see
  :func:`stevedores.database.build_engine`: connect, pool, statement and answer
  timeouts) or whose connection dropped gets ``503`` with ``Retry-After``: JSON for
  programs (``/api/...``, ``/health...``, or a client preferring JSON), a page for people.
- A plugin that knows it cannot serve yet (the operations schema behind its code)
  raises werkzeug's :class:`~werkzeug.exceptions.ServiceUnavailable` with a
  description; it is answered the same way.
- A GET or HEAD whose connection dropped mid-request (the server restarted, a
  failover, ``pg_terminate_backend``) runs its view once more: SQLAlchemy has then
  invalidated the dead connection and the pool's older ones, so the retry gets a
  fresh one. A read that timed out is not retried (a frozen database would only make
  the client wait twice as long), nor is a write (it may have been applied).
"""

from __future__ import annotations

import json
import logging
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any, Callable

from flask import Flask, Response, g, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import ServiceUnavailable

from .database import NoAnswer
from .routes import is_infrastructure

log = logging.getLogger("stevedores.unavailable")

#: Seconds a client is told to wait before trying again (``Retry-After``).
RETRY_AFTER_SECONDS = 5

#: SQLAlchemy errors meaning "the database is out of reach", never a bug in the request.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.TimeoutError, sa_exc.InterfaceError)

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_DATABASE_MESSAGE = ("The database is out of reach or did not answer in time. Nothing was changed by this "
                     "request; try again in a few seconds.")


class DashboardFlask(Flask):
    """Flask with one retry of an idempotent request whose database connection dropped, which
    records for every request whether it is an infrastructure route (gunicorn's access log
    reads that after the response: ``stevedores.access_log``)."""

    def full_dispatch_request(self) -> Any:
        """Flask's, after noting in the environ whether the route is infrastructure."""
        is_infrastructure()
        return super().full_dispatch_request()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, answered at once for a plain ``def`` function (not a coroutine function): Flask asks
        ``inspect.iscoroutinefunction`` for the view and every request handler on every request, about
        1 % of a page's CPU in-process (cProfile); anything else still goes through Flask."""
        if (type(func) is FunctionType and not func.__code__.co_flags & CO_COROUTINE
                and "_is_coroutine_marker" not in func.__dict__):  # inspect.markcoroutinefunction (3.12+)
            return func
        return super().ensure_sync(func)

    def dispatch_request(self) -> Any:
        """Run the view; on a dropped connection during a GET/HEAD, run it once more."""
        try:
            return super().dispatch_request()
        except sa_exc.DBAPIError as exc:
            if not (request.method in _IDEMPOTENT and is_dropped_connection(exc)) or g.get("_stevedores_retried"):
                raise
            g._stevedores_retried = True
            log.warning("%s %s lost its database connection (%s): retrying once on a fresh connection",
                        request.method, request.path, _cause(exc))
            return super().dispatch_request()


def is_dropped_connection(exc: BaseException) -> bool:
    """True for a connection that was lost (SQLAlchemy invalidated it), not one that timed out."""
    return (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
            and not isinstance(exc.orig, NoAnswer))


def register(app: Flask) -> None:
    """Answer database faults and ServiceUnavailable with 503 (see the module docstring)."""
    app.register_error_handler(ServiceUnavailable, _unavailable)
    for kind in DATABASE_UNAVAILABLE:
        app.register_error_handler(kind, _database_unavailable)
    app.register_error_handler(sa_exc.DBAPIError, _dbapi_error)


def _database_unavailable(exc: Exception) -> Response:
    log.warning("%s %s: database unavailable: %s", request.method, request.path, _cause(exc))
    return _unavailable(ServiceUnavailable(_DATABASE_MESSAGE))


def _dbapi_error(exc: sa_exc.DBAPIError) -> Any:
    """Other DB-API errors: a dropped connection is a 503; anything else stays a 500 (a bug)."""
    if exc.connection_invalidated:
        return _database_unavailable(exc)
    raise exc


def _unavailable(exc: ServiceUnavailable) -> Response:
    message = exc.description or _DATABASE_MESSAGE
    if _wants_json():
        response = Response(f'{{"error": "service_unavailable", "message": {json.dumps(message)}}}',
                            status=503, mimetype="application/json")
    else:
        response = Response(render_template("stevedores/unavailable.html", message=message), status=503,
                            mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_json() -> bool:
    if request.path.startswith(("/api/", "/health")) or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _cause(exc: BaseException) -> str:
    """The DB-API error's class and first line (never the SQL or its parameters)."""
    orig = getattr(exc, "orig", None) or exc
    first = next((line.strip() for line in str(orig).splitlines() if line.strip()), "")
    return f"{type(orig).__name__}: {first[:200]}"
