"""The fleet: two dashboard instances behind HAProxy, sharing PostgreSQL and Redis, and its drills.

Topology (every process started here and stopped by the caller's ExitStack):

    clients --HTTPS--> HAProxy (deploy/haproxy.cfg, checks /health/ready)
                          |-- gunicorn -c gunicorn.conf.py wsgi:application  (instance 1)
                          '-- gunicorn ...                                    (instance 2)
    both instances --> TCP relay --> PostgreSQL (a database of the drill's own)
    each instance  --> its own TCP relay --> redis-server (or Sentinel: master, replica, sentinel)

Drills (``python -m bench.fleet [names]``, part of ``make drills``; the short forms run in
tests/test_fleet.py): rolling_restart, database_terminated, database_freeze,
redis_lost_by_one, redis_failover, slow_clients. Each prints its figures and verdict; a
full run writes the "Fleet drills" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import create_engine, text

from bench.loadgen import Load, Record, Stats
from bench.results import machine_line, write_section
from bench.tcp_proxy import TcpProxy
from stevedores.testing import (
    GunicornServer,
    RedisServer,
    SentinelGroup,
    free_port,
    require_service,
    stop_process,
    temporary_postgres_database,
)

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
OPS_TOKEN = "fleet-ops-token-" + "o" * 32
#: Slowest acceptable liveness answer while the database is frozen: the Docker HEALTHCHECK's
#: timeout, far below the freeze itself (before the bounded waits, probes hung for the whole
#: freeze). Typically under 100 ms; single answers near 3 s were seen at load average 19 on 2 cores.
LIVENESS_LIMIT = 5.0
#: Seconds HAProxy needs to notice a state change (inter 1s x fall/rise 2, plus one interval).
LB_NOTICE_SECONDS = 3.0


class Haproxy:
    """HAProxy from the system's packages running deploy/haproxy.cfg with TLS on a free port."""

    def __init__(self, workdir: Path, instances: list[str]) -> None:
        self.workdir = workdir
        self.port, self.http_port, self.stats_port = free_port(), free_port(), free_port()
        self.cert = workdir / "lb.pem"
        self.env = {**os.environ, "STEVEDORES_LB_BIND": f"127.0.0.1:{self.port}",
                    "STEVEDORES_LB_HTTP_BIND": f"127.0.0.1:{self.http_port}",
                    "STEVEDORES_LB_STATS_BIND": f"127.0.0.1:{self.stats_port}",
                    "STEVEDORES_LB_CERT": str(self.cert),
                    **{f"STEVEDORES_APP{i + 1}": address for i, address in enumerate(instances)}}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the drill's self-signed certificate (verified, host name checked)."""
        return ssl.create_default_context(cafile=str(self.workdir / "lb-cert.pem"))

    def start(self, timeout: float = 10.0) -> Haproxy:
        """Make a self-signed certificate, start HAProxy in the foreground, wait for the stats page."""
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        require_service("haproxy", Path(binary).exists(), "install the haproxy package")
        self.workdir.mkdir(parents=True, exist_ok=True)
        key, cert = self.workdir / "lb-key.pem", self.workdir / "lb-cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=30)
        self.cert.write_bytes(cert.read_bytes() + key.read_bytes())
        self.log_path = self.workdir / "haproxy.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CONFIG)], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log_path.read_text(errors='replace')}")
            try:
                self.server_states()
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("haproxy did not start")

    def server_states(self) -> dict[str, str]:
        """``{"app1": "UP", "app2": "DOWN", ...}`` from the stats page's CSV."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2) as response:
            rows = response.read().decode().splitlines()
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("pxname") == "stevedores" and values.get("svname") not in ("BACKEND", "FRONTEND"):
                states[values["svname"]] = values["status"].split()[0]
        return states

    def wait_for(self, server: str, state: str, timeout: float = 30.0) -> float:
        """Wait until HAProxy reports ``server`` in ``state`` (UP/DOWN); return the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.server_states().get(server) == state:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"HAProxy never saw {server} {state}: {self.server_states()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None:
            stop_process(self.proc, timeout=10)


@dataclass
class Fleet:
    """The running fleet and what it depends on."""

    instances: list[GunicornServer]
    lb: Haproxy
    database_url: str  # straight to PostgreSQL (the instances go through database_proxy)
    database_proxy: TcpProxy
    redis: RedisServer | None
    sentinel: SentinelGroup | None
    redis_proxies: list[TcpProxy]
    token: str
    call_id: int
    workdir: Path


def start_fleet(stack: ExitStack, workdir: Path, *, sentinel: bool = False, env: dict[str, str] | None = None,
                workers: int = 2) -> Fleet:
    """Start the whole topology; every process is stopped by ``stack`` (SIGTERM first)."""
    from bench.bench_operations import _prepare
    from bench.stack import HERE

    database_url = stack.enter_context(temporary_postgres_database("stevedores_fleet"))
    call_id, _page_call, token = _prepare(database_url, workdir)
    database_proxy = TcpProxy(("127.0.0.1", 5432)).start()
    stack.callback(database_proxy.close)
    relayed_database_url = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{database_proxy.port}")
    redis: RedisServer | None = None
    group: SentinelGroup | None = None
    redis_proxies: list[TcpProxy] = []
    if sentinel:
        group = SentinelGroup(workdir / "sentinel")
        stack.callback(group.stop)
        group.start()
        redis_urls = [group.url, group.url]
    else:
        redis = RedisServer(workdir / "redis").start()
        stack.callback(redis.stop)
        for _ in range(2):
            proxy = TcpProxy(("127.0.0.1", redis.port)).start()
            stack.callback(proxy.close)
            redis_proxies.append(proxy)
        redis_urls = [f"redis://127.0.0.1:{p.port}/0" for p in redis_proxies]
    instances: list[GunicornServer] = []
    stack.callback(_stop_instances, instances)
    for i, redis_url in enumerate(redis_urls):
        server_env = {
            "FLASK_ENV": "production", "SECRET_KEY": "fleet-" + "s" * 40, "OPS_TOKEN": OPS_TOKEN,
            "DATABASE_URL": relayed_database_url, "REDIS_URL": redis_url, "WEB_WORKERS": str(workers),
            "LOG_FILE": str(workdir / f"instance-{i + 1}" / "app.log"), "TRUSTED_PROXIES": "1",
            "FORWARDED_ALLOW_IPS": "127.0.0.1", "RATE_LIMITS": "10000000 per minute",
            "OPERATIONS_TALLY_RATE_LIMIT": "10000000 per minute", "REDIS_BREAKER_RECOVERY_TIMEOUT": "2",
            "GUNICORN_MAX_REQUESTS": "0", "PYTHONPATH": str(HERE.parent), **(env or {}),
        }
        server = GunicornServer(server_env, workdir / f"instance-{i + 1}", app="wsgi:application",
                                config=str(REPO / "gunicorn.conf.py"))
        server.env["PYTHONPATH"] = str(REPO)
        instances.append(server)
        server.start("/health/live")
    lb = Haproxy(workdir / "haproxy", [f"127.0.0.1:{s.port}" for s in instances])
    stack.callback(lb.stop)
    lb.start()
    for name in ("app1", "app2"):
        lb.wait_for(name, "UP")
    return Fleet(instances, lb, database_url, database_proxy, redis, group, redis_proxies, token, call_id, workdir)


def _stop_instances(instances: list[GunicornServer]) -> None:
    """Stop every instance at once: SIGTERM to all (each starts draining), then a second SIGTERM
    each through ``stop()``, which skips the rest of the drain and waits for the graceful stop."""
    for server in instances:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    for server in instances:
        server.stop(signal.SIGTERM)


# --- load -----------------------------------------------------------------------------


class FleetLoad(Load):
    """Closed-loop HTTPS clients through the balancer (bench/loadgen.py's Load over TLS):
    ``readers`` GET ``paths`` in turn, ``writers`` POST tallies with a fresh idempotency
    key each; every request recorded, every acknowledged key kept in ``acknowledged``."""

    def __init__(self, fleet: Fleet, readers: int = 8, writers: int = 0,
                 paths: tuple[str, ...] = ("/api/vessel-calls", "/"), timeout: float = 30.0) -> None:
        super().__init__(fleet.lb.url, paths, clients=readers + writers, timeout=timeout)
        self.fleet, self.readers = fleet, readers
        self.acknowledged: list[str] = []
        self._context = fleet.lb.ssl_context()

    def _client(self, index: int) -> None:
        writes = index >= self.readers
        conn: http.client.HTTPSConnection | None = None
        n = index
        while not self._stop.is_set():
            n += 1
            key = uuid.uuid4().hex
            if writes:
                method, path = "POST", "/api/tallies"
                body = json.dumps({"vessel_call_id": self.fleet.call_id, "direction": "discharged",
                                   "category": "auto", "units": 1, "zone": "F1", "idempotency_key": key})
                headers = {"Authorization": f"Bearer {self.fleet.token}", "Content-Type": "application/json"}
            else:
                method, path, body, headers = "GET", self.paths[n % len(self.paths)], None, {}
            started = self.now()
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", self.fleet.lb.port, timeout=self.timeout,
                                                       context=self._context)
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                record = Record(started, self.now() - started, f"{method} {path}", response.status)
                if writes and record.ok:
                    with self._lock:
                        self.acknowledged.append(key)
            except (OSError, http.client.HTTPException) as exc:
                record = Record(started, self.now() - started, f"{method} {path}", None,
                                f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            with self._lock:
                self.stats.records.append(record)
            time.sleep(0.02)  # users, not a flood: the drills measure survival, not throughput
        if conn is not None:
            conn.close()


def probe(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int | None, float]:
    """(status or None, seconds) of one GET straight to an instance."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int | None = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = None
    return status, time.monotonic() - started


def instance_health(server: GunicornServer) -> dict[str, Any]:
    """The full /health of one instance (operator token: every figure)."""
    request = urllib.request.Request(server.url + "/health", headers={
        "Authorization": f"Bearer {OPS_TOKEN}", "X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def error_lines(fleet: Fleet, limit: int = 30) -> str:
    """The last ERROR lines and exception messages of each instance's log (for a failed drill)."""
    parts = []
    for i, server in enumerate(fleet.instances):
        lines = [line for line in server.log().splitlines()
                 if " ERROR " in line or line.startswith(("sqlalchemy.", "psycopg.", "redis."))]
        parts.append(f"--- instance {i + 1}: {len(lines)} error lines, the last {min(limit, len(lines))} ---")
        parts.extend(lines[-limit:])
    return "\n".join(parts)


# --- drills ---------------------------------------------------------------------------


@dataclass
class FleetResult:
    """One drill's figures, its verdict and the reasons it failed."""

    name: str
    figures: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every promise held."""
        return not self.problems

    def line(self) -> str:
        """The printed summary."""
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.problems)
        return f"fleet {self.name:<20} {self.figures} -> {verdict}"


def _failure_kinds(stats: Stats) -> str:
    kinds: dict[str, int] = {}
    for r in stats.failures:
        kind = f"{r.path} {r.status or (r.error or '').split(':')[0]}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))


def drill_rolling_restart(fleet: Fleet, seconds: float) -> FleetResult:
    """SIGTERM each instance in turn under write load, start it again, wait until HAProxy has
    it back: 0 failed POSTs and every acknowledged tally in the database."""
    load = FleetLoad(fleet, readers=4, writers=6).start()
    time.sleep(min(2.0, seconds / 4))
    timings = []
    for i, server in enumerate(fleet.instances):
        name = f"app{i + 1}"
        started = time.monotonic()
        code = server.stop(signal.SIGTERM)
        stopped = time.monotonic() - started
        server.start("/health/live")
        fleet.lb.wait_for(name, "UP")
        timings.append(f"{name}: stopped in {stopped:.1f}s (exit {code}), back after {time.monotonic() - started:.1f}s")
    time.sleep(min(2.0, seconds / 4))
    stats = load.stop()
    from sqlalchemy import select
    from stevedores_operations.tables import tallies

    engine = create_engine(fleet.database_url)
    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(select(tallies.c.idempotency_key))}
    engine.dispose()
    lost = [key for key in load.acknowledged if key not in stored]
    posts = [r for r in stats.records if r.path.startswith("POST")]
    problems = []
    if stats.failures:
        problems.append(f"{len(stats.failures)} failed requests ({_failure_kinds(stats)})")
    if lost:
        problems.append(f"{len(lost)} acknowledged tallies not in the database")
    figures = (f"posts={len(posts)} acknowledged={len(load.acknowledged)} lost={len(lost)} "
               f"failed_posts={sum(not r.ok for r in posts)} {stats.summary()} [{'; '.join(timings)}]")
    return FleetResult("rolling_restart", figures, problems)


def drill_database_terminated(fleet: Fleet, seconds: float) -> FleetResult:
    """pg_terminate_backend on every connection of the fleet under read load: 0 errors on reads."""
    load = FleetLoad(fleet, readers=8, paths=("/api/vessel-calls", "/", f"/vessels/{fleet.call_id}")).start()
    admin = create_engine(fleet.database_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    database = fleet.database_url.rsplit("/", 1)[1]
    killed = 0
    for _ in range(3):
        time.sleep(seconds / 4)
        with admin.connect() as conn:
            killed += conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                        "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar()
    time.sleep(seconds / 4)
    admin.dispose()
    stats = load.stop()
    server_errors = [r for r in stats.records if not r.ok]
    problems = [f"{len(server_errors)} failed reads ({_failure_kinds(stats)})"] if server_errors else []
    return FleetResult("database_terminated", f"terminated={killed} in 3 rounds {stats.summary()}", problems)


def drill_database_freeze(fleet: Fleet, seconds: float, freeze: float = 15.0, limit: float = 11.0) -> FleetResult:
    """The network to PostgreSQL stops forwarding for ``freeze`` seconds: every request is
    answered (any status) within ``limit`` seconds, liveness stays 200 and quick, and reads
    succeed again after the thaw."""
    load = FleetLoad(fleet, readers=8, paths=("/api/vessel-calls", "/"), timeout=40).start()
    time.sleep(min(2.0, seconds / 4))
    liveness: list[tuple[int | None, float]] = []
    stop = threading.Event()

    def watch_liveness() -> None:
        while not stop.is_set():
            for server in fleet.instances:
                liveness.append(probe(server.url + "/health/live", timeout=LIVENESS_LIMIT + 1))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch_liveness, daemon=True)
    watcher.start()
    frozen_at = load.now()
    fleet.database_proxy.freeze()
    time.sleep(freeze)
    fleet.database_proxy.thaw()
    thawed_at = load.now()
    time.sleep(max(5.0, seconds / 3))
    stop.set()
    watcher.join(10)
    stats = load.stop()
    during = [r for r in stats.records if r.started + r.elapsed >= frozen_at and r.started <= thawed_at]
    slow = [r for r in during if r.elapsed > limit]
    recovered = [r for r in stats.records if r.started > thawed_at + 3]
    live_bad = [s for s, t in liveness if s != 200 or t > LIVENESS_LIMIT]
    problems = []
    if slow:
        problems.append(f"{len(slow)} requests took longer than {limit:.0f}s (" + ", ".join(
            f"{r.path} {r.status or r.error} after {r.elapsed:.1f}s, started {r.started - frozen_at:+.1f}s from "
            f"the freeze" for r in slow[:5]) + ")")
    if live_bad:
        problems.append(f"{len(live_bad)} of {len(liveness)} liveness probes failed or took > {LIVENESS_LIMIT} s")
    unexpected = [r for r in during if r.status is not None and r.status >= 500 and r.status != 503]
    if unexpected:
        problems.append(f"{len(unexpected)} answered with a server error other than 503 "
                        f"({', '.join(sorted({f'{r.path} {r.status}' for r in unexpected}))})")
    if not recovered or any(not r.ok for r in recovered):
        problems.append(f"reads did not recover after the thaw ({sum(not r.ok for r in recovered)} failed)")
    statuses: dict[str, int] = {}
    for r in during:
        statuses[str(r.status or "error")] = statuses.get(str(r.status or "error"), 0) + 1
    figures = (f"freeze={freeze:.0f}s during={len(during)} answered_by_status={statuses} "
               f"slowest_during={max((r.elapsed for r in during), default=0):.1f}s "
               f"liveness={len(liveness) - len(live_bad)}/{len(liveness)} ok, slowest "
               f"{max((t for _s, t in liveness), default=0) * 1000:.0f}ms; after thaw {len(recovered)} reads, "
               f"{sum(not r.ok for r in recovered)} failed")
    return FleetResult("database_freeze", figures, problems)


def drill_redis_lost_by_one(fleet: Fleet, seconds: float) -> FleetResult:
    """Instance 2's path to Redis dies (its relay closed): 0 user errors; it degrades alone."""
    assert fleet.redis_proxies, "needs the plain-Redis fleet"
    load = FleetLoad(fleet, readers=8, paths=("/", "/api/summary", "/api/vessel-calls")).start()
    time.sleep(seconds / 3)
    fleet.redis_proxies[1].close()
    direct = [probe(fleet.instances[1].url + "/")[0] for _ in range(10)]
    time.sleep(seconds * 2 / 3)
    stats = load.stop()
    states = [instance_health(s).get("checks", {}).get("redis", {}).get("circuit_breaker_state")
              for s in fleet.instances]
    problems = []
    if stats.failures:
        problems.append(f"{len(stats.failures)} failed requests ({_failure_kinds(stats)})")
    if any(status != 200 for status in direct):
        problems.append(f"instance 2 answered {direct} directly")
    if states[0] != "closed" or states[1] not in ("open", "half-open"):
        problems.append(f"breaker states {states}, expected closed on instance 1 and open on instance 2")
    return FleetResult("redis_lost_by_one", f"breakers={states} {stats.summary()}", problems)


def drill_redis_failover(fleet: Fleet, seconds: float) -> FleetResult:
    """Sentinel promotes the replica after kill -9 of the master: 0 user errors, both breakers close again."""
    assert fleet.sentinel is not None, "needs the Sentinel fleet"
    load = FleetLoad(fleet, readers=8, paths=("/", "/api/summary", "/api/vessel-calls")).start()
    time.sleep(seconds / 3)
    started = time.monotonic()
    fleet.sentinel.fail_over()
    promoted = time.monotonic() - started
    states: list[Any] = []
    deadline = time.monotonic() + max(seconds, 15)
    while time.monotonic() < deadline:
        states = [instance_health(s).get("checks", {}).get("redis", {}).get("circuit_breaker_state")
                  for s in fleet.instances]
        if states == ["closed", "closed"]:
            break
        time.sleep(0.5)
    closed_after = time.monotonic() - started
    time.sleep(2)
    stats = load.stop()
    problems = []
    if stats.failures:
        problems.append(f"{len(stats.failures)} failed requests ({_failure_kinds(stats)})")
    if states != ["closed", "closed"]:
        problems.append(f"breakers {states} after the failover")
    return FleetResult("redis_failover", f"promoted_after={promoted:.1f}s breakers_closed_after={closed_after:.1f}s "
                       f"{stats.summary()}", problems)


DRILLS: dict[str, Callable[[Fleet, float], FleetResult]] = {
    "rolling_restart": drill_rolling_restart,
    "database_terminated": drill_database_terminated,
    "database_freeze": drill_database_freeze,
    "redis_lost_by_one": drill_redis_lost_by_one,
    "redis_failover": drill_redis_failover,
}
#: Drills that need the Sentinel topology instead of one plain redis-server.
SENTINEL_DRILLS = {"redis_failover"}


def run(names: list[str], seconds: float) -> list[FleetResult]:
    """Run drills on as few fleets as possible (one plain, one with Sentinel); one result each."""
    from bench.slow_clients import drill_slow_clients

    results = []
    plain = [n for n in names if n not in SENTINEL_DRILLS and n != "slow_clients"]
    groups = [(False, plain + (["slow_clients"] if "slow_clients" in names else [])),
              (True, [n for n in names if n in SENTINEL_DRILLS])]
    for sentinel, group in groups:
        if not group:
            continue
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
            fleet = start_fleet(stack, workdir, sentinel=sentinel)
            for name in group:
                result = drill_slow_clients(fleet, seconds) if name == "slow_clients" else DRILLS[name](fleet, seconds)
                print(result.line(), flush=True)
                if not result.passed:
                    print(error_lines(fleet), flush=True)
                results.append(result)
                if name == "database_freeze":  # let both instances come back into rotation
                    for server in ("app1", "app2"):
                        fleet.lb.wait_for(server, "UP")
    return results


def main() -> int:
    """Run the fleet drills named on the command line (default: all)."""
    every = [*DRILLS, "slow_clients"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("drills", nargs="*", help=f"some of: {', '.join(every)} (default: all)")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DRILL_SECONDS", "15")))
    args = parser.parse_args()
    unknown = [n for n in args.drills if n not in every]
    if unknown:
        parser.error(f"unknown drill {unknown[0]!r}; choose from {', '.join(every)}")
    header = machine_line()
    print(header, flush=True)
    results = run(args.drills or every, args.seconds)
    if not args.drills:
        write_section("Fleet drills", "make drills (python -m bench.fleet)",
                      [header, "2 instances x 2 workers x 4 threads behind HAProxy (deploy/haproxy.cfg), "
                       "shared PostgreSQL and Redis"] + [r.line() for r in results])
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
