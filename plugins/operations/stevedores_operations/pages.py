"""The pages operators use: the dashboard (``/``), a vessel page with its chart and tally form, login.

Pages are server-rendered (no script at all), so they work under the strict CSP and
on a phone at the quay. Forms post back with the session's CSRF token.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Sequence

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for

from .accounts import authenticate, end_sessions, may
from .conditional import carries_nonce, conditional_response, etag_of
from .context import csrf_token, form_data, require_csrf, session_user, start_session, state
from .domain import (
    CATEGORIES,
    OPERATION_TYPES,
    STATUSES,
    TALLY_DIRECTIONS,
    VESSEL_TYPES,
    NotFoundError,
    OperationsError,
    parse_iso,
    timestamp_column,
)
from .durations import duration_words
from .redirects import safe_next
from .store import post_tally, update_vessel_call
from .validation import displayable

STATUS_WORDS = {s: s.replace("_", " ") for s in STATUSES}


def _hhmm(value: str | None) -> str:
    """``2026-05-01T06:30:00Z`` -> ``01 May 06:30`` (UTC), or an em dash (none, unreadable or out of range)."""
    try:
        moment = displayable(parse_iso(value), "a date on a page") if value else None
    except (ValueError, OverflowError):
        moment = None
    return f"{moment:%d %b %H:%M}" if moment else "—"


def build_pages(app: Flask, login_limits: Sequence[Callable[[Callable], Callable]]) -> Blueprint:
    """The page blueprint (static files under /operations/static); ``login_limits`` decorate POST /login."""
    pages = Blueprint("operations", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/operations/static")
    _add_template_helpers(pages)
    _add_dashboard(pages)
    _add_vessel_routes(pages)
    _add_login_routes(pages, login_limits)
    return pages


def _add_template_helpers(pages: Blueprint) -> None:
    """The 404 page, the ``when`` and ``duration`` filters and what every page's template may use."""

    @pages.errorhandler(NotFoundError)
    def not_found(exc: NotFoundError) -> Any:
        return render_template("operations/not_found.html", message=str(exc)), 404

    @pages.app_template_filter("when")
    def when(value: str | None) -> str:
        return _hhmm(value)

    pages.add_app_template_filter(duration_words, "duration")

    @pages.app_context_processor
    def page_context() -> dict[str, Any]:
        return {"operations_user": session_user, "csrf_token": csrf_token, "status_words": STATUS_WORDS}


def _add_dashboard(pages: Blueprint) -> None:
    """``GET /``: the dashboard (one rendering shared by anonymous visitors while the summary holds)."""

    @pages.get("/")
    def dashboard() -> Any:
        ops = state()
        raw = ops.summary.get_json()
        anonymous = not session  # no login, no flash message, no CSRF token: the page is the same for everyone
        memo = ops.anonymous_page
        etag = None
        if anonymous and memo is not None and memo[0] == raw:
            html, etag = memo[1], memo[2]
        else:
            html = render_template("operations/dashboard.html", summary=json.loads(raw))
            if anonymous and not session:  # rendering started no session
                etag = None if carries_nonce(html) else etag_of(html)
                ops.anonymous_page = (raw, html, etag)
        response = conditional_response(html, etag)
        # Never stored: logged in, it carries the user's name and CSRF token. Anonymous, pollers revalidate
        # it with If-None-Match (conditional.py).
        response.headers["Cache-Control"] = "no-store"
        return response


def _add_vessel_routes(pages: Blueprint) -> None:
    """A vessel call's page, its tally form and its status form."""

    @pages.get("/vessels/<record_id:call_id>")
    def vessel(call_id: int) -> Any:
        return _vessel_page(call_id)

    @pages.post("/vessels/<record_id:call_id>/tallies")
    def vessel_tally(call_id: int) -> Any:
        user, refusal = _form_poster(call_id, "tally", "post tallies")
        if refusal is not None:
            return refusal
        ops = state()
        try:
            tally, created = post_tally(ops.engine, form_data(), user, vessel_call_id=call_id,
                                        shift_starts=ops.shift_starts)
        except OperationsError as exc:
            return _vessel_page(call_id, errors=[(e.field, e.message) for e in exc.errors], status=exc.status,
                                form=request.form)
        flash(f"Tallied {tally['units']} {tally['category']} {tally['direction']} in zone {tally['zone']}"
              + ("" if created else " (already recorded: counted once)"))
        return redirect(url_for("operations.vessel", call_id=call_id), code=303)

    @pages.post("/vessels/<record_id:call_id>/status")
    def vessel_status(call_id: int) -> Any:
        _user, refusal = _form_poster(call_id, "manage", "change a vessel call")
        if refusal is not None:
            return refusal
        try:
            call = update_vessel_call(state().engine, call_id, {"status": request.form.get("status", "")})
        except OperationsError as exc:
            return _vessel_page(call_id, errors=[(e.field, e.message) for e in exc.errors], status=exc.status)
        flash(f"{call['vessel_name']} is now {STATUS_WORDS[call['status']]}")
        return redirect(url_for("operations.vessel", call_id=call_id), code=303)


def _add_login_routes(pages: Blueprint, login_limits: Sequence[Callable[[Callable], Callable]]) -> None:
    """Login (GET, and POST under ``login_limits``) and logout."""

    @pages.get("/login")
    def login() -> Any:
        return render_template("operations/login.html", next=safe_next(request.args.get("next")))

    def login_post() -> Any:
        require_csrf()
        user = authenticate(state().engine, request.form.get("username", ""), request.form.get("password", ""))
        if user is None:
            return render_template("operations/login.html", error="Unknown username or wrong password.",
                                   next=safe_next(request.form.get("next"))), 401
        start_session(user)
        return redirect(safe_next(request.form.get("next")), code=303)

    # The failed-login limits sit on the POST alone: GET and HEAD /login are never refused.
    for limit in reversed(login_limits):
        login_post = limit(login_post)
    pages.add_url_rule("/login", "login_post", login_post, methods=["POST"])

    @pages.post("/logout")
    def logout() -> Any:
        require_csrf()
        user = session_user()
        if user is not None and user.id is not None:
            end_sessions(state().engine, user.id)  # every copy of this cookie (and the account's other sessions)
        session.clear()
        return redirect(url_for("operations.dashboard"), code=303)


def _form_poster(call_id: int, permission: str, refused: str) -> tuple[Any, Any]:
    """Who posts a vessel page's form, after the CSRF check: ``(user, None)`` when their role may
    ``permission``; else ``(None, answer)``: the login page for a visitor, the page with a 403 naming
    what the role may not do (``refused``)."""
    require_csrf()
    user = session_user()
    if user is None:
        return None, redirect(url_for("operations.login", next=request.path))
    if not may(user.role, permission):
        return None, _vessel_page(call_id, errors=[("role", f"a {user.role} may not {refused}")], status=403)
    return user, None


def _vessel_page(call_id: int, errors: list[tuple[str, str]] | None = None, status: int = 200,
                 form: Any = None) -> Any:
    ops = state()
    view = ops.vessel_views.get(ops.engine, call_id)  # NotFoundError -> 404 (app handler)
    # No login, no flash message, no CSRF token, no form: the page is the same for every such visitor.
    anonymous = not session and errors is None and form is None and status == 200
    if anonymous:
        page = ops.vessel_views.anonymous_page(view)
        if page is not None:
            return conditional_response(*page)
    call = view.call
    here = STATUSES.index(call["status"])
    user = session_user()
    context = {
        "call": call, "chart": view.chart, "tallies": view.tallies, "errors": errors or [],
        "form": form or {}, "idempotency_key": uuid.uuid4().hex,
        "directions": [t for t, d in TALLY_DIRECTIONS.items() if d in OPERATION_TYPES[call["operation_type"]]],
        "categories": [c for c in CATEGORIES if c in VESSEL_TYPES[call["vessel_type"]]],
        "next_status": STATUSES[here + 1] if here + 1 < len(STATUSES) else None,
        "timeline": [(s, call["status_times"][s]) for s in STATUSES],
        "may_tally": bool(user and may(user.role, "tally")), "may_manage": bool(user and may(user.role, "manage")),
        "timestamp_column": timestamp_column,
    }
    html = render_template("operations/vessel.html", **context)
    if anonymous and not session:  # rendering did not start a session (no CSRF token, no flash)
        etag = None if carries_nonce(html) else etag_of(html)
        ops.vessel_views.remember_anonymous_page(view, html, etag)
        return conditional_response(html, etag)
    return html, status
