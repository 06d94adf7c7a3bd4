"""Managers' pages: create a vessel call (``GET /vessels/new``, ``POST /vessels``), change one
(``POST /vessels/<id>``, the form on the vessel page), and every tally of a call as CSV
(``GET /vessels/<id>/tallies.csv``, for any logged-in account).

The forms use the JSON API's field names (``vessel_name``, ..., ``planned_start``) with the planned
units flattened to ``planned_<direction>_<category>``; they are turned into the API's payload and
validated by the same domain functions (``store.create_vessel_call`` / ``update_vessel_call``), so a
form and the API accept and refuse exactly the same values. A refusal re-renders the form with the
values kept and each error next to the field it names (422, 409 for a state conflict).
Anonymous visitors are sent to the login page; a clerk gets 403.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable, Iterator, Mapping

from flask import Blueprint, Response, flash, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import select

from .accounts import may
from .context import require_csrf, session_user, state
from .domain import (
    CATEGORIES,
    DIRECTIONS,
    OPERATION_TYPES,
    PLAN_FIELDS,
    VESSEL_TEXT_FIELDS,
    VESSEL_TYPES,
    NotFoundError,
    OperationsError,
    iso,
)
from .store import Clerk, create_vessel_call, read_vessel_call, update_vessel_call
from .tables import tallies

#: The form's fields in the order shown; planned units are ``planned_<direction>_<category>``.
TEXT_FIELDS = tuple(VESSEL_TEXT_FIELDS)
CHOICE_FIELDS = {"vessel_type": tuple(VESSEL_TYPES), "operation_type": tuple(OPERATION_TYPES)}
TIME_FIELDS = ("planned_start", "planned_end")
CSV_COLUMNS = ("time", "direction", "category", "units", "zone", "shift", "clerk")
#: Cells starting with one of these are read as a formula by spreadsheet programs (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Rows fetched from the database at a time while streaming the CSV.
CSV_BATCH = 500


def form_to_payload(form: Mapping[str, str], *, partial: bool = False) -> dict[str, Any]:
    """The JSON API's vessel call payload for a submitted form (values as typed; the domain validates).

    Blank planned units count as 0. With ``partial`` (an edit), absent fields are left out (unchanged).
    """
    payload: dict[str, Any] = {}
    for name in TEXT_FIELDS + tuple(CHOICE_FIELDS) + TIME_FIELDS:
        value = form.get(name)
        if value is None and partial:
            continue
        payload[name] = (value or "").strip() or None
    planned_given = any(field in form for field in PLAN_FIELDS.values())
    if planned_given or not partial:
        payload["planned"] = {d: {c: (form.get(PLAN_FIELDS[(d, c)]) or "").strip() or 0 for c in CATEGORIES}
                              for d in DIRECTIONS}
    return payload


def form_field(api_field: str) -> str:
    """The form field an API error names: ``planned.discharge.auto`` -> ``planned_discharge_auto``."""
    return api_field.replace(".", "_")


def call_to_form(call: Mapping[str, Any]) -> dict[str, str]:
    """A vessel call (API shape) as form values (times as ``YYYY-MM-DDTHH:MM``, UTC)."""
    values = {name: str(call.get(name) or "") for name in TEXT_FIELDS + tuple(CHOICE_FIELDS)}
    for name in TIME_FIELDS:
        values[name] = (call.get(name) or "")[:16]
    for (direction, category), field in PLAN_FIELDS.items():
        values[field] = str(call["planned"][direction][category])
    return values


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text starting like a formula gets a leading ``'`` (OWASP)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_filename(vessel_name: str, call_id: int) -> str:
    """``aurora-leader-12-tallies.csv``: ASCII letters, digits and dashes only (a safe header value)."""
    slug = re.sub(r"[^a-z0-9]+", "-", vessel_name.lower()).strip("-")[:60] or "vessel"
    return f"{slug}-{call_id}-tallies.csv"


def csv_lines(rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The CSV text, a header row then one line per tally, yielded line by line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Iterable[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(c) for c in cells])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for row in rows:
        yield line((iso(row["tallied_at"]), row["direction"], row["category"], row["units"], row["zone"],
                    row["shift"], row["clerk"]))


def user_may(action: str) -> bool:
    """Whether the logged-in account may ``action`` (``tally``, ``manage``); False for anonymous visitors."""
    user = session_user()
    return user is not None and may(user.role, action)


def _manager() -> Any:
    """The logged-in manager; else a redirect to the login page (anonymous) or a 403 page (clerk)."""
    user = session_user()
    if user is None:
        return redirect(url_for("operations.login", next=request.path))
    if not may(user.role, "manage"):
        return render_template("operations/forbidden.html",
                               message=f"A {user.role} may not create or change vessel calls."), 403
    return user


def _form_page(values: Mapping[str, Any], errors: list[tuple[str, str]], call: Mapping[str, Any] | None = None,
               status: int = 200) -> Any:
    return render_template("operations/vessel_form.html", values=values, errors=errors,
                           field_errors={f: m for f, m in errors}, call=call, vessel_types=CHOICE_FIELDS["vessel_type"],
                           operation_types=CHOICE_FIELDS["operation_type"], plan_fields=PLAN_FIELDS), status


def build_manager_pages() -> Blueprint:
    """The blueprint of the managers' pages and the CSV export (templates are the operations pages')."""
    pages = Blueprint("operations_manager", __name__)
    # Jinja globals, set once (no per-request context processor): the vessel page's edit form uses them.
    pages.record_once(lambda setup: setup.app.jinja_env.globals.update(
        vessel_form_values=call_to_form, vessel_form_choices=CHOICE_FIELDS, vessel_plan_fields=PLAN_FIELDS,
        operations_may=user_may))
    _add_vessel_call_forms(pages)
    _add_tallies_csv(pages)

    @pages.errorhandler(NotFoundError)
    def not_found(exc: NotFoundError) -> Any:
        return render_template("operations/not_found.html", message=str(exc)), 404
    return pages


def _add_vessel_call_forms(pages: Blueprint) -> None:
    """Create and edit a vessel call through forms (managers only)."""

    @pages.get("/vessels/new")
    def new_vessel_call() -> Any:
        user = _manager()
        if not isinstance(user, Clerk):
            return user
        return _form_page({}, [])

    @pages.post("/vessels")
    def create_vessel_call_page() -> Any:
        require_csrf()
        user = _manager()
        if not isinstance(user, Clerk):
            return user
        try:
            call = create_vessel_call(state().engine, form_to_payload(request.form))
        except OperationsError as exc:
            return _form_page(request.form, [(form_field(e.field), e.message) for e in exc.errors],
                              status=exc.status)
        flash(f"Created {call['vessel_name']} (expected at berth {call['berth']})")
        return redirect(url_for("operations.vessel", call_id=call["id"]), code=303)

    @pages.post("/vessels/<record_id:call_id>")
    def update_vessel_call_page(call_id: int) -> Any:
        require_csrf()
        user = _manager()
        if not isinstance(user, Clerk):
            return user
        engine = state().engine
        try:
            call = update_vessel_call(engine, call_id, form_to_payload(request.form, partial=True))
        except NotFoundError:
            raise  # the 404 page, not a form
        except OperationsError as exc:
            return _form_page(request.form, [(form_field(e.field), e.message) for e in exc.errors],
                              call=read_vessel_call(engine, call_id), status=exc.status)
        flash(f"Saved {call['vessel_name']}")
        return redirect(url_for("operations.vessel", call_id=call_id), code=303)

    @pages.get("/vessels/<record_id:call_id>/edit")
    def edit_vessel_call(call_id: int) -> Any:
        user = _manager()
        if not isinstance(user, Clerk):
            return user
        call = read_vessel_call(state().engine, call_id)
        return _form_page(call_to_form(call), [], call=call)


def _add_tallies_csv(pages: Blueprint) -> None:
    """A vessel call's tallies as a streamed CSV download (any logged-in user)."""

    @pages.get("/vessels/<record_id:call_id>/tallies.csv")
    def tallies_csv(call_id: int) -> Any:
        if session_user() is None:
            return redirect(url_for("operations.login", next=request.path))
        engine = state().engine
        call = read_vessel_call(engine, call_id)  # 404 for an unknown call, before the download starts

        def rows() -> Iterator[Mapping[str, Any]]:
            # Streamed: the database hands rows over in batches, each line goes out as it is written,
            # so a call with a hundred thousand tallies never sits in memory whole.
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=CSV_BATCH).execute(
                    select(tallies).where(tallies.c.vessel_call_id == call_id)
                    .order_by(tallies.c.tallied_at, tallies.c.id))
                yield from result.mappings()

        response = Response(stream_with_context(csv_lines(rows())), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{csv_filename(call["vessel_name"], call_id)}"'
        return response
