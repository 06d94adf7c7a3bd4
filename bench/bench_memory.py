"""Per-worker memory of the assembled dashboard under real gunicorn.

Starts gunicorn (4 workers by default, the bundled configuration, preloaded app) twice:
first with the core alone (every plugin disabled: the baseline), then with every
installed plugin. Each worker serves some requests, then the script prints per
process USS (private: what a worker costs on top of the shared, preloaded heap),
PSS (shared pages split between their users; the tree's PSS adds up to its real
footprint) and RSS (counts shared pages in every process), the total for the
workers, and the per-worker USS against the target (40 MB; the deployment guide
budgets 64 MB per worker).

    .venv/bin/python bench/bench_memory.py [--workers 4] [--requests 400] [--target-uss-mb 40]

Figures depend on the machine and on what else runs on it; compare the two runs
of one invocation (the ratio), not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import psutil

from stevedores.testing import stop_process

MB = 1024 * 1024
PATHS = ("/", "/health", "/health/live", "/health/quick")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> int:
    """Status of GET ``url`` (any HTTP status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def plugin_names() -> list[str]:
    """Names of the installed ``stevedores`` entry points."""
    return sorted({ep.name for ep in metadata.entry_points(group="stevedores")})


def measure(label: str, workers: int, requests: int, extra_env: dict[str, str], workdir: Path) -> dict:
    """Start gunicorn, warm every worker up, and return the tree's figures."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STEVEDORES_", "WEB_", "MEMORY_", "REDIS_", "OPS_"))}
    env.update({"PORT": str(port), "WEB_WORKERS": str(workers), "MEMORY_LIMIT_MB": str(max(512, 64 * workers)),
                "FLASK_ENV": "testing", "LOG_FILE": "none", "LOG_LEVEL": "WARNING",
                "SECRET_KEY": "bench-" + "x" * 40, "GUNICORN_MAX_REQUESTS": "0",
                "DATABASE_URL": f"sqlite:///{workdir / (label + '.sqlite3')}", **extra_env})
    log_path = workdir / f"{label}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:stevedores.gunicorn_conf",
                                 "stevedores.wsgi:application"], env=env, cwd=workdir, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while get(base + "/") == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        master = psutil.Process(proc.pid)
        deadline = time.monotonic() + 20
        while len(master.children()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the last worker finish booting
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, [base + PATHS[i % len(PATHS)] for i in range(requests)]))
        time.sleep(0.5)
        rows = []
        for role, p in [("master", master)] + [("worker", c) for c in master.children()]:
            full = p.memory_full_info()
            rows.append({"role": role, "pid": p.pid, "uss": full.uss, "pss": full.pss, "rss": full.rss})
        return {"label": label, "rows": rows, "statuses": statuses}
    finally:
        stop_process(proc, timeout=30)


def report(result: dict, target_uss_mb: float) -> tuple[float, float]:
    """Print one run; returns (mean worker USS MB, worker PSS total MB)."""
    rows = result["rows"]
    workers = [r for r in rows if r["role"] == "worker"]
    answered = sum(1 for s in result["statuses"] if s)
    print(f"\n== {result['label']} ({len(workers)} workers, {answered}/{len(result['statuses'])} requests answered)")
    print(f"{'process':<8} {'pid':>7} {'USS MB':>8} {'PSS MB':>8} {'RSS MB':>8}  target")
    for r in rows:
        verdict = "" if r["role"] == "master" else ("ok" if r["uss"] / MB <= target_uss_mb else "OVER")
        print(f"{r['role']:<8} {r['pid']:>7} {r['uss'] / MB:>8.1f} {r['pss'] / MB:>8.1f} {r['rss'] / MB:>8.1f}  "
              f"{verdict}")
    uss = sum(r["uss"] for r in workers) / MB
    pss = sum(r["pss"] for r in workers) / MB
    rss = sum(r["rss"] for r in workers) / MB
    tree_pss = sum(r["pss"] for r in rows) / MB
    print(f"{len(workers)}-worker total: USS {uss:.1f} MB, PSS {pss:.1f} MB, RSS {rss:.1f} MB "
          f"(whole tree with master: PSS {tree_pss:.1f} MB)")
    mean_uss = uss / max(1, len(workers))
    print(f"per worker: USS {mean_uss:.1f} MB (max {max(r['uss'] for r in workers) / MB:.1f}), "
          f"RSS {rss / max(1, len(workers)):.1f} MB; target USS <= {target_uss_mb:g} MB: "
          f"{'met' if all(r['uss'] / MB <= target_uss_mb for r in workers) else 'NOT met'}")
    return mean_uss, tree_pss


def main() -> None:
    """Run the baseline and the assembled app and print both, with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400, help="Requests spread over the workers before measuring.")
    parser.add_argument("--target-uss-mb", type=float, default=40.0)
    args = parser.parse_args()
    names = plugin_names()
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, plugins installed: {', '.join(names)}")
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        core = measure("core alone (baseline)", args.workers, args.requests,
                       {"STEVEDORES_DISABLE_PLUGINS": ",".join(names)}, workdir)
        full = measure("all plugins", args.workers, args.requests, {}, workdir)
    core_uss, core_pss = report(core, args.target_uss_mb)
    full_uss, full_pss = report(full, args.target_uss_mb)
    print(f"\nall plugins / core alone: per-worker USS x{full_uss / core_uss:.2f} "
          f"(+{full_uss - core_uss:.1f} MB), tree PSS x{full_pss / core_pss:.2f} (+{full_pss - core_pss:.1f} MB)")
    print("Note: shared machine; figures vary between runs by a few MB.")


if __name__ == "__main__":
    main()
