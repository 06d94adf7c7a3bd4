"""Talisman's response headers, rendered by Talisman once and spliced with each request's nonce.

Talisman works out its options and renders every header on every request: it resolves the
view's options three times (HTTPS, nonce, headers), rebuilds the CSP string and sets each
header through werkzeug's case-insensitive ``Headers.set``. Measured on this 2-core machine
(bench/RESULTS.md, "Profile"), that was 6-8 % of the dashboard's CPU per request, for headers
that differ between requests only by the nonce.

:class:`TalismanHeaders` asks Talisman itself, at start-up, for the headers of a response
under a sentinel nonce (its ``_set_response_headers``, on a request that matches no view),
and keeps them with the sentinel's places in their values. Per request it draws the nonce as
Talisman does (``get_random_string(NONCE_LENGTH)``, as ``request.csp_nonce`` for the
templates' ``csp_nonce()``) and leaves it in the WSGI environ; the header safety net
(:class:`stevedores_security.headers.HeaderSafetyNet`) writes the spliced headers when the
response starts, replacing any of the same name, as Talisman's ``set`` would. A view that
carries options of its own (``@talisman(...)``) gets Talisman's own handlers, unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, current_app, request
from flask_talisman import NONCE_LENGTH, Talisman
from flask_talisman.talisman import get_random_string

#: The request's nonce, for the header safety net (absent: Talisman's own handlers ran, or none was drawn).
NONCE_ENVIRON_KEY = "stevedores.security.csp_nonce"
_SENTINEL = "stevedoresnoncesentinel"

Handler = Callable[..., Any]


class TalismanHeaders:
    """Talisman's header set for views without options of their own, rendered once.

    ``handlers``: Talisman's (before_request, after_request) handlers as registered, run as
    they are for a view with ``talisman_view_options``.
    """

    def __init__(self, app: Flask, talisman: Talisman, handlers: tuple[list[Handler], list[Handler]]) -> None:
        self.talisman = talisman
        self.befores, self.afters = handlers
        self.parts = self._render(app)
        self.names = frozenset(name.lower() for name, _ in self.parts)
        self._own: dict[str, bool] = {}

    def _render(self, app: Flask) -> list[tuple[str, list[str]]]:
        """[(name, value split at the sentinel nonce)] of what Talisman adds to an empty response."""
        with app.test_request_context("/.stevedores-talisman-render"):
            request.csp_nonce = _SENTINEL  # type: ignore[attr-defined]
            response = app.response_class()
            before = {name.lower() for name in response.headers.keys()}
            response = self.talisman._set_response_headers(response)
            return [(name, value.split(_SENTINEL)) for name, value in response.headers.items()
                    if name.lower() not in before]

    def for_nonce(self, nonce: str) -> list[tuple[str, str]]:
        """The header list with ``nonce`` in place of the sentinel."""
        return [(name, nonce.join(parts)) for name, parts in self.parts]

    def _own_options(self) -> bool:
        """True when the request's view carries Talisman options of its own (answer kept per endpoint)."""
        endpoint = request.endpoint or ""
        own = self._own.get(endpoint)
        if own is None:
            view = current_app.view_functions.get(endpoint)
            own = self._own[endpoint] = bool(getattr(view, "talisman_view_options", None))
        return own

    def before_request(self) -> Any:
        """Draw the nonce (Talisman's handlers instead, for a view with options of its own)."""
        if self._own_options():
            for handler in self.befores:
                answer = handler()
                if answer is not None:
                    return answer
            return None
        nonce = request.csp_nonce = get_random_string(NONCE_LENGTH)  # type: ignore[attr-defined]
        request.environ[NONCE_ENVIRON_KEY] = nonce
        return None

    def after_request(self, response: Any) -> Any:
        """Nothing to do here (the safety net writes the headers), but for a view with options of its own."""
        if NONCE_ENVIRON_KEY not in request.environ:
            for handler in self.afters:
                response = handler(response)
        return response
