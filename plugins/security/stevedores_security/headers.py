"""Security headers on every response: Talisman (CSP with nonces, frame options, nosniff,
referrer and permissions policies), HTTPS redirects and HSTS in production, and a WSGI
safety net for responses that Flask's after_request handlers never saw.

HTTPS decisions use ``request.is_secure`` only, which the core's ProxyFix sets from
X-Forwarded-Proto when TRUSTED_PROXIES trusts a proxy. Talisman's own redirect and HSTS
are off because they read X-Forwarded-Proto themselves, trusting any client.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, Response, redirect, request
from flask_talisman import Talisman
from werkzeug.urls import iri_to_uri

from stevedores import Middleware, is_infrastructure

from . import csp
from .settings import under_exempt_path
from .talisman_headers import NONCE_ENVIRON_KEY, TalismanHeaders

HSTS_VALUE = "max-age=31536000; includeSubDomains"
#: Headers another part of this plugin computed for the response (the RateLimit headers), as a sequence
#: of (name, value) in the WSGI environ: the safety net adds them when the response starts.
EXTRA_HEADERS_KEY = "stevedores.security.extra_headers"
REFERRER_POLICY = "strict-origin-when-cross-origin"
#: Responses that carry a session cookie or user data must not be stored by browsers or proxies
#: (RFC 9111 5.2.2.5). ``max-age=0`` and ``Pragma: no-cache`` add nothing for current caches, but
#: drheader's default rules ask for exactly this set (HTTP/1.0 caches honour only Pragma).
NO_STORE = "no-store, max-age=0"
PRAGMA = "no-cache"
#: OWASP's advice: turn the legacy XSS auditor off (it opened leaks of its own); CSP replaces it.
X_XSS_PROTECTION = "0"
PERMISSIONS_POLICY = {
    "browsing-topics": "()", "camera": "()", "microphone": "()", "geolocation": "()", "payment": "()", "usb": "()",
}

Handler = Callable[..., Any]


def init_talisman(app: Flask, policy: dict[str, str], production: bool) -> Talisman:
    """Talisman with the validated ``policy``; redirect and HSTS are ours (see module doc)."""
    talisman = Talisman()
    talisman.init_app(
        app,
        force_https=False,
        strict_transport_security=False,
        frame_options="DENY",
        content_security_policy=policy,
        content_security_policy_nonce_in=csp.nonce_directives(policy),
        referrer_policy=REFERRER_POLICY,
        permissions_policy=PERMISSIONS_POLICY,
        session_cookie_secure=production,
        session_cookie_http_only=True,
        x_content_type_options=True,
    )
    return talisman


def adopt_request_handlers(app: Flask, init: Callable[[Flask], Any]) -> tuple[list[Handler], list[Handler]]:
    """Run an extension's ``init(app)`` and take back the app-wide before/after_request
    handlers it registered, so that the core composes them in middleware order."""
    befores = app.before_request_funcs.setdefault(None, [])
    afters = app.after_request_funcs.setdefault(None, [])
    known_before, known_after = list(befores), list(afters)
    init(app)
    new_before = [f for f in befores if f not in known_before]
    new_after = [f for f in afters if f not in known_after]
    for f in new_before:
        befores.remove(f)
    for f in new_after:
        afters.remove(f)
    return new_before, new_after


def adopted_middleware(name: str, order: int, handlers: tuple[list[Handler], list[Handler]]) -> list[Middleware]:
    """Hand an extension's adopted (before, after) handlers to the core's composition.

    Handler ``i`` gets order ``order + i``: the core runs before_request handlers by
    rising order and after_request handlers by falling order, which is what Flask does
    with handlers in their registration order. Infrastructure routes bypass them all
    (``infrastructure=False``): probes and scrapers get JSON or text, never a page, and need
    no nonce, no rate limit and no per-request policy rendering; :class:`HeaderSafetyNet`
    still gives their responses the full baseline of headers, precomputed once.
    """
    befores, afters = handlers
    return ([Middleware(f"{name}-before-{i}", order=order + i, before_request=h, infrastructure=False)
             for i, h in enumerate(befores)]
            + [Middleware(f"{name}-after-{i}", order=order + i, after_request=h, infrastructure=False)
               for i, h in enumerate(afters)])


class Transport:
    """HTTPS redirect (production, never for infrastructure routes); HSTS is the safety net's.

    The redirect goes to ``canonical_host`` (CANONICAL_HOST), never to the request's Host
    header: a redirect built from it sends a victim wherever a forged Host (or a cache keyed
    without it) says. Without a canonical host a plain-HTTP request gets 400 instead.
    """

    def __init__(self, production: bool, exempt_paths: tuple[str, ...] = (), canonical_host: str | None = None) -> None:
        self.production = production
        self.exempt_paths = exempt_paths
        self.canonical_host = canonical_host

    def redirect_to_https(self) -> Response | None:
        """before_request: send plain-HTTP requests to https://CANONICAL_HOST in production."""
        if not self.production or request.is_secure:
            return None
        if is_infrastructure() or under_exempt_path(request.path, self.exempt_paths):
            return None
        if not self.canonical_host:
            return Response("This dashboard is served over HTTPS only: use https://. (Its operators can set "
                            "CANONICAL_HOST to have plain-HTTP requests redirected.)\n", status=400,
                            mimetype="text/plain")
        target = f"https://{self.canonical_host}{iri_to_uri(request.script_root + request.path)}"
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        code = 301 if request.method in ("GET", "HEAD") else 308
        return redirect(target, code=code)


_CACHE_NAMES = frozenset({"cache-control", "pragma"})
_NO_STORE_HEADERS = [("Cache-Control", NO_STORE), ("Pragma", PRAGMA)]


class HeaderSafetyNet:
    """WSGI wrapper adding Talisman's headers with the request's nonce (``talisman``, when a nonce
    was drawn: :mod:`stevedores_security.talisman_headers`), the baseline headers to any response
    that lacks them, HSTS on secure responses in production, the cache policy and the RateLimit
    headers the rate limits left in the environ (:data:`EXTRA_HEADERS_KEY`) to every response.

    The cache policy:

    - No ``Cache-Control``: the response is dynamic (a page, JSON, a redirect, an error),
      and may carry a session cookie or user data: ``Cache-Control: no-store, max-age=0``.
    - A ``Cache-Control`` naming ``no-store`` (health JSON, /metrics, /status): the same
      full :data:`NO_STORE` value, so every such response reads alike.
    - Any other ``Cache-Control`` is the route's own choice and is kept: static files
      (``no-cache`` with an ETag: cacheable, revalidated), or a view that decided.

    Every no-store response also gets ``Pragma: no-cache``.

    Flask's after_request covers everything Flask serves; this covers responses made
    by other plugins' WSGI middleware and an after_request chain broken by an error.
    Being outermost of the security plugin's layers, it sees every response once.
    """

    def __init__(self, policy: dict[str, str], production: bool, talisman: TalismanHeaders | None = None) -> None:
        self.talisman = talisman
        self.baseline = [
            ("Content-Security-Policy", csp.render(policy)),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", REFERRER_POLICY),
            ("X-XSS-Protection", X_XSS_PROTECTION),
        ]
        self.production = production
        self._baseline = [(name.lower(), name, value) for name, value in self.baseline]
        self._talisman_names = talisman.names if talisman is not None else frozenset()
        #: (no-store, nonce drawn) -> the names the app's own headers lose (replaced by ours).
        self._replaced = {(no_store, nonce): (_CACHE_NAMES if no_store else frozenset())
                          | (self._talisman_names if nonce else frozenset())
                          for no_store in (False, True) for nonce in (False, True)}

    def headers_for(self, environ: dict[str, Any], headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The response's final header list (a new list): what the class doc says, with each name
        lower-cased once (four passes over the list did it four times: ~1 % of a cached JSON
        response's CPU in-process, cProfile), and no werkzeug validation of values that are ours."""
        lowered = [name.lower() for name, _ in headers]
        given = [value for (_, value), name in zip(headers, lowered, strict=True) if name == "cache-control"]
        no_store = not given or "no-store" in ", ".join(given).lower()
        nonce = environ.get(NONCE_ENVIRON_KEY) if self.talisman is not None else None
        replaced = self._replaced[no_store, nonce is not None]
        out = [header for header, name in zip(headers, lowered, strict=True) if name not in replaced]
        present = {name for name in lowered if name not in replaced}
        if no_store:
            out += _NO_STORE_HEADERS
        extra = environ.get(EXTRA_HEADERS_KEY)
        if extra:
            out += extra
        if nonce is not None:
            out += self.talisman.for_nonce(nonce)  # type: ignore[union-attr]
            present |= self._talisman_names
        out += [(name, value) for lower, name, value in self._baseline if lower not in present]
        if (self.production and environ.get("wsgi.url_scheme") == "https"
                and "strict-transport-security" not in present):
            out.append(("Strict-Transport-Security", HSTS_VALUE))
        return out

    def wrap(self, wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
        """The WSGI middleware factory for :class:`stevedores.Middleware`."""
        headers_for = self.headers_for

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                return start_response(status, headers_for(environ, headers), exc_info)

            return wsgi_app(environ, start)

        return app
