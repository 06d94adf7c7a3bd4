"""Benchmark of the operations dashboard on the shared bench stack (bench/stack.py): gunicorn with every
installed plugin, production profile behind the TLS-proxy headers, the real PostgreSQL and a
redis-server of its own.

100 concurrent keep-alive clients (asyncio, one connection each) hit, phase by phase:
  baseline   GET /health/live: the stack's floor, measured in the same run
  dashboard  GET /            the operations dashboard (summary cached through the cache service)
  vessel     GET /vessels/N   a vessel page (tallies, SVG chart; not cached)
  tallies    POST /api/tallies with a bearer token, a fresh idempotency key each
  mixed      90 clients on the dashboard while 10 post tallies (writes invalidate the cached summary)
and prints requests/s, p50/p95/p99 latency and errors (non-2xx or transport failures) for each,
and each phase's throughput relative to the baseline.
Target (issue 8): 0 errors and p95 < 200 ms for the dashboard and the tally API at 100 clients.

    .venv/bin/python -m bench.bench_operations [--clients 100] [--seconds 10]

Every client comes from 127.0.0.1 (in production: 100 addresses), so the stack lifts the app-wide
limits and this run lifts OPERATIONS_TALLY_RATE_LIMIT. Gunicorn's max_requests recycling is off so
that recycles do not cut keep-alive connections in the middle of a phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import BEHIND_TLS_PROXY, start_stack  # noqa: E402

PROXY_HEADERS = "".join(f"{k}: {v}\r\n" for k, v in BEHIND_TLS_PROXY.items())


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    if headers.get("connection", "").lower() == "close":
        raise ConnectionResetError("server closed the connection")
    return status


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n{PROXY_HEADERS}\r\n".encode()


def _post_tally(call_id: int, token: str) -> bytes:
    body = json.dumps({"vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": 1,
                       "zone": "Z9", "idempotency_key": uuid.uuid4().hex}).encode()
    return (f"POST /api/tallies HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\n{PROXY_HEADERS}Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _client(port: int, make: Any, deadline: float, latencies: list[float], errors: list[str]) -> None:
    conn = None
    while time.perf_counter() < deadline:
        raw = make()
        start = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            status = await asyncio.wait_for(_request(*conn, raw), 30)
            latencies.append(time.perf_counter() - start)
            if not 200 <= status < 300:
                errors.append(f"HTTP {status}")
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            latencies.append(time.perf_counter() - start)
            errors.append(type(exc).__name__)
            if conn is not None:
                conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


async def _phase(port: int, makers: list[Any], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client(port, make, deadline, latencies, errors) for make in makers))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")

    kinds: dict[str, int] = {}
    for e in errors:
        kinds[e] = kinds.get(e, 0) + 1
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": pct(0.50), "p95": pct(0.95),
            "p99": pct(0.99), "mean": 1000 * statistics.fmean(ordered) if ordered else float("nan"),
            "errors": len(errors), "error_kinds": kinds}


def _prepare(database_url: str, workdir: Path) -> tuple[int, int, str]:
    """Migrate, load the demo sample, create a clerk with a token; returns (busy call, page call, token)."""
    from stevedores_operations.accounts import create_user, issue_token
    from stevedores_operations.demo import load_demo

    from stevedores import create_app

    app = create_app({"FLASK_ENV": "development", "SECRET_KEY": "bench-" + "k" * 40, "DATABASE_URL": database_url,
                      "LOG_FILE": str(workdir / "prepare.log"), "STEVEDORES_PLUGINS": "operations"})
    engine = app.extensions["stevedores"].engine
    load_demo(engine)
    create_user(engine, "benchclerk", "bench password 123", "clerk")
    token = issue_token(engine, "benchclerk", "bench")
    calls = app.test_client().get("/api/vessel-calls?status=operations_active").json["vessel_calls"]
    app.extensions["stevedores"].shutdown(app)
    by_name = {c["vessel_name"]: c["id"] for c in calls}
    return by_name["Grand Mistral"], by_name["Aurora Leader"], token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    args = parser.parse_args()

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-operations-") as tmp:
        workdir = Path(tmp)
        bench = start_stack(stack, workdir, env={"OPERATIONS_TALLY_RATE_LIMIT": "1000000 per minute",
                                                 "GUNICORN_MAX_REQUESTS": "0", "LOG_LEVEL": "INFO"})
        server = bench.server
        busy_call, page_call, token = _prepare(bench.database_url, workdir)
        n = args.clients
        probe = "/health/live"
        phases = {
            f"baseline GET {probe}": [lambda: _get(probe)] * n,
            "dashboard GET /": [lambda: _get("/")] * n,
            f"vessel GET /vessels/{page_call}": [lambda: _get(f"/vessels/{page_call}")] * n,
            "tallies POST /api/tallies": [lambda: _post_tally(busy_call, token)] * n,
            "mixed 90% GET / + 10% POST": [(lambda: _post_tally(busy_call, token)) if i % 10 == 0
                                           else (lambda: _get("/")) for i in range(n)],
        }
        workers = next((line.split("Final Workers:")[1].strip() for line in server.log().splitlines()
                        if "Final Workers:" in line), "?")
        print(f"gunicorn workers: {workers}; PostgreSQL; Redis; production profile; "
              f"{n} clients; {args.seconds:.0f} s per phase; {os.cpu_count()} CPUs (shared)")
        print(f"{'phase':<34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
        results = {}
        for name, makers in phases.items():
            asyncio.run(_phase(server.port, makers[: min(10, n)], 1.0))  # warm up
            result = asyncio.run(_phase(server.port, makers, args.seconds))
            results[name] = result
            print(f"{name:<34} {result['rps']:>8.0f} {result['p50']:>8.1f} {result['p95']:>8.1f} "
                  f"{result['p99']:>8.1f} {result['errors']:>7}" + (f"  {result['error_kinds']}"
                                                                    if result["errors"] else ""))
        base = results[f"baseline GET {probe}"]["rps"]
        print("throughput relative to the baseline: " + ", ".join(
            f"{name.split()[0]} {r['rps'] / base:.2f}x" for name, r in results.items() if r is not None and base))
        verdict = all(results[k]["errors"] == 0 and results[k]["p95"] < 200
                      for k in ("dashboard GET /", "tallies POST /api/tallies"))
        print(f"target (0 errors, p95 < 200 ms on dashboard and tally API): {'met' if verdict else 'NOT met'}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
