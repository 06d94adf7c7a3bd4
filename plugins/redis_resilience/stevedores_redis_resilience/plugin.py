"""Hook implementations of the redis_resilience plugin."""

from __future__ import annotations

from stevedores import Setting, Url, hookimpl


@hookimpl
def stevedores_settings() -> list[Setting]:
    """REDIS_URL: optional; without it the dashboard uses the in-memory fallback."""
    return [
        Setting("REDIS_URL", Url("redis", "rediss", example="redis://:password@host:6379/0"), None,
                "Redis for cache and rate limits (rediss:// verifies TLS). Unset: in-memory only.", secret=True),
    ]
