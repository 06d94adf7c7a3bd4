"""Per-app state of the plugin and the request helpers the views share: who is asking, CSRF.

CSRF: a synchronizer token. Each session holds a random token (``session["csrf"]``,
in Flask's signed cookie); every form carries it in a hidden field; a POST from a
page is refused (400) unless the two match (constant-time comparison). The JSON API
does not read the session at all (writes need a bearer token), so it needs no token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field
from datetime import time
from time import monotonic
from typing import Any, Callable, Sequence

from flask import Flask, abort, current_app, g, request, session
from sqlalchemy.engine import Engine

from .accounts import account_name, hash_token, session_account, user_for_token
from .changes import ChangeListener
from .store import Clerk
from .summary import SummaryCache
from .vessel_views import VesselViews


class TokenCache:
    """Bearer token hash -> account, remembered for ``seconds`` per process (saves three database round
    trips per API write). A deactivated account's tokens therefore stop working within ``seconds``."""

    def __init__(self, seconds: float = 5.0, max_entries: int = 1024) -> None:
        self.seconds, self.max_entries = seconds, max_entries
        self._entries: dict[str, tuple[float, Clerk]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Clerk | None:
        """The remembered account, if still fresh."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > monotonic() else None

    def put(self, key: str, user: Clerk) -> None:
        """Remember a successful lookup (the oldest entries go first when full)."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                for stale in sorted(self._entries, key=lambda k: self._entries[k][0])[: self.max_entries // 4]:
                    del self._entries[stale]
            self._entries[key] = (monotonic() + self.seconds, user)


@dataclass
class OperationsState:
    """What the views need, built once at start-up (``app.extensions["operations"]``)."""

    engine_of: Callable[[], Engine]
    summary: SummaryCache
    shift_starts: Sequence[time]
    stale_minutes: int
    tokens: TokenCache = field(default_factory=lambda: TokenCache())
    vessel_views: VesselViews = field(default_factory=VesselViews)
    #: The last dashboard rendered for a visitor without a session: (summary JSON, HTML, ETag or None).
    #: Per process.
    anonymous_page: tuple[str, str, str | None] | None = None
    #: This process's change listener (changes.py); None on SQLite or with OPERATIONS_CHANGE_NOTIFICATIONS=off.
    changes: ChangeListener | None = None

    @property
    def engine(self) -> Engine:
        """This process's engine (the core renews it after fork)."""
        return self.engine_of()


def state(app: Flask | None = None) -> OperationsState:
    """The plugin's state for ``app`` (default: the current app)."""
    return (app or current_app).extensions["operations"]


def session_user() -> Clerk | None:
    """The logged-in account of this browser session (looked up once per request)."""
    if "operations_user" not in g:
        uid = session.get("uid")
        g.operations_user = session_account(state().engine, uid, session.get("epoch")) if uid is not None else None
    return g.operations_user


def start_session(user: Clerk) -> None:
    """Log ``user`` in: a fresh session (new CSRF token) bound to the account's current epoch."""
    session.clear()
    session["uid"], session["epoch"] = user.id, user.session_epoch
    csrf_token()


def bearer_user() -> Clerk | None:
    """The account owning the request's ``Authorization: Bearer`` token, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    ops = state()
    key = hash_token(token.strip())
    user = ops.tokens.get(key)
    if user is None:
        user = user_for_token(ops.engine, token.strip())
        if user is not None:
            ops.tokens.put(key, user)
    return user


def login_account_key() -> str:
    """The per-account rate-limit key of a login POST: ``account:<username>`` as a login normalizes it;
    a name no account can have counts under ``account:-`` (so keys stay short and plain)."""
    return f"account:{account_name(request.form.get('username') or '') or '-'}"


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def require_csrf() -> None:
    """Abort with 400 unless the form's ``csrf_token`` matches the session's."""
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, description="The form's CSRF token is missing or stale: reload the page and try again.")


def form_data() -> dict[str, Any]:
    """The submitted form as a plain dict of strings (blank fields dropped)."""
    return {k: v for k, v in request.form.items() if k != "csrf_token" and v.strip() != ""}
