"""The guide's promises as one command (``make bench``): the assembled dashboard under
gunicorn against the real PostgreSQL and a redis-server of its own, measured with ab and
wrk beside a bare Flask endpoint under plain gunicorn with the same worker count, worker class
and threads (``bench.stack.start_plain_baseline``).

Prints every figure, writes bench/RESULTS.md, and exits non-zero when a promise of the
deployment guide fails (the ratios against the bare endpoint are reported, not asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench.results import RESULTS, Report, machine_line, wait_for_quiet, write_section
from bench.stack import BEHIND_TLS_PROXY, Stack, plain_command, start_plain_baseline, start_stack
from stevedores.testing import GunicornServer

HERE = Path(__file__).resolve().parent
MEMORY_LIMIT_MB = 512
#: /health/quick against the bare endpoint under plain gunicorn (issue 12); reported, not a promise.
TARGET_QUICK_RATIO = 0.9
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")


def run_ab(url: str, requests: int = 1000, concurrency: int = 10) -> dict[str, float]:
    """``ab -n requests -c concurrency url``: requests/s, mean time, failed and non-2xx counts."""
    out = subprocess.run(["ab", "-q", "-n", str(requests), "-c", str(concurrency),
                          *[arg for k, v in BEHIND_TLS_PROXY.items() for arg in ("-H", f"{k}: {v}")], url],
                         capture_output=True, text=True, timeout=300).stdout

    def number(pattern: str, default: float = 0.0) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else default

    return {"rps": number(r"Requests per second:\s+([\d.]+)"), "mean_ms": number(r"Time per request:\s+([\d.]+)"),
            "failed": number(r"Failed requests:\s+(\d+)"), "non2xx": number(r"Non-2xx responses:\s+(\d+)")}


def run_wrk(url: str, seconds: int, connections: int = 100, headers: dict[str, str] | None = None) -> dict[str, float]:
    """wrk with ``connections`` for ``seconds``: requests/s, p50/p95/p99, errors."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "wrk_report.lua")]
    for name, value in {**BEHIND_TLS_PROXY, **(headers or {})}.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    figures = json.loads(line.removeprefix("WRK_JSON "))
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["errors"] = figures["socket_errors"] + figures["non2xx"]
    return figures


def worker_memory(server_pid: int) -> list[tuple[int, float, float]]:
    """(pid, RSS MB, USS MB) of each gunicorn worker."""
    rows = []
    for child in psutil.Process(server_pid).children():
        info = child.memory_full_info()
        rows.append((child.pid, info.rss / 2**20, info.uss / 2**20))
    return rows


def cold_start_seconds(env: dict[str, str], runs: int = 3) -> float:
    """Median wall time of a fresh interpreter importing the core and building the app with every plugin."""
    code = ("import time; t = time.perf_counter(); from stevedores import create_app; create_app(); "
            "print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                                  text=True, check=True, timeout=60).stdout.strip().splitlines()[-1])
             for _ in range(runs)]
    return statistics.median(times)


def measure(report: Report, stack: Stack, bare: GunicornServer, seconds: int) -> None:
    """Every figure of the harness, against the running stacks."""
    url = stack.server.url
    with urllib.request.urlopen(urllib.request.Request(url + "/health", headers=BEHIND_TLS_PROXY),
                                timeout=15) as response:
        health = json.load(response)
        report.check(response.status == 200 and health.get("status") == "healthy",
                       f"/health returns 200 with all checks passing (status={health.get('status')}, "
                       f"checks={', '.join(sorted(health.get('checks', {})))})")
    missing = []
    for path in ("/", "/health/quick", "/no-such-page"):
        try:
            headers = urllib.request.urlopen(urllib.request.Request(url + path, headers=BEHIND_TLS_PROXY),
                                             timeout=10).headers
        except urllib.error.HTTPError as exc:
            headers = exc.headers
        missing += [f"{path}: {h}" for h in SECURITY_HEADERS if h not in headers]
    report.check(not missing, f"security headers present in all responses checked {missing or ''}")

    ab = run_ab(url + "/health/quick")
    report.say(f"ab -n 1000 -c 10 /health/quick: {ab['rps']:.0f} req/s, mean {ab['mean_ms']:.1f} ms, "
               f"failed {ab['failed']:.0f}, non-2xx {ab['non2xx']:.0f}")
    report.check(ab["rps"] >= 200 and ab["failed"] == 0 and ab["non2xx"] == 0,
                   "ab /health/quick: 200+ requests per second with 0 failed requests")

    results = {}
    for name, target in (("bare endpoint", bare.url + "/bare"), ("/health/quick", url + "/health/quick"),
                         ("dashboard page /", url + "/")):
        results[name] = run_wrk(target, seconds)
    base = results["bare endpoint"]["rps"] or 1.0
    report.say(f"wrk -c100 -d{seconds}s (2 threads):")
    report.say("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors | vs bare |")
    report.say("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        report.say(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                   f"{r['errors']:.0f} | {r['rps'] / base:.2f}x |")
    ratio = results["/health/quick"]["rps"] / base
    report.say(f"bare endpoint: {plain_command(bare)}; ratio /health/quick / bare: {ratio:.2f} "
               f"(target >= {TARGET_QUICK_RATIO}: {'met' if ratio >= TARGET_QUICK_RATIO else 'NOT met'}; "
               f"load average {os.getloadavg()[0]:.1f})")
    report.check(results["dashboard page /"]["errors"] == 0 and results["/health/quick"]["errors"] == 0,
                   "100+ concurrent users without errors (dashboard page and /health/quick)")

    assert stack.server.proc is not None
    rows = worker_memory(stack.server.proc.pid)
    report.say("| worker pid | RSS MB | USS MB |")
    report.say("|---|---|---|")
    for pid, rss, uss in rows:
        report.say(f"| {pid} | {rss:.1f} | {uss:.1f} |")
    master = psutil.Process(stack.server.proc.pid).memory_full_info()
    total_rss = sum(r[1] for r in rows) + master.rss / 2**20
    total_uss = sum(r[2] for r in rows) + master.uss / 2**20
    report.say(f"total with master: RSS {total_rss:.1f} MB (counts shared pages per process), "
               f"USS {total_uss:.1f} MB; workers: {len(rows)}")
    report.check(total_uss < 0.85 * MEMORY_LIMIT_MB,
                   f"memory stays under 85% of {MEMORY_LIMIT_MB} MB (USS total {total_uss:.0f} MB)")


def main() -> int:
    """Run the harness and write bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "20")))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    for tool in ("ab", "wrk"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (make install-test installs it)", file=sys.stderr)
            return 2
    report = Report()
    wait_for_quiet()
    report.say(machine_line())
    env = {"MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB), "OPS_TOKEN": "bench-operator-token-0123456789abcdef"}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        dashboard = start_stack(stack, Path(tmp) / "app", env)
        report.say("workers: " + " | ".join(line.split(": ", 1)[-1] for line in dashboard.server.log().splitlines()
                                            if "Final Workers" in line)[:200])
        bare = start_plain_baseline(stack, Path(tmp) / "bare", dashboard.server)
        measure(report, dashboard, bare, args.seconds)
        cold = cold_start_seconds({**env, "DATABASE_URL": dashboard.database_url, "LOG_FILE": "none",
                                   "FLASK_ENV": "production", "SECRET_KEY": "c" * 40})
        report.say(f"cold start (import + create_app with every plugin, median of 3): {cold * 1000:.0f} ms")
    verdict = "all guide promises held" if not report.broken else f"{len(report.broken)} promise(s) broken"
    report.say(verdict)
    write_section("Benchmark", "make bench (python -m bench.harness)", report.lines, args.results)
    return 0 if not report.broken else 1


if __name__ == "__main__":
    sys.exit(main())
