"""The security plugin's settings and their parsers (every bad value names the setting)."""

from __future__ import annotations

from stevedores import Setting
from stevedores.settings import Int, RateLimit

from .csp import CspPolicySetting

DEFAULT_RATE_LIMITS = "1000 per hour;100 per minute"


class PathPrefixes:
    """Comma-separated URL path prefixes, each starting with '/'."""

    expected = "comma-separated path prefixes starting with '/', e.g. /healthz,/ping"

    def __call__(self, raw: str) -> tuple[str, ...]:
        prefixes = tuple(part.strip() for part in raw.split(",") if part.strip())
        bad = [p for p in prefixes if not p.startswith("/")]
        if bad:
            raise ValueError(f"expected {self.expected}; {bad[0]!r} does not start with '/'")
        return prefixes


SETTINGS: tuple[Setting, ...] = (
    Setting("RATE_LIMITS", RateLimit(allow_none=True), DEFAULT_RATE_LIMITS,
            "Rate limits per client address across the whole app (all routes share one budget), "
            "';'-separated; 'none' turns them off. Probe routes are never limited."),
    Setting("RATE_LIMIT_INSTANCES", Int(min=1, max=1000), 1,
            "How many instances (gunicorn masters) serve this app. When Redis cannot count, each instance "
            "counts for all of its workers and enforces RATE_LIMITS divided by this number, so the fleet "
            "still allows about the configured total; with Redis the full limits hold across the fleet."),
    Setting("CSP_POLICY", CspPolicySetting(), None,
            "Content-Security-Policy replacing the default, as a JSON object of directives; "
            "validated at start-up. script-src/style-src get per-request nonces."),
    Setting("SECURITY_EXEMPT_PATHS", PathPrefixes(), (),
            "Extra path prefixes treated like @infrastructure routes (never rate limited nor redirected "
            "to HTTPS), for probe routes a third-party plugin did not mark."),
)


def under_exempt_path(path: str, exempt_paths: tuple[str, ...]) -> bool:
    """True when ``path`` is one of ``exempt_paths`` or below one (whole segments: /health
    covers /health/x, never /healthcare)."""
    bases = (p.rstrip("/") for p in exempt_paths)
    return any(path == base or path.startswith(base + "/") for base in bases)
