"""Benchmark of the resilient cache: latency of ``cache.get`` with Redis healthy, dead, and hung.

Run: ``.venv/bin/python bench/bench_redis.py [--n 5000]``. It starts its own
redis-server on a free port (never the shared one on 6379), and prints, in one run,
p50/p99/max of a cache get in four situations:

- ``raw redis-py``: a plain redis-py GET on the same server (the baseline);
- ``healthy``: the resilient cache with Redis answering;
- ``dead, breaker open``: Redis killed (-9), the breaker open, gets served from memory;
- ``hung (SIGSTOP)``: Redis paused; the first calls pay the read timeout until the
  breaker opens, then memory serves.

and the ratio open-p99 / healthy-p99 (target: <= 1.2). Figures are wall-clock on a
shared machine: compare ratios measured in the same run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins" / "redis_resilience"))

import redis  # noqa: E402
from stevedores_redis_resilience.cache import ResilientCache  # noqa: E402
from stevedores_redis_resilience.client import ResilientRedis  # noqa: E402
from stevedores_redis_resilience.memory_cache import MemoryCache  # noqa: E402

READ_TIMEOUT = 0.3
THRESHOLD = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, workdir: str) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=0.5).ping():
                return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def measure(fn: Callable[[], object], n: int, warmup: int = 200) -> list[float]:
    """Microseconds of each of ``n`` calls (after ``warmup`` unmeasured ones)."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        timings.append((time.perf_counter_ns() - started) / 1000)
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def row(label: str, timings: list[float]) -> dict[str, float]:
    figures = {"p50": percentile(timings, 50), "p99": percentile(timings, 99), "max": max(timings)}
    slow = sum(t > 10_000 for t in timings)
    print(f"{label:<24} p50 {figures['p50']:>9.1f} us   p99 {figures['p99']:>9.1f} us   "
          f"max {figures['max']:>10.1f} us   calls > 10 ms: {slow}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="measured gets per situation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="  log: %(message)s")
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, workdir)
    try:
        print(f"cache.get latency, {args.n} calls each, redis-server on port {port}, "
              f"read timeout {READ_TIMEOUT * 1000:.0f} ms, threshold {THRESHOLD} (2-core shared machine)")
        raw = redis.Redis.from_url(url)
        raw.set("vessel:summary", "x" * 200)
        row("raw redis-py", measure(lambda: raw.get("vessel:summary"), args.n))

        def resilient_cache() -> tuple[ResilientRedis, ResilientCache]:
            client = ResilientRedis(url, connect_timeout=READ_TIMEOUT, read_timeout=READ_TIMEOUT,
                                    failure_threshold=THRESHOLD, recovery_timeout=3600)
            return client, ResilientCache(client, MemoryCache())

        client, cache = resilient_cache()
        cache.set("vessel:summary", "x" * 200)
        healthy = row("healthy", measure(lambda: cache.get("vessel:summary"), args.n))

        proc.kill()
        proc.wait()
        for _ in range(THRESHOLD):
            cache.get("vessel:summary")
        assert client.state == "open", client.state
        cache.set("vessel:summary", "x" * 200)  # the outage's value, in memory
        opened = row("dead, breaker open", measure(lambda: cache.get("vessel:summary"), args.n, warmup=0))

        proc = start_redis(port, workdir)
        client, cache = resilient_cache()
        cache.set("vessel:summary", "x" * 200)
        cache.get("vessel:summary")  # a pooled connection exists when the server hangs
        os.kill(proc.pid, signal.SIGSTOP)
        hung_timings = measure(lambda: cache.get("vessel:summary"), args.n, warmup=0)
        os.kill(proc.pid, signal.SIGCONT)
        row("hung (SIGSTOP)", hung_timings)
        print(f"hung: {sum(t > 10_000 for t in hung_timings)} calls paid the read timeout "
              f"(threshold {THRESHOLD}), slowest {max(hung_timings) / 1000:.0f} ms; breaker now {client.state}")
        ratio = opened["p99"] / healthy["p99"]
        print(f"ratio open-p99 / healthy-p99 = {ratio:.3f} (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
