"""Hook implementations of the health plugin."""

from __future__ import annotations

from flask import Flask, jsonify

from stevedores import MenuLink, hookimpl, infrastructure


@hookimpl
def stevedores_startup(app: Flask) -> None:
    """Liveness probe: the process answers; no dependency is checked."""

    @app.get("/health/live")
    @infrastructure
    def health_live():  # noqa: ANN202
        response = jsonify(status="alive")
        response.headers["Cache-Control"] = "no-store"
        return response


@hookimpl
def stevedores_menu_links() -> list[MenuLink]:
    """Offer the liveness probe on the landing page."""
    return [MenuLink("Liveness probe", "/health/live", "The process answers (for load balancers).")]
