"""Sentry error reporting (sentry-sdk's Flask integration), only when SENTRY_DSN is set.

Nothing of sentry-sdk is imported while SENTRY_DSN is unset. When it is set, every event
is scrubbed before it leaves the process:

- sentry-sdk's own ``EventScrubber``, recursive, with its denylist of field names
  (password, token, cookie, session, csrf_token, ...) plus :data:`EXTRA_DENYLIST` (the
  login form's ``username`` and what names a person): such fields in frame variables,
  breadcrumb data, the user context and extra data are replaced (sentry-sdk writes
  ``[Filtered]``);
- then :func:`make_scrubber`'s ``before_send``: request bodies, cookies and credential
  headers removed; the query string keeps its names, never its values (URLs in the
  request and in breadcrumbs likewise); the user context keeps its ``id`` only; and the
  values of the dashboard's secret settings (OPS_TOKEN, SECRET_KEY, DATABASE_URL, ...),
  the current request's credentials and cookies, its query values and its login-form
  values are replaced wherever they appear (messages, breadcrumbs, stack locals) by the
  core's one redaction function (``stevedores.redaction``).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from stevedores import __version__
from stevedores.redaction import REDACTED, redact
from stevedores.settings import Config

log = logging.getLogger("stevedores.observability")

FILTERED = REDACTED  # the core's one replacement token, as in the logs and /health

#: Request headers that carry credentials or session state (compared lower-case).
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                               "x-auth-token", "x-csrf-token", "x-csrftoken"})

#: Field names scrubbed on top of sentry-sdk's DEFAULT_DENYLIST: who logs in, and who a person is.
EXTRA_DENYLIST = ("username", "user_name", "login", "email", "name_or_email", "new_password", "current_password")

#: Keys of the user context that may leave: an opaque id, never a name, address or e-mail.
USER_KEYS = ("id",)

_URL_QUERY = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s?#\"'<>]*|(?<![\w/])/[^\s?#\"'<>]*)\?[^\s#\"'<>]+",
                        re.IGNORECASE)
def init_sentry(config: Config) -> bool:
    """Initialise sentry-sdk for this process when SENTRY_DSN is set; True if it was."""
    dsn = config["SENTRY_DSN"]
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

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
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *EXTRA_DENYLIST], recursive=True),
        before_send=scrub,
        before_send_transaction=scrub,
    )
    log.info("Sentry error reporting on (environment %s, release %s)", config.profile, __version__)
    return True


def make_scrubber(secrets: Iterable[str]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A ``before_send``: bodies, cookies, credential headers, query values and personal data out,
    secret and request-supplied values replaced (see the module docstring)."""
    secret_values = tuple(secrets)

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
            if isinstance(request.get("query_string"), str):
                request["query_string"] = mask_query(request["query_string"])
            if isinstance(request.get("url"), str):
                request["url"] = without_query(request["url"])
        user = event.get("user")
        if isinstance(user, dict):
            event["user"] = {k: v for k, v in user.items() if k in USER_KEYS}
        _scrub_breadcrumbs(event)
        return _strip_url_queries(redact(event, (*secret_values, *_request_values())))

    return scrub


def mask_query(query: str) -> str:
    """``a=1&b=x`` -> ``a=[Filtered]&b=[Filtered]``: which parameters were sent, never their values."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{name}={FILTERED}" for name, _value in pairs) if pairs else (FILTERED if query else "")


def without_query(url: str) -> str:
    """``url`` without its query string and fragment (a ``?`` marks that there was one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return FILTERED
    return urlunsplit((parts.scheme, parts.netloc, parts.path, FILTERED if parts.query else "", ""))


def _scrub_breadcrumbs(event: dict[str, Any]) -> None:
    crumbs = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for crumb in values if isinstance(values, list) else ():
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if not isinstance(data, dict):
            continue
        for key in ("http.query", "http.fragment"):  # sentry-sdk's outgoing HTTP breadcrumbs
            if data.get(key):
                data[key] = FILTERED
        if isinstance(data.get("url"), str):
            data["url"] = without_query(data["url"])


def _strip_url_queries(value: Any) -> Any:
    """Query strings of URLs inside free text (messages, exception values, locals): values out."""
    if isinstance(value, str):
        return _URL_QUERY.sub(lambda m: f"{m.group(1)}?{FILTERED}", value) if "?" in value else value
    if isinstance(value, dict):
        return {k: _strip_url_queries(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_url_queries(v) for v in value]
    return value


def _request_values() -> tuple[str, ...]:
    """What the current request supplied that must not leave: credential header and cookie values,
    query values, and (when the view already parsed the form) login-form values."""
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
    found.extend(v for _name, v in request.args.items(multi=True) if v)
    form = request.__dict__.get("form")  # never parse a body here: only what the view already read
    if form is not None:
        sensitive = {*EXTRA_DENYLIST, "password", "passwd", "token", "csrf_token", "secret"}
        found.extend(v for name, v in form.items(multi=True) if v and name.lower() in sensitive)
    return tuple(found)
