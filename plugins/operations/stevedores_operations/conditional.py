"""Conditional GET (RFC 9110 13.1.2, If-None-Match) for the pages and JSON that are polled.

The dashboard (``/``) and vessel pages for visitors without a session, and ``/api/summary``,
carry an ETag made from their body; a client that sends it back in If-None-Match while
nothing changed gets ``304 Not Modified`` with no body. Freshness is unchanged: the body
(and so its ETag) is rebuilt from the data fingerprint read on every request.

A body that contains the request's CSP nonce never gets an ETag: a 304 would keep the old
body, whose nonce no longer matches the new response's Content-Security-Policy, and its
inline code would be refused. The operations pages carry no inline code (no nonce); the
check guards a template that adds one. Logged-in pages (a user's name, a CSRF token, flash
messages) get no ETag either.

The security plugin's ``Cache-Control: no-store`` stays on these responses (drheader's
rule, and pages may follow a login): browsers then do not revalidate by themselves, but
pollers that keep the ETag and send If-None-Match (the status page's script, monitors,
``curl -H 'If-None-Match: …'``) get the 304.
"""

from __future__ import annotations

import hashlib

from flask import Response, current_app, request

#: Request headers that make a request conditional (RFC 9110 13.1), as WSGI environ keys.
_CONDITIONAL_HEADERS = frozenset({"HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
                                  "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE", "HTTP_RANGE"})


def etag_of(text: str) -> str:
    """A strong entity tag for ``text`` (unquoted): 128 bits of BLAKE2b of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def carries_nonce(body: str) -> bool:
    """True when ``body`` contains this request's CSP nonce (Talisman's ``request.csp_nonce``)."""
    nonce = getattr(request, "csp_nonce", "")
    return bool(nonce) and nonce in body


def conditional_response(body: str, etag: str | None, mimetype: str = "text/html") -> Response:
    """``body`` as a response; with ``etag``, a 304 when the request's If-None-Match names it."""
    response = current_app.response_class(body, mimetype=mimetype)
    if etag is None:
        return response
    response.set_etag(etag)
    if not _CONDITIONAL_HEADERS.intersection(request.environ):  # werkzeug's full evaluation costs ~10 % of a page
        return response
    return response.make_conditional(request)
