"""Fault drills: ≥50 concurrent clients on a dashboard route while one fault is injected.

Each drill starts the assembled dashboard under real gunicorn against a database of its
own on the shared PostgreSQL and a redis-server of its own, runs the load, injects the
fault a third of the way in, and fails when a request the guide promises to survive
failed. Run all: ``python -m bench.drills`` (``make drills``); one: ``... redis_killed``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text

from bench.loadgen import Load, Record, Stats
from bench.results import machine_line, write_section
from bench.stack import BEHIND_TLS_PROXY, Stack, start_stack

PATHS = ["/", "/health/quick"]


@dataclass
class DrillResult:
    """What one drill measured and whether the guide's promise held."""

    name: str
    stats: Stats
    broken: list[Record] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        """No request that had to survive failed."""
        return not self.broken

    def line(self) -> str:
        """The printed summary."""
        verdict = "PASS" if self.passed else f"FAIL ({len(self.broken)} requests that had to survive failed)"
        return f"drill {self.name:<20} {self.stats.summary()} {self.note} -> {verdict}"


def _failures_outside(stats: Stats, windows: list[tuple[float, float]]) -> list[Record]:
    """Failures that did not overlap a window in which failing was allowed."""
    def excused(r: Record) -> bool:
        return any(r.started <= end and r.started + r.elapsed >= start for start, end in windows)
    return [r for r in stats.failures if not excused(r)]


def _timed_fault(load: Load, seconds: float, fault: Callable[[], None], at: float = 1 / 3) -> float:
    time.sleep(seconds * at)
    t = load.now()
    fault()
    return t


def _survived(name: str, load: Load, seconds: float, fault: Callable[[], None]) -> DrillResult:
    """Inject ``fault`` a third of the way in, run to the end: no request may fail."""
    _timed_fault(load, seconds, fault)
    time.sleep(seconds * 2 / 3)
    stats = load.stop()
    return DrillResult(name, stats, stats.failures)


def drill_redis_killed(s: Stack, load: Load, seconds: float) -> DrillResult:
    """kill -9 Redis mid-run: pages are served from the fallback, none fails."""
    return _survived("redis_killed", load, seconds, s.redis.kill)


def drill_redis_paused(s: Stack, load: Load, seconds: float) -> DrillResult:
    """SIGSTOP Redis for a third of the run, then SIGCONT: nothing fails, nothing hangs."""
    _timed_fault(load, seconds, s.redis.pause)
    time.sleep(seconds / 3)
    s.redis.resume()
    time.sleep(seconds / 3)
    stats = load.stop()
    return DrillResult("redis_paused", stats, stats.failures)


def drill_redis_restarted(s: Stack, load: Load, seconds: float) -> DrillResult:
    """Redis restarted (empty) mid-run: nothing fails; the breaker closes again."""
    return _survived("redis_restarted", load, seconds, s.redis.restart)


def drill_postgres_terminated(s: Stack, load: Load, seconds: float) -> DrillResult:
    """pg_terminate_backend on the app's connections: no read fails (a GET that lost its connection is
    retried once on a fresh one by the core)."""
    admin = create_engine(s.database_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    database = s.database_url.rsplit("/", 1)[1]
    killed = []

    def terminate() -> None:
        with admin.connect() as conn:
            killed.append(conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar())

    t = _timed_fault(load, seconds, terminate)
    time.sleep(seconds * 2 / 3)
    stats = load.stop()
    admin.dispose()
    return DrillResult("postgres_terminated", stats, list(stats.failures),
                       f"terminated={killed[0] if killed else 0} at {t:.1f}s")


def drill_memory_pressure(s: Stack, load: Load, seconds: float) -> DrillResult:
    """One worker allocates past the critical threshold: it is recycled, no request fails."""
    import urllib.request

    def push() -> None:
        for _ in range(6):
            request = urllib.request.Request(s.server.url + "/drill/alloc?mb=40", headers=BEHIND_TLS_PROXY)
            urllib.request.urlopen(request, timeout=10).read()

    result = _survived("memory_pressure", load, seconds, push)
    result.note = f"recycles_logged={s.server.log().count('Recycling worker')}"
    return result


def drill_sigterm(s: Stack, load: Load, seconds: float) -> DrillResult:
    """SIGTERM to the master with slow requests in flight: those finish with 200, exit is clean."""
    import urllib.request

    slow: list[Record] = []

    def slow_request() -> None:
        started = load.now()
        try:
            request = urllib.request.Request(s.server.url + "/drill/slow?seconds=3", headers=BEHIND_TLS_PROXY)
            status = urllib.request.urlopen(request, timeout=40).status
            slow.append(Record(started, load.now() - started, "/drill/slow", status))
        except OSError as exc:
            slow.append(Record(started, load.now() - started, "/drill/slow", None, str(exc)))

    time.sleep(seconds / 3)
    threads = [threading.Thread(target=slow_request) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    t = load.now()
    code = s.server.stop(signal.SIGTERM)
    for thread in threads:
        thread.join(45)
    stats = load.stop()
    before = [r for r in stats.records if r.started + r.elapsed < t]
    broken = [r for r in before if not r.ok] + [r for r in slow if not r.ok]
    after = sum(1 for r in stats.records if r.started + r.elapsed >= t and not r.ok)
    return DrillResult("sigterm", stats, broken, f"slow_in_flight_ok={sum(r.ok for r in slow)}/3 exit={code} "
                       f"refused_after_stop={after} (expected: the server is gone)")


def drill_sighup(s: Stack, load: Load, seconds: float) -> DrillResult:
    """SIGHUP reloads the configuration and replaces every worker gracefully: nothing fails."""
    assert s.server.proc is not None
    result = _survived("sighup", load, seconds, lambda: s.server.proc.send_signal(signal.SIGHUP))  # type: ignore[union-attr]
    result.note = f"boots={s.server.log().count('Booting worker')}"
    return result


DRILLS: dict[str, Callable[[Stack, Load, float], DrillResult]] = {
    "redis_killed": drill_redis_killed,
    "redis_paused": drill_redis_paused,
    "redis_restarted": drill_redis_restarted,
    "postgres_terminated": drill_postgres_terminated,
    "memory_pressure": drill_memory_pressure,
    "sigterm": drill_sigterm,
    "sighup": drill_sighup,
}

#: Extra settings some drills need (the memory drill needs a small limit and a quick monitor).
DRILL_ENV: dict[str, dict[str, str]] = {
    "memory_pressure": {"MEMORY_LIMIT_MB": "300", "WORKER_MEMORY_MB": "64", "MEMORY_CHECK_INTERVAL": "0.3"},
    "sigterm": {"SHUTDOWN_DRAIN_SECONDS": "1"},  # requests sent during the drain are served too
}


def run_drill(name: str, seconds: float = 15.0, clients: int = 50, workdir: Path | None = None) -> DrillResult:
    """Run one drill on a fresh stack and return its result."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"drill-{name}-")))
        env = {"WEB_WORKERS": "3", "REDIS_BREAKER_RECOVERY_TIMEOUT": "2", **DRILL_ENV.get(name, {})}
        s = start_stack(stack, workdir, env, drill_routes=True)
        load = Load(s.server.url, PATHS, clients=clients, headers=BEHIND_TLS_PROXY).start()
        result = DRILLS[name](s, load, seconds)
        if not result.passed:
            result.note += "\n  first failures: " + "; ".join(
                f"{r.path} at {r.started:.2f}s -> {r.status or r.error}" for r in result.broken[:5])
            app_lines = [line for line in s.server.log().splitlines() if '"GET ' not in line]
            result.note += "\n  --- server log tail ---\n" + "\n".join(app_lines[-30:])
        return result


def main() -> int:
    """Run the drills named on the command line (default: all) and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("drills", nargs="*", help=f"some of: {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DRILL_SECONDS", "15")))
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    unknown = [n for n in args.drills if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill {unknown[0]!r}; choose from {', '.join(DRILLS)}")
    results, lines = [], [machine_line(), f"{args.clients} clients, {args.seconds:.0f} s per drill, paths {PATHS}"]
    print(lines[0], flush=True)
    for name in args.drills or list(DRILLS):
        result = run_drill(name, args.seconds, args.clients)
        print(result.line(), flush=True)
        results.append(result)
        lines.append(result.line())
    if not args.drills:  # only a full run replaces the recorded figures
        write_section("Fault drills", "make drills (python -m bench.drills)", lines)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
