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

from flask import Flask, Response, current_app, g, jsonify, request
from flask_limiter import Limiter, RequestLimit

from stevedores import is_infrastructure
from stevedores.settings import parse_rate_limits

from .counting import AppWindow, ResilientCounter
from .headers import EXTRA_HEADERS_KEY
from .settings import under_exempt_path

F = TypeVar("F", bound=Callable[..., Any])
#: Requests without side effects (RFC 9110 9.2.1): their app-wide count is read after the view ran.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Clients remembered as refused until their window ends (the expired ones are dropped first when full).
MAX_REFUSED_CLIENTS = 10_000
#: Whether the current request's view has limits of its own (RateLimits.limited_view), per request.
_LIMITED_VIEW_KEY = "stevedores.security.limited_view"


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

    The app-wide limits (RATE_LIMITS) are checked by :meth:`check_app_limits`, one call into the
    counter per request (one Redis round trip for all windows), not through flask-limiter: its
    per-request resolution of which limits apply (route, blueprint, defaults, exemptions) cost
    about as much CPU as the Redis round trip itself, on every page (bench/RESULTS.md, "Profile").
    flask-limiter keeps the views' own limits (``limit()``): its view decorator checks them; its
    before_request is not used (with no application or default limits of its own it finds
    nothing to check), and its after_request and teardown run only for the decorated views.
    Counting is the same fixed windows under the same keys, smallest window first and stopping
    at the first one exceeded, as flask-limiter does.
    """

    def __init__(self, app_limits: str, telemetry: Any, exempt_paths: tuple[str, ...] = ()) -> None:
        self.app_limits = app_limits
        self.app_items = tuple(sorted(parse_rate_limits(app_limits))) if app_limits else ()
        self.telemetry = telemetry
        self.exempt_paths = exempt_paths
        self.refusals = 0
        #: client -> the app-wide window that refused it (see check_app_limits), until the window ends.
        self._refused: dict[str, AppWindow] = {}
        self._limited_views: set[Callable[..., Any]] = set()
        self.limiter = ResilientLimiter(
            client_address,
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
            decorator = self.limiter.shared_limit(spec, scope=scope, key_func=key, deduct_when=deduct_when)
        else:
            decorator = self.limiter.limit(spec, key_func=key, deduct_when=deduct_when)

        def decorate(view: F) -> F:
            limited = decorator(view)
            self._limited_views.add(limited)
            return limited  # type: ignore[return-value]

        return decorate

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
        counter.batch(self.app_items)
        self.limiter.counter = counter
        teardowns = app.teardown_request_funcs.setdefault(None, [])
        known = list(teardowns)
        self.limiter.init_app(app)
        # flask-limiter's teardown resets its per-request context: only views with limits have one.
        teardowns[:] = [f if f in known else self.only_for_limited_views(f) for f in teardowns]
        app.teardown_request(self.finish_unread_count)

    def finish_unread_count(self, _exc: BaseException | None = None) -> None:
        """teardown_request: read a count left pending when no after_request ran (a request that failed
        past Flask's error handling). Each count holds the Redis breaker's ticket until it is read, and
        an unfinished half-open probe would leave the breaker refusing every call."""
        pending = g.pop("_stevedores_app_counting", None)
        if pending is not None:
            pending[1].window()

    def only_for_limited_views(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap one of flask-limiter's per-request handlers (after_request, which takes and returns the
        response, or teardown, which takes the exception): run it only for views decorated by
        :meth:`limit` (any other view has no limit context and no conditional deduction to make)."""

        def check(*args: Any) -> Any:
            if self.limited_view():
                return handler(*args)
            return args[0] if args else None

        return check

    def limited_view(self) -> bool:
        """True when the current request's view has limits of its own (:meth:`limit`); asked once per request."""
        current = request._get_current_object()  # type: ignore[attr-defined] - one proxy lookup, not three
        environ = current.environ
        answer = environ.get(_LIMITED_VIEW_KEY)
        if answer is None:
            view = current_app.view_functions.get(current.endpoint or "")
            answer = environ[_LIMITED_VIEW_KEY] = view is not None and view in self._limited_views
        return answer

    def check_app_limits(self) -> Response | None:
        """before_request: count this request against every app-wide limit of its client (one
        counter call); the 429 response when one is exceeded. Exempt: infrastructure routes (the
        core does not call it for them: ``Middleware(infrastructure=False)``), SECURITY_EXEMPT_PATHS,
        static files and requests that match no route.

        For a safe request (GET, HEAD, OPTIONS: no side effects, RFC 9110 9.2.1) the count is sent to
        Redis here and its reply read by :meth:`settle_app_limits` once the view has run, so the
        worker computes the page while Redis answers instead of waiting for it; a refused request
        gets the same 429 either way, and its view's work is dropped. A client refused so is then
        refused at once, without counting or running a view, until that window ends (its count can
        only grow until then). Any other request, and any request counted in the fallback store
        (no wait to save), gets its verdict before its view.
        """
        counter = self.counter
        if not self.app_items or counter is None or under_exempt_path(request.path, self.exempt_paths):
            return None
        current = request._get_current_object()  # type: ignore[attr-defined] - one proxy lookup
        endpoint = current.endpoint
        if not endpoint or endpoint.rsplit(".", 1)[-1] == "static":
            return None
        client = client_address()
        refused = self._refused.get(client)
        if refused is not None:
            if refused.reset_at > time.time():
                g._stevedores_app_window = refused
                return self._refusal(str(refused.item), refused.reset_at)
            self._refused.pop(client, None)
        counting = counter.start_app_limits(client)
        if counting is None:
            return None
        if counting.pending and current.method in SAFE_METHODS:
            g._stevedores_app_counting = (client, counting)
            return None
        return self._verdict(client, counting.window())

    def settle_app_limits(self, response: Response) -> Response:
        """after_request, before every other: the verdict of a count that :meth:`check_app_limits` left
        pending (the 429 in place of the view's response when a limit is exceeded)."""
        pending = g.pop("_stevedores_app_counting", None)
        if pending is None:
            return response
        client, counting = pending
        refusal = self._verdict(client, counting.window(), remember=True)
        if refusal is None:
            return response
        response.close()  # the view's response is dropped: release what it holds (a stream's context)
        return refusal

    def _verdict(self, client: str, window: AppWindow, remember: bool = False) -> Response | None:
        """Keep ``window`` for the RateLimit headers; the 429 when it is exceeded (and, with ``remember``,
        the client refused at once until the window ends)."""
        g._stevedores_app_window = window
        if not window.exceeded:
            return None
        if remember and window.shared:  # a fleet-wide count only grows until its window ends; a fallback's may not
            self._remember_refused(client, window)
        return self._refusal(str(window.item), window.reset_at)

    def _remember_refused(self, client: str, window: AppWindow) -> None:
        """Refuse ``client`` at once until ``window`` ends (bounded: ended windows go first, then all)."""
        if len(self._refused) >= MAX_REFUSED_CLIENTS:
            now = time.time()
            for known in [c for c, w in list(self._refused.items()) if w.reset_at <= now]:  # a copy: threads add
                self._refused.pop(known, None)
            if len(self._refused) >= MAX_REFUSED_CLIENTS:
                self._refused.clear()
        self._refused[client] = window

    @property
    def counter(self) -> ResilientCounter | None:
        """The bound counter (None before :meth:`bind`)."""
        return self.limiter.counter

    def is_exempt(self) -> bool:
        """True for infrastructure routes (``@infrastructure``) and SECURITY_EXEMPT_PATHS."""
        return is_infrastructure() or under_exempt_path(request.path, self.exempt_paths)

    def _refuse(self, limit: RequestLimit) -> Response:
        return self._refusal(str(limit.limit), limit.reset_at)

    def _refusal(self, limit: str, reset_at: float) -> Response:
        self.refusals += 1
        self.telemetry.count("rate_limit_refusals_total")
        retry_after = max(1, math.ceil(reset_at - time.time()))
        response = jsonify(error="too many requests", limit=limit, retry_after=retry_after,
                           message=f"Rate limit of {limit} exceeded; retry in {retry_after} s.")
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
        return response

    def add_headers(self, response: Response) -> Response:
        """RateLimit-Limit/-Remaining/-Reset (seconds) and RateLimit-Policy for the tightest limit,
        with the amount enforced for this request (the instance's share when the fallback counted),
        handed to the header safety net (:data:`~.headers.EXTRA_HEADERS_KEY`), which writes them.

        The tightest limit: a view's own limit when it was exceeded or is not shared with other
        views (as flask-limiter chooses), else the app-wide window exceeded or, when none was,
        the smallest one.
        """
        current = self.limiter.current_limit if self.limiter.initialized and self.limited_view() else None
        app_window = g.get("_stevedores_app_window")
        if current is not None and (current.breached or not current.shared or app_window is None):
            item, reset_at, remaining = current.limit, current.reset_at, current.remaining
            counter = self.limiter.counter
            amount = counter.enforced_amount(item) if counter is not None else item.amount
        elif app_window is not None:
            item, reset_at, remaining = app_window.item, app_window.reset_at, app_window.remaining
            amount = app_window.enforced
        else:
            return response
        reset = max(0, math.ceil(reset_at - time.time()))
        # Written by the header safety net when the response starts: werkzeug's Headers.extend validated
        # each of these four values of ours again (a tenth of the security plugin's own CPU, cProfile).
        # One set: an error response made after this one replaces it, never adds a second.
        request.environ[EXTRA_HEADERS_KEY] = (
            ("RateLimit-Limit", str(amount)), ("RateLimit-Remaining", str(remaining)), ("RateLimit-Reset", str(reset)),
            ("RateLimit-Policy", f"{amount};w={item.get_expiry()}"))
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(max(1, reset))
        return response
