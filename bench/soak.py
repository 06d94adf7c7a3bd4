"""``make soak``: the assembled dashboard for SOAK_SECONDS (default 600) under full load and
every fault the deployment guide promises to survive, watched for growth and lost figures.

The stack (bench/stack.py): gunicorn with the bundled configuration, production profile, a
database of its own on the real PostgreSQL, a redis-server of its own, the drill routes.
Where this process may create a memory cgroup (root and a writable cgroup v2 or v1 memory
hierarchy, as on CI), gunicorn runs inside a real 512 MB one (bench/memory_cgroup.py), so
memory_guard reads a container limit; elsewhere MEMORY_LIMIT_MB=512 stands in and the
report says why. Meanwhile:

- **load**: CLIENTS closed-loop keep-alive clients on ``/`` (the dashboard page, cached
  through Redis) and ``/health/quick``, from this process (a second process to gunicorn);
- **Redis** is killed and started again once per period (60 s; a quarter of the run when
  shorter: 15 s in the 60-second form), down for 35 % of each period;
- **worker recycles**: ``GUNICORN_MAX_REQUESTS`` (RECYCLE_REQUESTS, with gunicorn's jitter),
  SIGHUP to the master once, at about 30 % of the run (so that the growth checks of the
  second half see the steady state after it), and memory_guard's own recycles;
- **memory pressure** once per period (but the one before the SIGHUP), while Redis is up:
  ``/drill/alloc`` keeps blocks for half a period in whichever worker answers: 4 calls of
  32 MB at once below 70 % of the limit, then one of 16 MB, every 0.25 s (paused above 90 %,
  so memory_guard acts before the kernel's OOM killer), until memory_guard has recycled a
  worker (``worker_recycles_total{cause="memory_critical"}`` grows) or half a period passed;
- **a failed-login probe**: one wrong password a second from one client address (its own
  ``X-Forwarded-For``), plus a ``GET /login`` every 5 s from it: the limits as they are.

Recorded every SAMPLE_SECONDS: RSS and USS of the master and each worker, open file
descriptors, the metrics directory's bytes and files (/dev/shm), the log directory's bytes,
the cgroup's working set, requests answered and 5xx, and the ``/metrics`` request total.

Fails (exit 1) on:

- **unbounded growth**: for total USS, the largest worker's RSS, open descriptors and the
  metrics directory's bytes and files, the least-squares slope over the second half of the
  run, projected over that half, must stay within the tolerance: the largest of an absolute
  one per series (GROWTH_CHECKS), 10 % of the series' median there, and the noise (2
  standard deviations of the residuals around the fitted line: a slope within them is not
  told apart from churn; recycles every few seconds make per-process memory jump by
  design). The 60-second form therefore catches only fast growth; the 600-second one
  (five periods in its second half) is the real check. Log bytes must stay under
  the rotation bound LOG_MAX_BYTES x (LOG_BACKUP_COUNT + 1) (plus one line's slack), and the
  metrics directory under 4 files per live process plus the archives;
- **a lost metric**: after the load stops, ``stevedores_http_requests_total`` summed per
  route equals the requests answered on that route (the scrapes are their own route), give or
  take the requests whose connection broke before their answer arrived: the server may have
  answered and counted them (a worker killed mid-response), so they may add to the count;
- **any 5xx**: PostgreSQL stays up and every load route works without Redis, so no 5xx
  needs a dead dependency here;
- transport errors above 0.1 % of requests (a recycle or reload must not drop requests);
- the login probe: more wrong passwords let through than OPERATIONS_LOGIN_RATE_LIMIT allows
  over the run (per minute x (minutes + 1), and per hour + per minute), plus one fresh
  per-minute window per Redis restart (it comes back empty), or a ``GET /login`` refused
  with 429;
- the run not doing what it claims: no recycle by memory, none by count, or no SIGHUP.

Writes the section "Soak" of bench/RESULTS.md and the plot bench/soak.png.

    SOAK_SECONDS=600 make soak          # or: .venv/bin/python -m bench.soak --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from bench.loadgen import Load
from bench.memory_cgroup import MemoryCgroup
from bench.results import RESULTS, Report, machine_line, write_section
from bench.stack import BEHIND_TLS_PROXY, Stack, start_stack

HERE = Path(__file__).resolve().parent
PLOT = HERE / "soak.png"
LIMIT_MB = 512
CLIENTS = 16
LOAD_PATHS = ("/", "/health/quick")
#: Workers live seconds (tens on a loaded machine): a young worker's copy-on-write growth of its
#: USS (bounded, but a trend over one minute) resets often enough not to look like a leak. Not
#: fewer: at 200 (a worker's life under 2 s once pages got faster) the worker holding the drill's
#: memory was mostly already being replaced by count when memory_guard looked, and memory_guard
#: rightly leaves a worker that gunicorn is stopping (half the 60-second runs saw no memory recycle).
RECYCLE_REQUESTS = 600
LOG_MAX_BYTES = 256 * 1024
LOG_BACKUP_COUNT = 3
OPS_TOKEN = "soak-operator-token-" + "s" * 20
LOGIN_LIMIT = (5, 30)  # per minute, per hour
PROBE_CLIENT = "203.0.113.7"
#: (absolute tolerance, unit) of each series checked for growth; the relative one is 10 %.
GROWTH_CHECKS: dict[str, tuple[float, str]] = {
    "uss_total_mb": (32.0, "MB"), "worker_rss_max_mb": (24.0, "MB"), "fds": (16.0, "fds"),
    "shm_bytes": (512 * 1024.0, "bytes"), "shm_files": (4.0, "files"),
}
RELATIVE_TOLERANCE = 0.10
#: A trend counts only beyond this many standard deviations of the residuals around it.
NOISE_SIGMAS = 2.0
TRANSPORT_ERROR_SHARE = 0.001
#: Memory pushes pause above this share of the limit (memory_guard's critical threshold is 0.85).
PUSH_CEILING = 0.90


# --- load ------------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers by path and status, transport errors, and 5xx/answers per second of the run."""

    answered: dict[str, int] = field(default_factory=dict)
    #: Requests per route whose connection failed before an answer arrived (the server may have answered).
    dropped: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    per_second: dict[int, list[int]] = field(default_factory=dict)  # second -> [answers, 5xx, errors]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, t: float, path: str, status: int | None, error: str = "") -> None:
        """Count one request that ended ``t`` seconds into the run."""
        with self.lock:
            bucket = self.per_second.setdefault(int(t), [0, 0, 0])
            if status is None:
                self.errors += 1
                bucket[2] += 1
                dropped = path.split("?", 1)[0]
                self.dropped[dropped] = self.dropped.get(dropped, 0) + 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{path} at {t:.1f}s: {error}")
                return
            route = path.split("?", 1)[0]
            self.answered[route] = self.answered.get(route, 0) + 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            bucket[0] += 1
            if status >= 500:
                bucket[1] += 1

    @property
    def total(self) -> int:
        """Requests answered (any status)."""
        return sum(self.answered.values())

    @property
    def server_errors(self) -> int:
        """5xx answers."""
        return sum(n for status, n in self.statuses.items() if status >= 500)


def request(url: str, tally: Tally | None, t0: float, headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int | None, str, Any]:
    """One request on a new connection, tallied when ``tally`` is given: (status, body, headers)."""
    req = urllib.request.Request(url, data=data, headers={**BEHIND_TLS_PROXY, **(headers or {})})
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    try:
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, body, got = response.status, response.read().decode(errors="replace"), response.headers
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read().decode(errors="replace"), exc.headers
    except (OSError, http.client.HTTPException) as exc:  # reading a body can break too (IncompleteRead)
        if tally is not None:
            tally.record(time.monotonic() - t0, path, None, str(exc))
        return None, "", None
    if tally is not None:
        tally.record(time.monotonic() - t0, path, status)
    return status, body, got


# --- what is measured ------------------------------------------------------------------


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample, sorted labels): value}`` of /metrics (its own requests are route /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text, _ = request(base + "/metrics", None, 0.0, {"Authorization": f"Bearer {OPS_TOKEN}"})
    if status != 200:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric_sum(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of ``name`` over the series carrying ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def directory_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path`` (files that vanish while counted are skipped)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return total, files


def sample_processes(master_pid: int) -> dict[str, float]:
    """RSS/USS (MB) of the master and each worker, and their open descriptors."""
    figures = {"workers": 0.0, "uss_total_mb": 0.0, "rss_master_mb": 0.0, "worker_rss_max_mb": 0.0,
               "worker_uss_max_mb": 0.0, "worker_uss_mean_mb": 0.0, "fds": 0.0}
    try:
        master = psutil.Process(master_pid)
        processes = [master, *master.children()]
    except psutil.NoSuchProcess:
        return figures
    uss = []
    for process in processes:
        try:
            info = process.memory_full_info()
            fds = process.num_fds()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a worker that just exited
        figures["fds"] += fds
        figures["uss_total_mb"] += info.uss / 2**20
        if process.pid == master_pid:
            figures["rss_master_mb"] = info.rss / 2**20
        else:
            uss.append(info.uss / 2**20)
            figures["worker_rss_max_mb"] = max(figures["worker_rss_max_mb"], info.rss / 2**20)
    figures["workers"] = float(len(uss))
    if uss:
        figures["worker_uss_max_mb"] = max(uss)
        figures["worker_uss_mean_mb"] = statistics.fmean(uss)
    return figures


def slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (units per second; 0 for < 3 points)."""
    if len(times) < 3:
        return 0.0
    mt, mv = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mt) ** 2 for t in times)
    return sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / spread if spread else 0.0


def growth_verdicts(samples: list[dict[str, float]], seconds: float) -> list[tuple[bool, str]]:
    """(ok, line) per series: projected growth over the run's second half against its tolerance."""
    second = [s for s in samples if s["t"] >= seconds / 2]
    verdicts = []
    for name, (absolute, unit) in GROWTH_CHECKS.items():
        if len(second) < 3:
            verdicts.append((False, f"{name}: too few samples in the second half ({len(second)})"))
            continue
        times = [s["t"] for s in second]
        values = [s[name] for s in second]
        b = slope(times, values)
        growth = b * (times[-1] - times[0])
        mt, mv = statistics.fmean(times), statistics.fmean(values)
        noise = NOISE_SIGMAS * statistics.pstdev([v - (mv + b * (t - mt)) for t, v in zip(times, values, strict=True)])
        tolerance = max(absolute, RELATIVE_TOLERANCE * statistics.median(values), noise)
        ok = growth <= tolerance
        verdicts.append((ok, f"{name}: second-half trend {growth:+.1f} {unit} (tolerance {tolerance:.1f} {unit}: "
                             f"max of {absolute:g}, 10% of the median, 2 sigma of the residuals "
                             f"{noise:.1f})"))
    return verdicts


# --- the run ---------------------------------------------------------------------------


@dataclass
class SoakResult(Report):
    """Figures, verdicts and the time series of one soak."""

    samples: list[dict[str, float]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)


def period_for(seconds: float) -> float:
    """Seconds between Redis kills (and memory pushes): a minute, or a quarter of a short run."""
    return 60.0 if seconds >= 240 else max(10.0, seconds / 4)


def run_soak(seconds: float, results: Path | None = RESULTS, plot: Path | None = PLOT,
             workdir: Path | None = None) -> SoakResult:
    """Run the soak for ``seconds``; write its RESULTS.md section and plot unless None."""
    result = SoakResult()
    period = period_for(seconds)
    result.say(machine_line())
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        cgroup = MemoryCgroup.create(LIMIT_MB)
        env = {
            "OPS_TOKEN": OPS_TOKEN, "GUNICORN_MAX_REQUESTS": str(RECYCLE_REQUESTS),
            "LOG_MAX_BYTES": str(LOG_MAX_BYTES), "LOG_BACKUP_COUNT": str(LOG_BACKUP_COUNT),
            "REDIS_BREAKER_RECOVERY_TIMEOUT": "2", "MEMORY_CHECK_INTERVAL": "0.5", "MEMORY_RECYCLE_COOLDOWN": "5",
            "OPERATIONS_LOGIN_RATE_LIMIT": f"{LOGIN_LIMIT[0]} per minute; {LOGIN_LIMIT[1]} per hour",
        }
        metrics_dir = Path(tempfile.mkdtemp(prefix="stevedores-soak-metrics-", dir="/dev/shm"
                                            if os.access("/dev/shm", os.W_OK) else None))
        stack.callback(shutil.rmtree, metrics_dir, True)
        env["METRICS_MULTIPROC_DIR"] = str(metrics_dir)
        wrap: Callable[[list[str]], list[str]] | None = None
        if isinstance(cgroup, MemoryCgroup):
            stack.callback(cgroup.remove)  # registered first: runs after gunicorn has stopped
            wrap = cgroup.command
            result.say(f"memory: a real {LIMIT_MB} MB memory cgroup (v{cgroup.version}): {cgroup.path.name}, a child "
                       f"of this process's own")
        else:
            env["MEMORY_LIMIT_MB"] = str(LIMIT_MB)
            result.say(f"memory: no cgroup ({cgroup}); MEMORY_LIMIT_MB={LIMIT_MB} stands in")
        s = start_stack(stack, workdir, env, drill_routes=True, wrap=wrap)
        assert s.server.proc is not None
        log = s.server.log()
        limit_line = next((line for line in log.splitlines() if "Container Memory" in line), "")
        announced = re.search(r"with (\d+) workers", log)
        result.say(f"gunicorn: {limit_line.split(': ', 1)[-1] if limit_line else '?'}; "
                   f"{announced.group(1) if announced else '?'} workers; "
                   f"GUNICORN_MAX_REQUESTS={RECYCLE_REQUESTS}; Redis killed every {period:.0f} s; "
                   f"{CLIENTS} clients on {', '.join(LOAD_PATHS)}; {seconds:.0f} s")
        _run(result, s, seconds, period, metrics_dir, workdir / "logs", cgroup)
    if results is not None:
        write_section("Soak", f"make soak (python -m bench.soak), SOAK_SECONDS={seconds:.0f}", result.lines, results,
                      after=f"![the soak's time series]({plot.name})" if plot else "")
    if plot is not None:
        draw(result, seconds, period, plot)
    return result


def _run(result: SoakResult, s: Stack, seconds: float, period: float, metrics_dir: Path, log_dir: Path,
         cgroup: MemoryCgroup | str) -> None:
    base = s.server.url
    master_pid = s.server.proc.pid  # type: ignore[union-attr]
    tally = Tally()
    before = scrape(base)  # the readiness probe's requests, not the soak's
    load = Load(base, LOAD_PATHS, clients=CLIENTS, timeout=30, headers=BEHIND_TLS_PROXY,
                on_record=lambda r: tally.record(r.started + r.elapsed, r.path, r.status, r.error or "")).start()
    t0 = time.monotonic() - load.now()  # the load's clock: events and answers on one time axis
    probe = LoginProbe(base, t0)
    probe_thread = threading.Thread(target=probe.run, args=(seconds,), daemon=True)
    probe_thread.start()
    # SIGHUP once, in the first half (a reload's transient, old and new workers side by side, is
    # not a trend), during Redis's outage, in a period after one without a memory push (old and
    # new workers plus the drill's memory: the kernel's OOM killer would act before memory_guard)
    sighup = period * max(1, round(0.3 * seconds / period)) + 0.45 * period
    schedule: list[tuple[float, str]] = [(sighup, "SIGHUP")]
    for k in range(math.ceil(seconds / period)):
        start = k * period
        schedule += [(start + 0.25 * period, "redis down"), (start + 0.60 * period, "redis up")]
        push = start + 0.70 * period
        # No push in the last period: memory_guard needs a period to recycle the worker it
        # grew, and a push cut off by the end of the run is a transient, not a trend (a
        # 60-second run once judged its own last push as growth).
        if not sighup - period < push < sighup and push < seconds - period:
            schedule.append((push, "memory pressure"))
    schedule = sorted((t, what) for t, what in schedule if t < seconds - 1)
    pushes: list[threading.Thread] = []
    done = threading.Event()
    sample_every = 1.0 if seconds <= 120 else 2.0
    next_sample = 0.0
    now = 0.0
    try:
        while now < seconds:
            now = time.monotonic() - t0
            while schedule and schedule[0][0] <= now:
                _, what = schedule.pop(0)
                result.events.append((now, what))
                if what == "redis down":
                    s.redis.kill()
                elif what == "redis up":
                    s.redis.start()
                elif what == "SIGHUP":
                    os.kill(master_pid, signal.SIGHUP)
                else:
                    pushes.append(threading.Thread(target=push_memory, args=(base, tally, t0, cgroup, done, period / 2),
                                                   daemon=True))
                    pushes[-1].start()
            if now >= next_sample:
                result.samples.append(take_sample(now, master_pid, metrics_dir, log_dir, cgroup, tally, base))
                next_sample += sample_every
            time.sleep(0.05)
    finally:
        done.set()
        for push in pushes:
            push.join(40)
        load.stop()
        probe.stop()
        probe_thread.join(40)
        if s.redis.proc is None or s.redis.proc.poll() is not None:
            s.redis.start()
    time.sleep(1.0)  # answers are complete; let the last worker exits be archived
    result.samples.append(take_sample(time.monotonic() - t0, master_pid, metrics_dir, log_dir, cgroup, tally, base))
    after = scrape(base)
    judge(result, tally, probe, before, after, seconds, period, metrics_dir)


def take_sample(t: float, master_pid: int, metrics_dir: Path, log_dir: Path, cgroup: MemoryCgroup | str,
                tally: Tally, base: str) -> dict[str, float]:
    """One row of the time series."""
    row = {"t": t, **sample_processes(master_pid)}
    row["shm_bytes"], row["shm_files"] = map(float, directory_bytes(metrics_dir))
    row["shm_files"] = float(len(list(metrics_dir.glob("*.db"))))
    row["log_bytes"] = float(directory_bytes(log_dir)[0]) if log_dir.exists() else 0.0
    row["cgroup_mb"] = cgroup.working_set_bytes() / 2**20 if isinstance(cgroup, MemoryCgroup) else 0.0
    with tally.lock:
        row["answered"], row["server_errors"], row["errors"] = float(tally.total), float(tally.server_errors), \
            float(tally.errors)
    if int(t) % 5 == 0:  # the counted total, every 5 s (a scrape costs the server a little)
        samples = scrape(base)
        row["counted"] = sum(metric_sum(samples, "stevedores_http_requests_total", route=p) for p in LOAD_PATHS)
    return row


def push_memory(base: str, tally: Tally, t0: float, cgroup: MemoryCgroup | str, done: threading.Event,
                hold: float) -> None:
    """Allocate through /drill/alloc until memory_guard recycles a worker (for ``hold`` seconds at most).

    Paced (4 x 32 MB, then 16 MB above 70 %, every 0.25 s) and paused while the cgroup's working set is above
    PUSH_CEILING of the limit: memory_guard is to act first, not the kernel's OOM killer
    (whose SIGKILL would drop the requests in flight). Each block is released after ``hold``
    seconds by the worker that holds it (if memory_guard has not recycled that one), so the
    drill's memory does not pile up across periods.
    """
    def recycles() -> float:
        return metric_sum(scrape(base), "stevedores_worker_recycles_total", cause="memory_critical")

    start = recycles()
    deadline = time.monotonic() + hold  # within the hold: the first blocks are not yet released
    with ThreadPoolExecutor(max_workers=4) as pool:
        while time.monotonic() < deadline and not done.is_set():
            used = cgroup.working_set_bytes() / (LIMIT_MB * 2**20) if isinstance(cgroup, MemoryCgroup) else 0.5
            if used < PUSH_CEILING:
                # 4 at once far from the limit: faster than workers recycled by count drop the blocks
                calls = 4 if used < 0.7 else 1
                url = base + f"/drill/alloc?mb={32 if used < 0.7 else 16}&hold={hold:.0f}"
                list(pool.map(lambda u: request(u, tally, t0), [url] * calls))
            time.sleep(0.25)
            if recycles() > start:
                return


class LoginProbe:
    """One client (its own X-Forwarded-For) posting a wrong password every second."""

    def __init__(self, base: str, t0: float) -> None:
        self.base, self.t0 = base, t0
        self.posts: dict[int, int] = {}  # status -> count
        self.pages: dict[int, int] = {}
        self.last_attempt = 0.0  # seconds into the run of the last attempt (a probe that died stops early)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop after the current attempt."""
        self._stop.set()

    def run(self, seconds: float) -> None:
        """Attempt once a second; look at the login page every 5 s."""
        headers = {"X-Forwarded-For": PROBE_CLIENT}
        cookie, token = self._session(headers)
        n = 0
        while not self._stop.is_set():
            if n % 5 == 0:
                status, body, got = request(self.base + "/login", None, self.t0, headers)
                if status is not None:
                    self.pages[status] = self.pages.get(status, 0) + 1
            form = urllib.parse.urlencode({"username": "soak-nobody", "password": "wrong", "csrf_token": token})
            status, _, _ = request(self.base + "/login", None, self.t0, {**headers, "Cookie": cookie,
                                   "Content-Type": "application/x-www-form-urlencoded"}, form.encode())
            if status is not None:
                self.posts[status] = self.posts.get(status, 0) + 1
            self.last_attempt = time.monotonic() - self.t0
            n += 1
            self._stop.wait(1.0)

    def _session(self, headers: dict[str, str]) -> tuple[str, str]:
        status, body, got = request(self.base + "/login", None, self.t0, headers)
        match = re.search(r'name="csrf_token" value="([^"]+)"', body)
        cookie = (got.get("Set-Cookie", "") if got is not None else "").split(";", 1)[0]
        if status is not None:
            self.pages[status] = self.pages.get(status, 0) + 1
        return cookie, match.group(1) if match else ""


def judge(result: SoakResult, tally: Tally, probe: LoginProbe, before: dict[Any, float], after: dict[Any, float],
          seconds: float, period: float, metrics_dir: Path) -> None:
    """Every verdict of the soak."""
    samples = result.samples
    result.say(f"requests answered {tally.total} ({tally.total / seconds:.0f}/s), statuses "
               f"{dict(sorted(tally.statuses.items()))}, transport errors {tally.errors}")
    if tally.error_samples:
        result.say("first transport errors: " + "; ".join(tally.error_samples))
    for name, (_absolute, unit) in GROWTH_CHECKS.items():
        values = [s[name] for s in samples]
        result.say(f"{name}: first {values[0]:.1f}, median {statistics.median(values):.1f}, max {max(values):.1f}, "
                   f"last {values[-1]:.1f} {unit}")
    logs = [s["log_bytes"] for s in samples]
    cgroup = [s["cgroup_mb"] for s in samples if s["cgroup_mb"]]
    if cgroup:
        result.say(f"cgroup working set: median {statistics.median(cgroup):.0f} MB, max {max(cgroup):.0f} MB "
                   f"of {LIMIT_MB} MB")
    for ok, line in growth_verdicts(samples, seconds):
        result.check(ok, f"no unbounded growth: {line}")
    log_bound = LOG_MAX_BYTES * (LOG_BACKUP_COUNT + 1) + 64 * 1024
    result.check(max(logs) <= log_bound, f"log directory within its rotation bound: max {max(logs) / 1024:.0f} KB "
                                         f"<= {log_bound / 1024:.0f} KB")
    workers = max(s["workers"] for s in samples)
    files_bound = 4 * (workers + 2) + 6
    result.check(max(s["shm_files"] for s in samples) <= files_bound,
                 f"metrics directory bounded: at most {max(s['shm_files'] for s in samples):.0f} files "
                 f"(bound {files_bound:.0f}: 4 per live process + archives); "
                 f"{len(list(metrics_dir.glob('*_archive.db')))} archives at the end")

    for route in LOAD_PATHS + ("/drill/alloc",):
        counted = metric_sum(after, "stevedores_http_requests_total", route=route) - \
            metric_sum(before, "stevedores_http_requests_total", route=route)
        answered, dropped = tally.answered.get(route, 0), tally.dropped.get(route, 0)
        # A request whose connection broke (a worker killed mid-response) may have been answered and
        # counted by the server: it may add to the count, never take from it.
        result.check(answered <= counted <= answered + dropped,
                     f"no lost metric on {route}: /metrics counted {counted:.0f}, answered {answered}"
                     + (f" (+ {dropped} whose connection broke, which the server may have counted)" if dropped else ""))
    result.check(tally.server_errors == 0, f"no 5xx (none needs a dead dependency here): {tally.server_errors}")
    share = tally.errors / max(1, tally.total + tally.errors)
    result.check(share <= TRANSPORT_ERROR_SHARE, f"transport errors {tally.errors} ({share:.3%}) <= "
                                                 f"{TRANSPORT_ERROR_SHARE:.1%}")

    allowed = sum(n for status, n in probe.posts.items() if status != 429)
    minutes = math.ceil(seconds / 60)
    # Redis comes back empty (no persistence in the soak, as a cache often runs): each restart may
    # open a fresh per-minute window; counting per worker instead of per instance (N x the limit)
    # still fails over the 600-second run. Measured, not hidden: the line gives both figures.
    restarts = sum(1 for _, what in result.events if what == "redis up")
    bound = min(LOGIN_LIMIT[0] * (minutes + 1 + restarts), LOGIN_LIMIT[1] + LOGIN_LIMIT[0] * (1 + restarts))
    attempts = sum(probe.posts.values())
    result.check(allowed <= bound, f"failed-login limit holds across Redis outages and recycles: {allowed} of "
                                   f"{attempts} wrong passwords let through in {seconds:.0f} s (bound {bound}: "
                                   f"{LOGIN_LIMIT[0]}/minute over {minutes} minute(s) + 1, and a fresh window per "
                                   f"empty Redis restart, {restarts}); statuses {probe.posts}"
                                   + ("" if attempts > LOGIN_LIMIT[0] else " (the probe was too slow to reach the "
                                                                          "limit on this machine)"))
    result.check(probe.last_attempt >= seconds - 15, f"the login probe ran to the end: last attempt at "
                                                     f"{probe.last_attempt:.0f} s of {seconds:.0f}")
    result.check(probe.pages.get(429, 0) == 0 and bool(probe.pages),
                 f"GET /login never refused: statuses {probe.pages}")

    memory = metric_sum(after, "stevedores_worker_recycles_total", cause="memory_critical")
    events = [what for _, what in result.events]
    result.say(f"events: {events.count('redis down')} Redis kills, {events.count('memory pressure')} memory pushes, "
               f"{events.count('SIGHUP')} SIGHUP; recycles by memory (metric) {memory:.0f}")
    result.check(memory >= 1 and events.count("SIGHUP") == 1 and events.count("redis down") >= 1,
                 "the faults happened: Redis killed, a memory recycle, a SIGHUP")


def draw(result: SoakResult, seconds: float, period: float, path: Path) -> None:
    """The time series as a PNG (matplotlib, Agg): memory, descriptors, directories, requests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in result.samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    series = [
        (axes[0], [("uss_total_mb", "USS total (MB)"), ("worker_rss_max_mb", "largest worker RSS (MB)"),
                   ("worker_uss_mean_mb", "mean worker USS (MB)"), ("cgroup_mb", "cgroup working set (MB)")]),
        (axes[1], [("fds", "open fds (master + workers)"), ("workers", "workers"),
                   ("shm_files", "metrics files")]),
        (axes[2], [("shm_bytes", "metrics dir (bytes)"), ("log_bytes", "log dir (bytes)")]),
    ]
    for axis, names in series:
        for key, label in names:
            axis.plot(t, [s.get(key, 0.0) for s in result.samples], label=label)
        axis.legend(loc="upper left", fontsize=8)
    counted = [(s["t"], s["counted"]) for s in result.samples if "counted" in s]
    axes[3].plot(t, [s["answered"] for s in result.samples], label="requests answered (client)")
    if counted:
        axes[3].plot([c[0] for c in counted], [c[1] for c in counted], "o", markersize=3,
                     label="http_requests_total (/metrics)")
    twin = axes[3].twinx()
    twin.plot(t, [s["server_errors"] + s["errors"] for s in result.samples], "r-", label="5xx + transport errors")
    twin.legend(loc="lower right", fontsize=8)
    axes[3].legend(loc="upper left", fontsize=8)
    axes[3].set_xlabel("seconds")
    down = [tt for tt, what in result.events if what == "redis down"]
    up = [tt for tt, what in result.events if what == "redis up"]
    for axis in axes:
        for start, end in zip(down, up + [seconds] * (len(down) - len(up)), strict=True):
            axis.axvspan(start, end, color="grey", alpha=0.15)
        for tt, what in result.events:
            if what in ("SIGHUP", "memory pressure"):
                axis.axvline(tt, color="purple" if what == "SIGHUP" else "orange", alpha=0.4, linewidth=0.8)
    fig.suptitle(f"Soak {seconds:.0f} s: grey = Redis down, orange = memory pressure, purple = SIGHUP "
                 f"({'PASS' if result.passed else 'FAIL'})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    """Run the soak for --seconds (SOAK_SECONDS, default 600)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    args = parser.parse_args()
    result = run_soak(args.seconds)
    print(f"soak {'PASSED' if result.passed else 'FAILED'}: {len(result.broken)} check(s) broken", flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

