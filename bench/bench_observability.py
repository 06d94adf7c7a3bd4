"""Benchmark of the observability plugin's cost: /health/quick throughput with and without it.

Run: ``.venv/bin/python bench/bench_observability.py [--requests 4000] [--concurrency 10]
[--rounds 6] [--workers 2] [--keepalive]``.

Starts the dashboard twice under the same gunicorn configuration (the core's
``stevedores.gunicorn_conf``, same workers, same settings, every installed plugin), once as
is and once with ``STEVEDORES_DISABLE_PLUGINS=observability``, one after the other, and
measures ``/health/quick`` (``/health/live`` when the health plugin has no quick probe) with
``ab``. The variants alternate (A B, B A, ...) for ``--rounds`` rounds after a warm-up so
that drift of the shared machine hits both. Printed per variant: the median requests/s
and the median server CPU time per request (master + workers, from /proc); then the cost
in % (target: <= 10 %). Under gunicorn the plugin runs in multiprocess mode, so every
request writes its counter and histogram to the shared files: the real cost.

Throughput on a shared machine swings with the neighbours' load (other processes take the
CPU in the middle of a run); the server's own CPU time per request does not, so the
verdict uses it: on a CPU-bound server, throughput falls in the same proportion.
Absolute figures depend on the machine; compare the lines of the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TARGET_PERCENT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The dashboard under gunicorn on a free port, with or without the observability plugin."""

    def __init__(self, workdir: Path, workers: int, with_plugin: bool) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("STEVEDORES_", "REDIS_", "SENTRY_", "METRICS_", "PROMETHEUS_"))}
        self.env.update({
            "PORT": str(self.port), "WEB_WORKERS": str(workers), "FLASK_ENV": "production",
            "SECRET_KEY": "bench-secret-key-" + "x" * 40, "LOG_FILE": "none", "LOG_LEVEL": "WARNING",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}", "GUNICORN_MAX_REQUESTS": "0",
        })
        if not with_plugin:
            self.env["STEVEDORES_DISABLE_PLUGINS"] = "observability"
        self.log_path = workdir / f"gunicorn-{'with' if with_plugin else 'without'}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """Start gunicorn and wait until the liveness probe answers."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:stevedores.gunicorn_conf", "--access-logfile",
                 "/dev/null", "stevedores.wsgi:application"],
                env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.log_path.read_text()}")
            try:
                urllib.request.urlopen(self.url + "/health/live", timeout=2).close()
                return self
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer:\n{self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the master and its workers (from /proc)."""
        assert self.proc is not None
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry) == self.proc.pid or int(fields[1]) == self.proc.pid:  # fields[1]: the parent pid
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        return total

    def stop(self) -> None:
        """SIGTERM the master; SIGKILL the group if it does not exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def probe_path(server: Server) -> str:
    """/health/quick when the health plugin serves it, else /health/live."""
    try:
        urllib.request.urlopen(server.url + "/health/quick", timeout=5).close()
        return "/health/quick"
    except urllib.error.HTTPError as exc:
        return "/health/quick" if exc.code != 404 else "/health/live"
    except OSError:
        return "/health/live"


def ab(url: str, requests: int, concurrency: int, keepalive: bool) -> float:
    """Requests per second measured by ab; exits if any request failed."""
    args = ["ab", "-q", "-n", str(requests), "-c", str(concurrency)] + (["-k"] if keepalive else []) + [url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600).stdout
    # ab counts a body whose length differs from the first one as "failed (Length)": the
    # health report's body varies, so only connection, receive and exception errors count
    errors = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", out)
    failed = sum(int(n) for n in errors.groups()) if errors else int(re.search(r"Failed requests:\s+(\d+)",
                                                                                 out).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if failed or non_2xx:
        raise SystemExit(f"{url}: {failed} failed requests, non-2xx: {non_2xx.group(1) if non_2xx else 0}\n{out}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))


def main() -> None:
    """Measure both variants and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6, help="alternating measurements of each variant")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keepalive", action="store_true", help="ab -k (reuse connections)")
    options = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("ab (apache2-utils) is required")

    with tempfile.TemporaryDirectory(prefix="bench-observability-") as tmp:
        (Path(tmp) / "with").mkdir()
        (Path(tmp) / "without").mkdir()
        servers = {"with observability": Server(Path(tmp) / "with", options.workers, True),
                   "without observability": Server(Path(tmp) / "without", options.workers, False)}
        try:
            for server in servers.values():
                server.start()
            path = probe_path(servers["with observability"])
            print(f"endpoint {path}; {options.workers} gunicorn workers (gthread, 4 threads); ab -n "
                  f"{options.requests} -c {options.concurrency}{' -k' if options.keepalive else ''}; "
                  f"{options.rounds} alternating rounds")
            for server in servers.values():  # warm-up: imports, caches, first metrics files
                ab(server.url + path, max(200, options.requests // 10), options.concurrency, options.keepalive)
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu_ms: dict[str, list[float]] = {name: [] for name in servers}
            for number in range(options.rounds):  # A B, then B A: drift of the machine hits both alike
                for name, server in (list(servers.items()) if number % 2 == 0 else list(servers.items())[::-1]):
                    cpu_before = server.cpu_seconds()
                    rates[name].append(ab(server.url + path, options.requests, options.concurrency,
                                          options.keepalive))
                    cpu_ms[name].append((server.cpu_seconds() - cpu_before) * 1000 / options.requests)
        finally:
            for server in servers.values():
                server.stop()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    cpu = {name: statistics.median(values) for name, values in cpu_ms.items()}
    for name, values in rates.items():
        print(f"{name:>22}: {medians[name]:8.1f} req/s (median; rounds: {', '.join(f'{v:.0f}' for v in values)}); "
              f"server CPU {cpu[name]:.3f} ms/request (median; rounds: "
              f"{', '.join(f'{v:.3f}' for v in cpu_ms[name])})")
    cost = (1 - medians["with observability"] / medians["without observability"]) * 100
    cpu_cost = (cpu["with observability"] / cpu["without observability"] - 1) * 100
    capacity_cost = (1 - cpu["without observability"] / cpu["with observability"]) * 100
    print(f"{'cost of the plugin':>22}: {cost:+.1f} % of measured throughput; {cpu_cost:+.1f} % server CPU per "
          f"request, i.e. {capacity_cost:+.1f} % of CPU-bound throughput (target <= {TARGET_PERCENT:.0f} %: "
          f"{'OK' if capacity_cost <= TARGET_PERCENT else 'OVER TARGET'})")
    print("Throughput on a shared machine swings with the neighbours' load; server CPU per request does not.")


if __name__ == "__main__":
    main()
