"""Guarding operator-only routes with the OPS_TOKEN bearer token.

Each guarded route says what happens while no token is configured: it is open
(``open_without_token=True``, e.g. a read-only status page on a private network)
or it does not exist (404, e.g. an action that changes state).

Guessing is throttled: after ``OPS_TOKEN_FAILURES_PER_MINUTE`` wrong tokens from one
client address within a minute, every token from that address (even the right one) is
refused until the minute is over; guarded routes answer 429. The failures are counted
through the ``rate_limits`` service when a plugin offers it (shared by the workers, in
Redis when it is configured), else in this process's memory. In production a token sent
over plain HTTP (``request.is_secure`` false, see FORWARDED_ALLOW_IPS) is refused: a
token that crossed a network in clear text must not work.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import Flask, Response, abort, current_app, g, jsonify, request

from .contracts import RateLimitsService

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION = "stevedores_operator"
#: The ``rate_limits`` scope under which failed operator tokens are counted.
FAILURE_SCOPE = "operator-token-failures"
WINDOW_SECONDS = 60
OPERATOR, ABSENT, WRONG, THROTTLED, INSECURE = "operator", "absent", "wrong", "throttled", "insecure"


class FailureCounter:
    """Failed attempts per client address in fixed one-minute windows, in this process's memory.

    Bounded: at most ``max_clients`` addresses are remembered (the oldest window is dropped
    first), so a flood of addresses cannot grow the worker.
    """

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.per_minute, self.max_clients = per_minute, max_clients
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, client: str, now: float) -> tuple[float, int]:
        started, count = self._windows.get(client, (now, 0))
        return (now, 0) if now - started >= WINDOW_SECONDS else (started, count)

    def allows(self, client: str) -> bool:
        """True while ``client`` has fewer than ``per_minute`` failures in its current window."""
        with self._lock:
            return self._current(client, time.monotonic())[1] < self.per_minute

    def fail(self, client: str) -> None:
        """Count one failure of ``client``."""
        now = time.monotonic()
        with self._lock:
            started, count = self._current(client, now)
            self._windows[client] = (started, count + 1)
            self._windows.move_to_end(client)
            while len(self._windows) > self.max_clients:
                self._windows.popitem(last=False)


class ServiceCounter:
    """The same two questions asked of the ``rate_limits`` service (``allows``/``hit``, docs/plugins.md)."""

    def __init__(self, per_minute: int, rate_limits: RateLimitsService) -> None:
        self.spec, self.rate_limits = f"{per_minute} per minute", rate_limits

    def allows(self, client: str) -> bool:
        """True while ``client`` is within the limit (counts nothing)."""
        return self.rate_limits.allows(self.spec, FAILURE_SCOPE, client)

    def fail(self, client: str) -> None:
        """Count one failure of ``client``."""
        self.rate_limits.hit(self.spec, FAILURE_SCOPE, client)


def install(app: Flask) -> None:
    """Give ``app`` its failure counter (after the plugins' startup: the service may be offered)."""
    runtime = app.extensions["stevedores"]
    per_minute = runtime.config["OPS_TOKEN_FAILURES_PER_MINUTE"]
    rate_limits = runtime.service("rate_limits")
    usable = isinstance(rate_limits, RateLimitsService)
    app.extensions[EXTENSION] = ServiceCounter(per_minute, rate_limits) if usable else FailureCounter(per_minute)


def _configured_token() -> str | None:
    token = current_app.extensions["stevedores"].config.get("OPS_TOKEN")
    return token.strip() if token else None  # a secret file's trailing newline is not part of it


def operator_verdict() -> str:
    """What the current request's Authorization header is worth, decided once per request.

    ``operator`` (the configured token), ``absent`` (no token configured or none sent),
    ``wrong`` (counted as a failure), ``throttled`` (too many failures from this address
    this minute) or ``insecure`` (the right token over plain HTTP in production).
    """
    cached = g.get("_stevedores_operator")
    if cached is not None:
        return cached
    verdict = _decide()
    g._stevedores_operator = verdict
    return verdict


def _decide() -> str:
    token = _configured_token()
    if not token:
        return ABSENT
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return ABSENT
    counter = current_app.extensions.get(EXTENSION)
    client = request.remote_addr or "unknown"
    if counter is not None and not counter.allows(client):
        return THROTTLED
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        if counter is not None:
            counter.fail(client)
        return WRONG
    if current_app.extensions["stevedores"].config.is_production and not request.is_secure:
        return INSECURE
    return OPERATOR


def is_operator() -> bool:
    """True when the current request carries the configured operator token (see :func:`operator_verdict`).

    Constant-time comparison; False when no token is configured, when the client is
    throttled, and over plain HTTP in production.
    """
    return operator_verdict() == OPERATOR


def operator_only(*, open_without_token: bool) -> Callable[[F], F]:
    """Decorate a view so that only operators reach it.

    With a token configured: no or a wrong token gets 401 and a JSON error; too many wrong
    ones from the address, 429 with Retry-After; the right one over plain HTTP in
    production, 403. With none configured, the route is open (``open_without_token=True``)
    or a 404.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not _configured_token():
                if open_without_token:
                    return view(*args, **kwargs)
                abort(404)
            if operator_verdict() == OPERATOR:
                return view(*args, **kwargs)
            return operator_refusal()

        return guarded  # type: ignore[return-value]

    return decorate


def operator_refusal() -> Response:
    """The JSON answer for a request that is not an operator's, by :func:`operator_verdict`:
    429 with Retry-After (throttled), 403 (the token over plain HTTP in production), else 401
    with ``WWW-Authenticate: Bearer``."""
    verdict = operator_verdict()
    if verdict == THROTTLED:
        per_minute = current_app.extensions["stevedores"].config["OPS_TOKEN_FAILURES_PER_MINUTE"]
        # The rate_limits service's 429 body (plugins/security/README.md): one shape for every 429.
        response = jsonify(error="too many requests", limit=f"{per_minute} per 1 minute", retry_after=WINDOW_SECONDS,
                           message=f"Too many wrong operator tokens from this address; retry in {WINDOW_SECONDS} s.")
        response.status_code = 429
        response.headers["Retry-After"] = str(WINDOW_SECONDS)
    elif verdict == INSECURE:
        response = jsonify(error="operator token refused over plain HTTP",
                           hint="use https:// (a token sent in clear text must be replaced)")
        response.status_code = 403
    else:
        response = jsonify(error="operator token required", hint="send Authorization: Bearer <OPS_TOKEN>")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="stevedores"'
    return response
