"""Testing kit for plugin authors (a pytest plugin, loaded through the pytest11 entry point).

Fixtures:
- ``stevedores_environ``: a clean settings environment for one test (SQLite in tmp, logs in tmp).
- ``make_stevedores_app``: build an app with a chosen set of plugins, extra plugin objects and env.
- ``stevedores_app`` / ``stevedores_client``: every installed plugin, and its Flask test client.
- ``stevedores_redis_server``: start real ``redis-server`` processes on free ports that a test may kill or pause.
- ``stevedores_redis_sentinel_group``: a master, a replica and a sentinel (real processes) that fail over.
- ``stevedores_gunicorn_server``: run the dashboard under real gunicorn on a free port.
- ``stevedores_postgres_database``: a database of its own on the shared PostgreSQL, dropped afterwards.

Helpers: :func:`free_port`, :class:`FakeClock`, :func:`http_get`,
:func:`require_service` (skip on a laptop, fail in CI),
:func:`wait_for_http`, :func:`temporary_postgres_database`, and
:func:`install_plugin_distribution` (a throwaway plugin with a real entry point, needing
neither pip nor setuptools); :func:`write_plugin_distribution` and :func:`pip_install_target`
build a source distribution with pip instead (setuptools must then be installed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeClock:
    """A clock a test moves by hand: ``clock()`` is ``clock.now`` (seconds, any origin).

    Pass it where code takes ``clock=time.monotonic``; set ``now`` or call :meth:`advance`.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """Status and body (text) of a GET on a new connection; an HTTP error status is returned, not raised.

    Raises OSError (``urllib.error.URLError``) when no answer came within ``timeout`` seconds.
    """
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def require_service(name: str, available: bool, how: str = "") -> None:
    """Skip (on a laptop) or fail (when CI=true) a test whose service is missing."""
    if available:
        return
    message = f"{name} is not available{': ' + how if how else ''}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI must provide it)")
    pytest.skip(message)


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers any HTTP status; raise with the reason if it never does."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def write_plugin_distribution(root: Path, entry_point: str, code: str, *, module: str | None = None,
                              distribution: str | None = None, version: str = "0.0.1",
                              requires: Sequence[str] = ("stevedores-dashboard",)) -> Path:
    """Write the source of a one-module plugin distribution under ``root`` and return its folder.

    The module (named ``module``, by default after the entry point) holds ``code``; the
    distribution registers it as ``entry_point`` in the ``stevedores`` group.
    """
    module = module or entry_point
    src = root / f"{entry_point}-src"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(code)
    dependencies = ", ".join(f'"{r}"' for r in requires)
    (src / "pyproject.toml").write_text(f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "{distribution or entry_point.replace('_', '-')}"
version = "{version}"
dependencies = [{dependencies}]
[project.entry-points.stevedores]
{entry_point} = "{module}"
""")
    return src


def pip_install_target(site: Path, *sources: Path | str) -> Path:
    """pip-install source folders into ``site`` (not into the running environment); return ``site``.

    Put ``site`` on PYTHONPATH of a subprocess (gunicorn, the CLI) to make its entry
    points visible there only.
    """
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *map(str, sources)], check=True, timeout=180)
    return site


def install_plugin_distribution(site: Path, entry_point: str, code: str, *, module: str | None = None,
                                distribution: str | None = None, version: str = "0.0.1",
                                requires: Sequence[str] = ("stevedores-dashboard",)) -> Path:
    """Install a throwaway one-module plugin distribution into ``site``; return ``site``.

    Written as pip would leave it (the module, and a ``.dist-info`` with its metadata and
    its ``stevedores`` entry point ``entry_point = module``), without pip or a build backend:
    it works in a fresh virtualenv that has neither setuptools nor network access. Put
    ``site`` on PYTHONPATH of a subprocess (gunicorn, the CLI) to load the plugin through
    its real entry point there only. ``module`` defaults to the entry point name,
    ``distribution`` to it with ``-`` for ``_``.
    """
    module = module or entry_point
    name = distribution or entry_point.replace("_", "-")
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text(code)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    requirements = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requirements}")
    (info / "entry_points.txt").write_text(f"[stevedores]\n{entry_point} = {module}\n")
    (info / "INSTALLER").write_text("stevedores.testing\n")
    (info / "RECORD").write_text("")
    return site


@pytest.fixture
def stevedores_environ(tmp_path: Path) -> dict[str, str]:
    """Settings for a test app: testing profile, SQLite and logs under tmp_path, strict plugins."""
    return {
        "FLASK_ENV": "testing",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'stevedores.sqlite3'}",
        "LOG_FILE": str(tmp_path / "logs" / "stevedores_dashboard.log"),
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "WEB_WORKERS": "2",  # light servers on small CI machines; tests that size workers set their own
        "SHUTDOWN_DRAIN_SECONDS": "0",  # stop at once, even in the production profile; drain tests set their own
        # A plugin that breaks must fail the test, not quietly drop out of the app; tests of
        # failure isolation set it to "0".
        "STEVEDORES_STRICT_PLUGINS": "1",
    }


@pytest.fixture
def make_stevedores_app(stevedores_environ: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_stevedores_app(plugins=None, env=None, extra_plugins=())``.

    ``plugins`` is a list of entry-point plugin names to load (None: all installed,
    ``[]``: none); ``extra_plugins`` are ``(name, object)`` pairs registered directly;
    ``env`` adds or overrides settings. Every app is shut down after the test.
    """
    from .app import create_app

    apps: list[Any] = []

    def make(plugins: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
             extra_plugins: Sequence[tuple[str, object]] = ()) -> Any:
        environ = dict(stevedores_environ)
        if plugins:
            environ["STEVEDORES_PLUGINS"] = ",".join(list(plugins) + [n for n, _ in extra_plugins])
        environ.update(env or {})
        app = create_app(environ, load_entry_points=plugins != [], extra_plugins=extra_plugins)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["stevedores"].shutdown(app)


@pytest.fixture
def stevedores_app(make_stevedores_app: Callable[..., Any]) -> Any:
    """An app with every installed plugin."""
    return make_stevedores_app()


@pytest.fixture
def stevedores_client(stevedores_app: Any) -> Any:
    """Flask test client of ``stevedores_app``."""
    return stevedores_app.test_client()


class RedisServer:
    """A private ``redis-server`` on a free port, for tests that break Redis."""

    def __init__(self, workdir: Path, extra_args: Sequence[str] = (), config_file: Path | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.config_file = config_file
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or restart) on the same port and wait until it answers PING."""
        binary = shutil.which("redis-server")
        require_service("redis-server binary", binary is not None, "install the redis-server package")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, *([str(self.config_file)] if self.config_file else []), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: the server vanishes (connections reset, new ones refused)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the server hangs (connections accepted by the kernel, never answered)."""
        if self.proc:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Kill and start again on the same port (empty dataset)."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Clean up: resume if paused, then kill."""
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.kill()


@pytest.fixture
def stevedores_redis_server(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Factory starting private redis-servers; all are killed after the test."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 35.0) -> int | None:
    """Stop a server started with ``start_new_session=True``: ``sig`` (SIGTERM, not SIGINT: shells start
    background jobs with SIGINT ignored, and children inherit that), wait up to ``timeout`` seconds, then
    SIGKILL its whole process group. Returns the exit code (negative: killed by that signal)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(5)


class SentinelGroup:
    """A Redis master, one replica and ``sentinels`` ``redis-server --sentinel`` processes on
    free ports, quorum 1, a master declared down after ``down_after_ms``: kill the master
    and a sentinel promotes the replica (about 1-3 s with the defaults)."""

    SERVICE = "stevedores"

    def __init__(self, workdir: Path, sentinels: int = 1, down_after_ms: int = 1000) -> None:
        self.workdir = workdir
        self.master = RedisServer(workdir / "master")
        self.replica = RedisServer(workdir / "replica", ["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinels = [RedisServer(workdir / f"sentinel-{i}", ["--sentinel"], workdir / f"sentinel-{i}.conf")
                          for i in range(sentinels)]
        self.down_after_ms = down_after_ms

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<port>[,...]/<service>/0`` (the form limits reads)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self, timeout: float = 15.0) -> SentinelGroup:
        """Start master, replica (waits for the initial sync) and sentinels (wait until they see the replica)."""
        self.master.start()
        self.replica.start()
        self._wait(lambda: b"master_link_status:up" in self._ask(self.replica.port, b"INFO replication"), timeout,
                   "the replica never synced with the master")
        for sentinel in self.sentinels:
            self.workdir.mkdir(parents=True, exist_ok=True)
            assert sentinel.config_file is not None  # a sentinel rewrites its own configuration file
            sentinel.config_file.write_text(f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
                                            f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                                            f"sentinel failover-timeout {self.SERVICE} 5000\n")
            sentinel.start()
        for sentinel in self.sentinels:
            self._wait(lambda s=sentinel: b"slaves=1" in self._ask(s.port, b"INFO sentinel"), timeout,
                       "a sentinel never discovered the replica")
        return self

    def master_port(self) -> int:
        """The port of the master the first live sentinel names now."""
        for sentinel in self.sentinels:
            try:
                reply = self._ask(sentinel.port, f"SENTINEL get-master-addr-by-name {self.SERVICE}".encode())
            except OSError:
                continue
            return int(reply.split(b"\r\n")[4])
        raise RuntimeError("no sentinel answers")

    def fail_over(self, timeout: float = 20.0) -> None:
        """kill -9 the master and wait until a sentinel names the replica as the new master."""
        self.master.kill()
        self._wait(lambda: self.master_port() == self.replica.port, timeout, "the sentinel never promoted the replica")

    def stop(self) -> None:
        """Kill every process of the group."""
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()

    @staticmethod
    def _ask(port: int, command: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(command + b"\r\n")
            time.sleep(0.05)
            return sock.recv(65536)

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.1)
        raise TimeoutError(failure)


@pytest.fixture
def stevedores_redis_sentinel_group(tmp_path: Path) -> Iterator[Callable[..., SentinelGroup]]:
    """Factory: ``stevedores_redis_sentinel_group(sentinels=1, down_after_ms=1000)`` starts a group;
    every group is stopped after the test."""
    groups: list[SentinelGroup] = []

    def start(sentinels: int = 1, down_after_ms: int = 1000) -> SentinelGroup:
        group = SentinelGroup(tmp_path / f"sentinel-group-{len(groups)}", sentinels, down_after_ms)
        groups.append(group)
        try:
            return group.start()
        except Exception:
            group.stop()
            raise

    yield start
    for group in groups:
        group.stop()


class GunicornServer:
    """The dashboard under real gunicorn (``stevedores.gunicorn_conf``) on a free port."""

    def __init__(self, env: Mapping[str, str], workdir: Path, app: str = "stevedores.wsgi:application",
                 config: str = "python:stevedores.gunicorn_conf") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = {**os.environ, **env, "PORT": str(self.port)}
        self.args = [sys.executable, "-m", "gunicorn", "-c", config, app]
        self.log_path = workdir / f"gunicorn-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/", timeout: float = 30.0) -> GunicornServer:
        """Start and wait until ``ready_path`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.workdir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_http(self.url + ready_path, timeout, self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- gunicorn log ---\n{self.log()}") from exc
        return self

    def log(self) -> str:
        """Everything gunicorn and the app printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def booted_workers(self) -> list[int]:
        """Pids of the workers gunicorn's log says it booted, oldest first (replaced ones included)."""
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.log())]

    def wait_for_workers(self, count: int, timeout: float = 20.0) -> list[int]:
        """Wait until the log shows ``count`` worker boots; their pids (see :meth:`booted_workers`).

        ``/`` answering means one worker is up, not all of them: a test that needs every
        worker waits here. Raises AssertionError, with the log, after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while len(self.booted_workers()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        booted = self.booted_workers()
        assert len(booted) >= count, f"{len(booted)} of {count} workers booted\n{self.log()}"
        return booted

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 35.0) -> int | None:
        """Send ``sig`` to the master and wait; SIGKILL the group if it does not exit."""
        return stop_process(self.proc, sig, timeout) if self.proc is not None else None


@pytest.fixture
def stevedores_gunicorn_server(tmp_path: Path,
                               stevedores_environ: dict[str, str]) -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``stevedores_gunicorn_server(env=None, ready_path="/")`` starts the dashboard under gunicorn.

    The test environment (``stevedores_environ``) is applied, then ``env``. Every
    server is stopped after the test.
    """
    servers: list[GunicornServer] = []

    def start(env: Mapping[str, str] | None = None, ready_path: str = "/", **kwargs: Any) -> GunicornServer:
        server = GunicornServer({**stevedores_environ, **(env or {})}, tmp_path / "gunicorn", **kwargs)
        servers.append(server)
        return server.start(ready_path)

    yield start
    for server in servers:
        server.stop()


#: Where the shared PostgreSQL is (trust auth); TEST_POSTGRES_ADMIN_URL overrides it.
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def temporary_postgres_database(prefix: str = "stevedores_test") -> Iterator[str]:
    """Create a uniquely named database on the shared PostgreSQL; yield its URL; drop it."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is missing
        admin.dispose()
        require_service("PostgreSQL", False, str(exc).splitlines()[0])
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def stevedores_postgres_database() -> Iterator[str]:
    """URL of a fresh database on the shared PostgreSQL, dropped after the test."""
    with temporary_postgres_database() as url:
        yield url
