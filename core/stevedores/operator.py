"""Guarding operator-only routes with the OPS_TOKEN bearer token.

Each guarded route says what happens while no token is configured: it is open
(``open_without_token=True``, e.g. a read-only status page on a private network)
or it does not exist (404, e.g. an action that changes state).
"""

from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import abort, current_app, jsonify, request

F = TypeVar("F", bound=Callable[..., Any])


def _configured_token() -> str | None:
    token = current_app.extensions["stevedores"].config.get("OPS_TOKEN")
    return token.strip() if token else None  # a secret file's trailing newline is not part of it


def is_operator() -> bool:
    """True when the current request carries the configured operator token.

    Constant-time comparison; False when no token is configured.
    """
    token = _configured_token()
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def operator_only(*, open_without_token: bool) -> Callable[[F], F]:
    """Decorate a view so that only operators reach it.

    With a token configured, a request without it gets 401 and a JSON error. With
    none configured, the route is open (``open_without_token=True``) or a 404.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not _configured_token():
                if open_without_token:
                    return view(*args, **kwargs)
                abort(404)
            if not is_operator():
                response = jsonify(error="operator token required",
                                   hint="send Authorization: Bearer <OPS_TOKEN>")
                response.status_code = 401
                response.headers["WWW-Authenticate"] = 'Bearer realm="stevedores"'
                return response
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
