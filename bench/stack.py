"""The assembled dashboard under real gunicorn, with a PostgreSQL database and a
redis-server of its own, for benchmarks and fault drills."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from stevedores.testing import GunicornServer, RedisServer, pip_install_target, temporary_postgres_database

HERE = Path(__file__).resolve().parent

#: What the TLS-terminating load balancer in front of a production instance adds
#: (the stack trusts one proxy): without it the production profile redirects to HTTPS.
BEHIND_TLS_PROXY = {"X-Forwarded-Proto": "https"}


@dataclass
class Stack:
    """The running dashboard and what it depends on."""

    server: GunicornServer
    redis: RedisServer
    database_url: str
    workdir: Path


def install_drill_plugin(target: Path) -> Path:
    """pip-install the drill routes (slow requests, memory kept) with a real entry point."""
    return pip_install_target(target, HERE / "drill_plugin")


def base_env(database_url: str, redis_url: str, workdir: Path) -> dict[str, str]:
    """Production profile settings for a benchmark or drill server."""
    return {
        "FLASK_ENV": "production", "SECRET_KEY": "bench-" + "k" * 40, "DATABASE_URL": database_url,
        "REDIS_URL": redis_url, "LOG_FILE": str(workdir / "logs" / "app.log"),
        # Load comes from one address: the per-client limits would refuse almost everything.
        "RATE_LIMITS": "10000000 per minute", "TRUSTED_PROXIES": "1",
        # Servers stop at once; a drill that is about draining sets its own (see DRILL_ENV).
        "SHUTDOWN_DRAIN_SECONDS": "0",
    }


def start_stack(stack: ExitStack, workdir: Path, env: dict[str, str] | None = None,
                drill_routes: bool = False, app: str = "stevedores.wsgi:application") -> Stack:
    """Database, Redis and gunicorn, each cleaned up by ``stack``."""
    database_url = stack.enter_context(temporary_postgres_database("stevedores_bench"))
    redis = RedisServer(workdir / "redis").start()
    stack.callback(redis.stop)
    server_env = base_env(database_url, redis.url, workdir)
    if drill_routes:
        server_env["PYTHONPATH"] = str(install_drill_plugin(workdir / "site"))
    server_env.update(env or {})
    server = GunicornServer(server_env, workdir / "gunicorn", app=app)
    server.env["PYTHONPATH"] = ":".join(p for p in (str(HERE.parent), server.env.get("PYTHONPATH", "")) if p)
    stack.callback(server.stop)
    server.start("/health/live" if app.startswith("stevedores") else "/bare")
    return Stack(server, redis, database_url, workdir)
