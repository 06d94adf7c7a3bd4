"""Hook implementations of the security plugin."""

from __future__ import annotations

from typing import Any

from stevedores import Middleware, Setting, Str, hookimpl


@hookimpl
def stevedores_settings() -> list[Setting]:
    """Rate limits."""
    return [
        Setting("RATE_LIMITS", Str(), "1000 per hour;100 per minute", "Rate limits per client, ';'-separated."),
    ]


def _basic_headers(response: Any) -> Any:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@hookimpl
def stevedores_middleware() -> list[Middleware]:
    """Baseline security headers on every response."""
    return [Middleware("basic-headers", order=100, after_request=_basic_headers)]
