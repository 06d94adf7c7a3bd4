"""Sentry error reporting (sentry-sdk's Flask integration), only when SENTRY_DSN is set.

Nothing of sentry-sdk is imported while SENTRY_DSN is unset. When it is set, every event
goes through :func:`scrub_event` before it leaves the process: request bodies, cookies and
credential headers are removed, and the values of the dashboard's secret settings
(OPS_TOKEN, SECRET_KEY, DATABASE_URL, REDIS_URL, ...) and the current request's credential
and cookie values are replaced wherever they appear (messages, breadcrumbs, stack locals).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from stevedores import __version__
from stevedores.redaction import REDACTED, redact
from stevedores.settings import Config

log = logging.getLogger("stevedores.observability")

FILTERED = REDACTED  # the core's one replacement token, as in the logs and /health
MIN_REDACTED_LENGTH = 6  # shorter values would blank out ordinary words

#: Request headers that carry credentials or session state (compared lower-case).
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                               "x-auth-token", "x-csrf-token", "x-csrftoken"})


def init_sentry(config: Config) -> bool:
    """Initialise sentry-sdk for this process when SENTRY_DSN is set; True if it was."""
    dsn = config["SENTRY_DSN"]
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    scrub = make_scrubber(config.secret_values())
    sentry_sdk.init(
        dsn=dsn,
        environment=config.profile,
        release=f"stevedores-dashboard@{__version__}",
        sample_rate=config["SENTRY_SAMPLE_RATE"],
        traces_sample_rate=config["SENTRY_TRACES_SAMPLE_RATE"],
        send_default_pii=False,
        max_request_body_size="never",
        integrations=[FlaskIntegration(transaction_style="url")],
        before_send=scrub,
        before_send_transaction=scrub,
    )
    log.info("Sentry error reporting on (environment %s, release %s)", config.profile, __version__)
    return True


def make_scrubber(secrets: Iterable[str]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A ``before_send`` that removes bodies, cookies, credential headers and secret values."""
    secret_values = tuple(sorted({s for s in secrets if len(s) >= MIN_REDACTED_LENGTH}, key=len, reverse=True))

    def scrub(event: dict[str, Any], hint: Any) -> dict[str, Any]:
        request = event.get("request")
        if isinstance(request, dict):
            request.pop("data", None)
            request.pop("cookies", None)
            headers = request.get("headers")
            if isinstance(headers, dict):
                request["headers"] = {k: v for k, v in headers.items() if str(k).lower() not in SENSITIVE_HEADERS}
            elif isinstance(headers, list):  # [[name, value], ...] form
                request["headers"] = [h for h in headers if not (isinstance(h, (list, tuple)) and h
                                                                 and str(h[0]).lower() in SENSITIVE_HEADERS)]
        redacted = tuple(sorted({*secret_values, *_request_credentials()}, key=len, reverse=True))
        return redact(event, redacted)

    return scrub


def _request_credentials() -> tuple[str, ...]:
    """The current request's credential header and cookie values (they may sit in stack locals too)."""
    from flask import has_request_context, request

    if not has_request_context():
        return ()
    found: list[str] = []
    for name, value in request.headers.items():
        if name.lower() in SENSITIVE_HEADERS and value:
            found.append(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():  # "Bearer <token>": the token alone too
                found.append(credential.strip())
    found.extend(v for v in request.cookies.values() if v)
    return tuple(v for v in found if len(v) >= MIN_REDACTED_LENGTH)
