"""The health plugin's settings (environment variables)."""

from __future__ import annotations

from stevedores import Float, Int, Setting

SETTINGS: list[Setting] = [
    Setting("HEALTH_QUICK_TTL", Float(min=1, max=3600), 30.0,
            "Seconds after which /health/quick refreshes its snapshot in the background (it answers at once)."),
    Setting("HEALTH_REFRESH_INTERVAL", Float(min=1, max=3600), 15.0,
            "Seconds between background health runs in each worker (feeds /health/quick)."),
    Setting("HEALTH_DATABASE_TIMEOUT", Float(min=0.1, max=60), 3.0,
            "Timeout of the database health check in seconds."),
    Setting("HEALTH_DISK_MIN_FREE_PERCENT", Float(min=0, max=100), 10.0,
            "The system check warns when free disk space falls below this percentage."),
    Setting("HEALTH_LOAD_WARN_PER_CPU", Float(min=0.1, max=1000), 2.0,
            "The system check warns when the 1-minute load average per available CPU exceeds this."),
    Setting("HEALTH_STATUS_REFRESH", Int(min=1, max=3600), 10,
            "Seconds between refreshes of the /status page."),
    Setting("HEALTH_CACHE_SECONDS", Float(min=0, max=60), 1.0,
            "Seconds a /health or /health/ready result is reused within a worker, so that a flood of "
            "requests cannot run every check per request (0: run them on every request)."),
]
