"""Benchmark of the health endpoints against a bare Flask endpoint, in one run.

Starts:

- the assembled dashboard with every installed plugin under its own gunicorn configuration
  (``python:stevedores.gunicorn_conf``, defaults: no recycling by count; production profile,
  PostgreSQL and a redis-server of their own, as bench/stack.py does);
- the baseline: ``bench.bare_app`` (one Flask route returning a constant JSON body) under
  PLAIN gunicorn with the same worker count, worker class and threads
  (``gunicorn -w N -k gthread --threads 4 bench.bare_app:application``), none of our
  configuration: what a user would run instead (``bench.stack.start_plain_baseline``).

Then, for a few rounds with the order of the endpoints rotated, it loads ``/bare``,
``/health/live``, ``/health/quick`` and ``/health`` with wrk (or ab when wrk is missing) and prints p50/p95
latency and throughput per endpoint (the median over the rounds), the ratio
``/health/quick`` / bare (target: >= 0.9, issue 12), the ratio ``/health/quick`` / ``/health/live``
(same app and middleware stack: what the health plugin itself costs), and ``ab -n 1000 -c 10 /health/quick`` (target:
0 failed, 0 non-2xx: probes are never rate limited).

    .venv/bin/python -m bench.bench_health [--seconds 5] [--rounds 3] [--connections 10]

The machine may be shared with other work: compare figures of one run (the ratio), not
absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import plain_command, start_plain_baseline, start_stack  # noqa: E402

TARGET_RATIO = 0.9
MEMORY_LIMIT_MB = 512


def run_wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    """wrk (2 threads, keep-alive): req/s, p50/p95 in ms, errors (socket errors + non-2xx)."""
    script = Path(__file__).resolve().parent / "wrk_report.lua"
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
                          url], capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    import json

    figures = json.loads(line.removeprefix("WRK_JSON "))
    return {"rps": figures["requests"] / (figures["duration_us"] / 1e6), "p50_ms": figures["p50_ms"],
            "p95_ms": figures["p95_ms"], "errors": figures["socket_errors"] + figures["non2xx"]}


def run_ab(url: str, requests: int, concurrency: int, keepalive: bool = False) -> dict[str, float]:
    """ab: req/s, p50/p95 in ms (from its percentile table), failed and non-2xx counts."""
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv:
        args = ["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-e", csv.name]
        out = subprocess.run([*args, *(["-k"] if keepalive else []), url], capture_output=True, text=True,
                             timeout=300).stdout
        table = dict(line.split(",") for line in csv.read().splitlines()[1:])

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else 0.0

    return {"rps": number(r"Requests per second:\s+([\d.]+)"), "p50_ms": float(table.get("50", 0)),
            "p95_ms": float(table.get("95", 0)), "failed": number(r"Failed requests:\s+(\d+)"),
            "non2xx": number(r"Non-2xx responses:\s+(\d+)"),
            "errors": number(r"Failed requests:\s+(\d+)") + number(r"Non-2xx responses:\s+(\d+)")}


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (endpoint order rotated each round)")
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections")
    args = parser.parse_args()
    if not shutil.which("ab"):
        print("bench: ab is missing (apache2-utils; make install-test installs it)", file=sys.stderr)
        return 2
    use_wrk = shutil.which("wrk") is not None
    env = {"MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB), "OPS_TOKEN": "bench-operator-token-0123456789abcdef"}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        dashboard_server = start_stack(stack, Path(tmp) / "app", env).server
        dashboard = dashboard_server.url
        baseline = start_plain_baseline(stack, Path(tmp) / "bare", dashboard_server)
        bare = baseline.url
        targets = {"bare /bare": bare + "/bare", "/health/live": dashboard + "/health/live",
                   "/health/quick": dashboard + "/health/quick", "/health": dashboard + "/health"}
        for url in targets.values():  # warm up: workers, pools, the first snapshot
            run_ab(url, 200, args.connections)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        names = list(targets)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                if use_wrk:
                    runs[name].append(run_wrk(targets[name], args.seconds, args.connections))
                else:
                    runs[name].append(run_ab(targets[name], 3000, args.connections, keepalive=True))
        ab_quick = run_ab(targets["/health/quick"], 1000, 10)
        baseline_command = plain_command(baseline)

    tool = f"wrk -t2 -c{args.connections} -d{args.seconds}s" if use_wrk else f"ab -k -n 3000 -c{args.connections}"
    print(f"machine: {os.cpu_count()} CPUs (shared; compare within this run). Load: {tool}, "
          f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"dashboard: gunicorn -c python:stevedores.gunicorn_conf (production, defaults); "
          f"baseline: {baseline_command}")
    print(f"{'endpoint':<16}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'errors':>8}{'vs bare':>9}")
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("rps", "p50_ms", "p95_ms", "errors")}
               for name, rs in runs.items()}
    base = medians["bare /bare"]["rps"] or 1.0
    for name, m in medians.items():
        print(f"{name:<16}{m['rps']:>10.0f}{m['p50_ms']:>10.2f}{m['p95_ms']:>10.2f}{m['errors']:>8.0f}"
              f"{m['rps'] / base:>8.2f}x")
    ratio = medians["/health/quick"]["rps"] / base
    print(f"ratio /health/quick / bare throughput: {ratio:.2f} (target >= {TARGET_RATIO}): "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    live = medians["/health/live"]["rps"] or 1.0
    print(f"ratio /health/quick / /health/live (same app and middleware; the health plugin's own cost): "
          f"{medians['/health/quick']['rps'] / live:.2f}")
    print(f"ab -n 1000 -c 10 /health/quick: {ab_quick['rps']:.0f} req/s, p50 {ab_quick['p50_ms']:.0f} ms, "
          f"p95 {ab_quick['p95_ms']:.0f} ms, failed {ab_quick['failed']:.0f}, non-2xx {ab_quick['non2xx']:.0f}")
    ok = ratio >= TARGET_RATIO and ab_quick["failed"] == 0 and ab_quick["non2xx"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
