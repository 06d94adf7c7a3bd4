"""The assembled dashboard under real gunicorn, with a PostgreSQL database and a
redis-server of its own, for benchmarks and fault drills."""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
import tomllib

from stevedores.testing import GunicornServer, RedisServer, temporary_postgres_database

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
    """Install the drill routes (slow requests, memory kept) into ``target`` with a real entry point.

    What ``pip install --target`` would lay down for this one-module distribution (the package
    and a ``.dist-info`` with METADATA and entry_points.txt, read from its pyproject.toml),
    written directly: pip took ~4 s of a loaded 2-core machine per stack, every drill and soak.
    """
    project = tomllib.loads((HERE / "drill_plugin" / "pyproject.toml").read_text())["project"]
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(HERE / "drill_plugin" / "stevedores_drill", target / "stevedores_drill", dirs_exist_ok=True)
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items())
        for group, points in project["entry-points"].items()))
    return target


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
                drill_routes: bool = False, app: str = "stevedores.wsgi:application",
                config: str = "python:stevedores.gunicorn_conf",
                wrap: Callable[[list[str]], list[str]] | None = None) -> Stack:
    """Database, Redis and gunicorn, each cleaned up by ``stack``; ``wrap`` rewrites gunicorn's
    command line (e.g. to start it inside a memory cgroup, see bench/memory_cgroup.py)."""
    database_url = stack.enter_context(temporary_postgres_database("stevedores_bench"))
    redis = RedisServer(workdir / "redis").start()
    stack.callback(redis.stop)
    server_env = base_env(database_url, redis.url, workdir)
    if drill_routes:
        server_env["PYTHONPATH"] = str(install_drill_plugin(workdir / "site"))
    server_env.update(env or {})
    server = GunicornServer(server_env, workdir / "gunicorn", app=app, config=config)
    server.env["PYTHONPATH"] = ":".join(p for p in (str(HERE.parent), server.env.get("PYTHONPATH", "")) if p)
    if wrap is not None:
        server.args = wrap(server.args)
    stack.callback(server.stop)
    server.start("/health/live" if app.startswith("stevedores") else "/bare")
    return Stack(server, redis, database_url, workdir)


def served_shape(config_module: Path | None = None) -> tuple[str, int]:
    """``(worker_class, threads)`` of the dashboard's gunicorn configuration, read from its source.

    Read with ``ast`` (literal assignments), not imported: importing it sizes the workers and
    runs the plugins' server hooks (a metrics directory claimed by this process).
    """
    import stevedores

    path = config_module or Path(stevedores.__file__).resolve().parent / "gunicorn_conf.py"
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("worker_class", "threads"):
                    found[target.id] = node.value.value
    return str(found["worker_class"]), int(found["threads"])  # type: ignore[call-overload]


def start_plain_baseline(stack: ExitStack, workdir: Path, like: GunicornServer,
                         env_extra: dict[str, str] | None = None) -> GunicornServer:
    """``bench.bare_app`` under PLAIN gunicorn, shaped like the running server ``like``.

    ``gunicorn -w N -k <class> --threads T bench.bare_app:application``: the same worker
    count (as ``like``'s log announces it), worker class and threads, and nothing else of
    ours (no recycling, no preload hooks, no access log): what a user would run instead.
    ``env_extra`` adds to its environment (``BENCH_REDIS_URL`` for ``/bare/counted``). Cleaned up by ``stack``.
    """
    assert like.proc is not None
    announced = re.search(r"with (\d+) workers", like.log())  # the core's "Listening on ... with N workers"
    workers = int(announced.group(1)) if announced else len(psutil.Process(like.proc.pid).children())
    worker_class, threads = served_shape()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY"))}
    env["PYTHONPATH"] = str(HERE.parent)
    env.update(env_extra or {})
    server = GunicornServer(env, workdir)  # cwd = workdir: no ./gunicorn.conf.py is picked up there
    server.args = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", worker_class, "--threads",
                   str(threads), "-b", f"127.0.0.1:{server.port}", "bench.bare_app:application"]
    stack.callback(server.stop)
    server.start("/bare")
    return server


def plain_command(server: GunicornServer) -> str:
    """The baseline's command line as a user would type it."""
    return "gunicorn " + " ".join(server.args[3:])


def in_process_app(stack: ExitStack, workdir: Path) -> tuple[Any, int]:
    """The assembled app as a gunicorn worker serves it, to be called as a WSGI app in this process.

    Production profile, every installed plugin, a PostgreSQL database and a redis-server of its
    own (cleaned up by ``stack``) with the demo data; the worker start-up hooks have run (the change
    listener), and the shutdown hooks run when ``stack`` closes. Returns (app, a vessel call id).
    """
    from bench.bench_operations import _prepare
    from stevedores import create_app

    database_url = stack.enter_context(temporary_postgres_database("stevedores_bench"))
    redis = RedisServer(workdir / "redis").start()
    stack.callback(redis.stop)
    _busy, page_call, _token = _prepare(database_url, workdir)
    app = create_app({**base_env(database_url, redis.url, workdir), "WEB_WORKERS": "1"})
    runtime = app.extensions["stevedores"]
    runtime.worker_started(app)
    stack.callback(runtime.shutdown, app)
    time.sleep(1.0)  # the change listener's first heartbeat
    return app, page_call


def call_wsgi(app: Any, environ: dict[str, Any]) -> str:
    """One request to the WSGI ``app`` (a copy of ``environ``), body read and closed; its status line."""
    status: list[str] = []
    body = app(dict(environ), lambda s, _h, _e=None: status.append(s))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return status[0]
