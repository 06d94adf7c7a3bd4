"""The JSON API: vessel calls and tallies. Reads are open; writes need a bearer token.

Errors are JSON ``{"error", "message", "errors": [{"field", "message"}]}`` with 401
(no or unknown token), 403 (role may not), 404, 409 (state conflict), 422 (invalid value).
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .accounts import may
from .conditional import conditional_response
from .context import bearer_user, state
from .domain import FieldError, OperationsError, ValidationError
from .openapi import openapi_document
from .store import (
    Clerk,
    create_vessel_call,
    list_tallies,
    list_vessel_calls,
    post_tally,
    read_vessel_call,
    update_vessel_call,
)


def _error(status: int, kind: str, field: str, message: str) -> Any:
    return jsonify(error=kind, message=f"{field}: {message}", errors=[{"field": field, "message": message}]), status


def _writer(action: str) -> Clerk | Any:
    """The bearer token's account if it may ``action``; else the 401/403 response."""
    user = bearer_user()
    if user is None:
        response, status = _error(401, "unauthorized", "Authorization",
                                  "send 'Authorization: Bearer <token>' (tokens: stevedores users token NAME)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="stevedores-operations"'
        return response, status
    if not may(user.role, action):
        what = "manage vessel calls" if action == "manage" else "post tallies"
        return _error(403, "forbidden", "role", f"a {user.role} may not {what}")
    return user


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError(FieldError("body", "expected a JSON object (Content-Type: application/json)"))
    return body


def build_api(app: Flask, tally_limit: Callable[[Callable], Callable]) -> Blueprint:
    """The ``/api`` blueprint; ``tally_limit`` decorates the tally post (the rate limit)."""
    api = Blueprint("operations_api", __name__, url_prefix="/api")
    _add_error_handlers(api)
    _add_read_routes(api)
    _add_write_routes(api, tally_limit)
    return api


def _add_error_handlers(api: Blueprint) -> None:
    """Every error under /api answers JSON naming the field at fault (routing errors included)."""

    @api.errorhandler(OperationsError)
    def operations_error(exc: OperationsError) -> Any:
        return jsonify(exc.as_dict()), exc.status

    @api.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.response is not None:  # a response made by its raiser, e.g. the rate_limits service's 429
            return exc.response
        return _error(exc.code or 500, "http_error", "request", exc.description or exc.name)

    @api.app_errorhandler(NotFound)
    @api.app_errorhandler(MethodNotAllowed)
    def routing_error(exc: HTTPException) -> Any:
        """A URL under /api that matches no route (an id out of range, a typo) answers JSON too."""
        if request.path == "/api" or request.path.startswith("/api/"):
            response, status = http_error(exc)
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            return response, status
        return exc


def _add_read_routes(api: Blueprint) -> None:
    """The GET routes: the OpenAPI document, the summary, vessel calls and their tallies."""

    @api.get("/openapi.json")
    def openapi() -> Any:
        return jsonify(openapi_document())

    @api.get("/summary")
    def summary() -> Any:
        return conditional_response(*state().summary.current(), mimetype="application/json")

    @api.get("/vessel-calls")
    def vessel_calls_index() -> Any:
        return jsonify(vessel_calls=list_vessel_calls(state().engine, request.args.get("status") or None))

    @api.get("/vessel-calls/<record_id:call_id>")
    def vessel_call_show(call_id: int) -> Any:
        return jsonify(read_vessel_call(state().engine, call_id))

    @api.get("/vessel-calls/<record_id:call_id>/tallies")
    def tallies_index(call_id: int) -> Any:
        return jsonify(tallies=list_tallies(state().engine, call_id))


def _add_write_routes(api: Blueprint, tally_limit: Callable[[Callable], Callable]) -> None:
    """The writes: vessel calls (managers) and tallies (clerks, under ``tally_limit``)."""

    @api.post("/vessel-calls")
    def vessel_calls_create() -> Any:
        user = _writer("manage")
        if not isinstance(user, Clerk):
            return user
        call = create_vessel_call(state().engine, _json_body())
        return jsonify(call), 201, {"Location": f"/api/vessel-calls/{call['id']}"}

    @api.patch("/vessel-calls/<record_id:call_id>")
    def vessel_call_update(call_id: int) -> Any:
        user = _writer("manage")
        if not isinstance(user, Clerk):
            return user
        call = update_vessel_call(state().engine, call_id, _json_body())
        return jsonify(call)

    @api.post("/tallies")
    @tally_limit
    def tallies_create() -> Any:
        user = _writer("tally")
        if not isinstance(user, Clerk):
            return user
        body = _json_body()
        if "idempotency_key" not in body and request.headers.get("Idempotency-Key"):
            body["idempotency_key"] = request.headers["Idempotency-Key"]
        ops = state()
        tally, created = post_tally(ops.engine, body, user, shift_starts=ops.shift_starts)
        return jsonify(tally=tally, created=created), 201 if created else 200
