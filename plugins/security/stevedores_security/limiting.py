"""Rate limits with flask-limiter: app-wide limits per client, the ``rate_limits`` service,
429 responses with JSON, Retry-After and RateLimit headers.

The limiter is created when the plugin offers its services (before the app exists) so
that other plugins can decorate views with ``rate_limits.limit(...)`` in their own
startup; :meth:`RateLimits.bind` attaches it to the app in this plugin's startup.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, TypeVar

from flask import Flask, Response, jsonify, request
from flask_limiter import Limiter, RequestLimit

from stevedores import is_infrastructure
from stevedores.settings import parse_rate_limits

from .counting import ResilientCounter
from .settings import under_exempt_path

F = TypeVar("F", bound=Callable[..., Any])


def client_address() -> str:
    """The rate-limit key: the client's address as ProxyFix (TRUSTED_PROXIES) resolved it."""
    return request.remote_addr or "unknown"


class ResilientLimiter(Limiter):
    """flask-limiter whose strategy is the :class:`ResilientCounter` (Redis or memory per call)."""

    counter: ResilientCounter | None = None

    @property
    def limiter(self) -> Any:
        """The rate limiting strategy: the resilient counter once bound."""
        return self.counter if self.counter is not None else super().limiter


class RateLimits:
    """The ``rate_limits`` service and the app-wide limits.

    ``limit(spec, scope=None, deduct_when=None)`` returns a view decorator (docs/plugins.md).
    """

    def __init__(self, app_limits: str, telemetry: Any, exempt_paths: tuple[str, ...] = ()) -> None:
        self.app_limits = app_limits
        self.telemetry = telemetry
        self.exempt_paths = exempt_paths
        self.refusals = 0
        self.limiter = ResilientLimiter(
            client_address,
            application_limits=[app_limits] if app_limits else None,
            headers_enabled=False,  # RateLimit-* headers are written by add_headers
            strategy="fixed-window",
            storage_uri="memory://",  # unused: every count goes through the ResilientCounter
            on_breach=self._refuse,
            key_prefix="",
            swallow_errors=True,  # a limiter bug is logged; it never turns every page into a 500
        )
        self.limiter.request_filter(self.is_exempt)

    # --- the service -------------------------------------------------------------------

    def limit(self, spec: str, scope: str | None = None, deduct_when: Callable[[Response], bool] | None = None,
              key: Callable[[], str] | None = None) -> Callable[[F], F]:
        """A view decorator limiting the view (or every view sharing ``scope``) per client address,
        or per ``key()`` when given (e.g. the account a login names; keep keys short and plain).

        Raises ValueError naming ``spec`` when it is not a limit string.
        """
        parse_rate_limits(spec)
        if scope:
            return self.limiter.shared_limit(spec, scope=scope, key_func=key,  # type: ignore[return-value]
                                             deduct_when=deduct_when)
        return self.limiter.limit(spec, key_func=key, deduct_when=deduct_when)  # type: ignore[return-value]

    def hit(self, spec: str, scope: str, key: str | None = None) -> bool:
        """Count one event for ``key`` (default: the client address) under ``scope``.

        True while the count stays within ``spec`` (e.g. ``"10 per minute"``). For events
        that are not one view's responses: the core counts wrong operator tokens with it.
        Raises ValueError naming ``spec`` when it is not a limit string.
        """
        counter = self.limiter.counter
        return True if counter is None else counter.hit(self._item(spec), scope, key or client_address())

    def allows(self, spec: str, scope: str, key: str | None = None) -> bool:
        """True when one more event for ``key`` under ``scope`` would stay within ``spec`` (counts nothing)."""
        counter = self.limiter.counter
        return True if counter is None else counter.test(self._item(spec), scope, key or client_address())

    @staticmethod
    def _item(spec: str) -> Any:
        return parse_rate_limits(spec)[0]

    # --- wiring --------------------------------------------------------------------------

    def bind(self, app: Flask, counter: ResilientCounter) -> None:
        """Attach to ``app`` with ``counter`` as the storage strategy."""
        counter.batch(parse_rate_limits(self.app_limits) if self.app_limits else ())
        self.limiter.counter = counter
        self.limiter.init_app(app)

    @property
    def counter(self) -> ResilientCounter | None:
        """The bound counter (None before :meth:`bind`)."""
        return self.limiter.counter

    def is_exempt(self) -> bool:
        """True for infrastructure routes (``@infrastructure``) and SECURITY_EXEMPT_PATHS."""
        return is_infrastructure() or under_exempt_path(request.path, self.exempt_paths)

    def _refuse(self, limit: RequestLimit) -> Response:
        self.refusals += 1
        self.telemetry.count("rate_limit_refusals_total")
        retry_after = max(1, math.ceil(limit.reset_at - time.time()))
        response = jsonify(error="too many requests", limit=str(limit.limit), retry_after=retry_after,
                           message=f"Rate limit of {limit.limit} exceeded; retry in {retry_after} s.")
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
        return response

    def add_headers(self, response: Response) -> Response:
        """RateLimit-Limit/-Remaining/-Reset (seconds) and RateLimit-Policy for the tightest limit,
        with the amount enforced for this request (the instance's share when the fallback counted)."""
        current = self.limiter.current_limit if self.limiter.initialized else None
        if current is None:
            return response
        reset = max(0, math.ceil(current.reset_at - time.time()))
        item = current.limit
        counter = self.limiter.counter
        amount = counter.enforced_amount(item) if counter is not None else item.amount
        response.headers["RateLimit-Limit"] = str(amount)
        response.headers["RateLimit-Remaining"] = str(current.remaining)
        response.headers["RateLimit-Reset"] = str(reset)
        response.headers["RateLimit-Policy"] = f"{amount};w={item.get_expiry()}"
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(max(1, reset))
        return response
