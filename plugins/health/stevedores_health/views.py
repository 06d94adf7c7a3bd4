"""The routes: /health, /health/quick, /health/live, /health/ready, /status, /status.json.

Probe routes are marked ``@infrastructure`` (never rate limited nor redirected to
HTTPS). Health answers are JSON with ``Cache-Control: no-store``; operators (OPS_TOKEN
in the Authorization header) get full error texts and every figure, everyone else a
scrubbed summary with the figures each check declared public (``HealthCheck.public``: the
deployment guide's fields), never process, host or pool internals. /health and
/health/ready reuse a result up to HEALTH_CACHE_SECONDS old.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response, current_app, render_template, request

from stevedores import infrastructure, is_draining, is_operator, operator_only
from stevedores.proxies import parse_address

from .report import FAILED, dumps
from .state import get_state
from .status_page import shown, status_data

JSON = "application/json"
_STARTED = time.monotonic()
#: What /health/ready and /health/quick answer (503) while the instance drains after SIGTERM.
DRAINING_BODY = dumps({"status": "not_ready", "reason": "draining"})


def _json(body: str | bytes, status: int, **headers: str) -> Response:
    response = Response(body, status=status, mimetype=JSON)
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _documented_only() -> bool:
    """Anonymous callers see only the figures checks declared public, except a loopback caller
    in the development profile (``make run`` serves on 127.0.0.1): there the newcomer sees
    everything. Keyed on the caller too, because ``serve --dev --host 0.0.0.0`` would otherwise
    show PIDs, load and pool internals to the network."""
    if current_app.extensions["stevedores"].config.profile != "development":
        return True
    address = parse_address(request.remote_addr)
    return address is None or not address.is_loopback


def create_blueprint() -> Blueprint:
    """A fresh blueprint for one app (templates and the status page's static files)."""
    bp = Blueprint("health", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/health-assets")
    _add_probes(bp)
    _add_status_page(bp)
    return bp


def _add_probes(bp: Blueprint) -> None:
    """/health, /health/quick, /health/live and /health/ready (JSON; infrastructure routes)."""

    @bp.get("/health")
    @infrastructure
    def comprehensive() -> Response:
        """Every check, run now (concurrently, each within its timeout) unless a result at most
        HEALTH_CACHE_SECONDS old exists. Anonymous callers get the figures checks declared public."""
        report = get_state(current_app).recent_all()
        return _json(dumps(report.as_dict(operator=is_operator(), documented_only=_documented_only())),
                     report.http_status)

    @bp.get("/health/quick")
    @infrastructure
    def quick() -> Response:
        """The last comprehensive result (statuses; operators get everything) and its age.

        Never waits on a dependency once a snapshot exists. 503 ``draining`` after SIGTERM.
        """
        if is_draining():
            return _json(DRAINING_BODY, 503)
        report = get_state(current_app).snapshot.current()
        age = report.age()
        if is_operator():
            body: str | bytes = dumps({**report.as_dict(operator=True), "age_seconds": round(age, 3), "cached": True})
        else:
            body = report.quick_json_with_age(age)
        return _json(body, report.http_status, Age=str(int(age)))

    @bp.get("/health/live")
    @infrastructure
    def live() -> Response:
        """Liveness: the process answers. No dependency is checked, on purpose. The pid is for operators."""
        body: dict[str, object] = {"status": "alive", "uptime_seconds": round(time.monotonic() - _STARTED, 1)}
        if is_operator():
            body["pid"] = os.getpid()
        return _json(dumps(body), 200)

    @bp.get("/health/ready")
    @infrastructure
    def ready() -> Response:
        """Readiness: not draining (SIGTERM received) and every critical check passes (run now).

        A 503 names its ``reason``: ``draining``, or the critical checks that failed.
        """
        if is_draining():
            return _json(DRAINING_BODY, 503)
        report = get_state(current_app).recent_critical()
        body = {"status": "ready" if report.critical_ok else "not_ready", "timestamp": report.iso_timestamp,
                "checks": report.as_dict(operator=is_operator(), documented_only=_documented_only())["checks"]}
        if not report.critical_ok:
            failed = [r.name for r in report.results if r.critical and r.outcome == FAILED]
            body["reason"] = "critical check failed: " + ", ".join(failed)
        return _json(dumps(body), 200 if report.critical_ok else 503)


def _add_status_page(bp: Blueprint) -> None:
    """/status (HTML) and /status.json (its refresh), operator-only when OPS_TOKEN is set."""

    @bp.get("/status")
    @operator_only(open_without_token=True)
    def status_page() -> Response:
        """The operators' status page (HTML; refreshes itself through static/status.js)."""
        state = get_state(current_app)
        data = status_data(state, state.snapshot.current(), operator=is_operator())
        page = render_template("health/status.html", data=data, h=data["health"], show=shown, initial=dumps(data))
        response = Response(page, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/status.json")
    @operator_only(open_without_token=True)
    def status_json() -> Response:
        """What the status page shows, for its refresh script."""
        state = get_state(current_app)
        return _json(dumps(status_data(state, state.snapshot.current(), operator=is_operator())), 200)
