"""Slow clients (issue 14): connections that send their request head one byte per second.

gunicorn's gthread worker gives each connection a thread while its head arrives, so a
handful of such clients stop an instance for everyone (gunicorn's own advice: a buffering
proxy in front). This drill measures both sides on the fleet (bench/fleet.py):

- through HAProxy (deploy/haproxy.cfg: ``option http-buffer-request``, ``timeout
  http-request 10s``): ``connections`` slow clients held open, /health/quick probed through
  the balancer; the promise is p99 < 500 ms;
- gunicorn alone: slow clients straight to one instance, more at each step, until
  /health/quick stops answering within 2 s: what an unprotected instance withstands.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from bench.fleet import Fleet, FleetResult, probe

#: The promise of issue 14 for /health/quick through the buffering proxy.
P99_LIMIT = 0.5
#: A probe slower than this counts as stalled when measuring gunicorn alone.
STALL_SECONDS = 2.0


@dataclass
class SlowClients:
    """``count`` connections to ``port`` each sending one byte of an endless header per second
    (reconnecting when the server gives up on them, as an attacker would)."""

    port: int
    count: int
    context: ssl.SSLContext | None = None
    reconnects: int = 0
    _socks: list[socket.socket | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlowClients:
        """Open every connection, send the request line, then trickle in the background."""
        self._socks = [self._open() for _ in range(self.count)]
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection."""
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            if sock is not None:
                sock.close()

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(b"GET /health/quick HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for i, sock in enumerate(self._socks):
                if self._stop.is_set():
                    return
                try:
                    if sock is None:
                        raise OSError("reconnect")
                    sock.sendall(b"a")
                except OSError:
                    if sock is not None:
                        sock.close()
                    self.reconnects += 1
                    self._socks[i] = self._open()


def _probe_through_lb(fleet: Fleet, seconds: float) -> list[float]:
    """/health/quick through HAProxy on a fresh TLS connection every 50 ms; seconds each (inf: failed)."""
    import http.client

    context = fleet.lb.ssl_context()
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", fleet.lb.port, timeout=5, context=context)
            conn.request("GET", "/health/quick")
            ok = conn.getresponse().status == 200
            conn.close()
        except (OSError, http.client.HTTPException):
            ok = False
        times.append(time.monotonic() - started if ok else float("inf"))
        time.sleep(0.05)
    return times


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))] if ordered else float("inf")


def gunicorn_alone(fleet: Fleet, steps: tuple[int, ...], probes: int = 10) -> list[tuple[int, float, bool]]:
    """Slow clients straight to instance 1, ``steps`` of them in turn: (count, median probe s, stalled:
    at least half of ``probes`` sequential probes got no answer within STALL_SECONDS).

    A fixed number of probes, not a time window: a window samples the quick answers of a worker
    that still has a free thread far more often than the 2 s timeouts of one that has none."""
    server = fleet.instances[0]
    found = []
    for count in steps:
        slow = SlowClients(server.port, count).start()
        try:
            time.sleep(1.0)
            times = []
            for _ in range(probes):
                status, elapsed = probe(server.url + "/health/quick", timeout=STALL_SECONDS)
                times.append(elapsed if status == 200 else float("inf"))
        finally:
            slow.stop()
        median = sorted(times)[len(times) // 2]
        stalled = sum(t == float("inf") for t in times) * 2 >= len(times)
        found.append((count, median, stalled))
        time.sleep(0.5)
        if stalled:
            break
    return found


def drill_slow_clients(fleet: Fleet, seconds: float, connections: int = 200,
                       steps: tuple[int, ...] = (4, 8, 12, 16, 24, 32, 64)) -> FleetResult:
    """``connections`` slow clients through HAProxy leave /health/quick p99 < 500 ms; then
    measure how many slow clients one instance withstands without the proxy."""
    slow = SlowClients(fleet.lb.port, connections, fleet.lb.ssl_context()).start()
    try:
        time.sleep(1.0)
        opened = sum(s is not None for s in slow._socks)
        times = _probe_through_lb(fleet, seconds)
    finally:
        slow.stop()
    p99, failed = _p99(times), sum(t == float("inf") for t in times)
    problems = []
    if p99 >= P99_LIMIT or failed:
        problems.append(f"/health/quick through HAProxy p99 {p99 * 1000:.0f} ms, {failed} failed")
    alone = gunicorn_alone(fleet, steps) if steps else []
    threads = int(fleet.instances[0].env.get("WEB_WORKERS", "2")) * 4
    stalled_at = next((count for count, _s, stalled in alone if stalled), None)
    figures = (f"through HAProxy: {opened} slow connections, {len(times)} probes of /health/quick, "
               f"p99={p99 * 1000:.0f}ms max={max(times) * 1000:.0f}ms failed={failed}, reconnects={slow.reconnects}; "
               f"gunicorn alone ({threads} threads: {fleet.instances[0].env.get('WEB_WORKERS', '2')} workers x 4): "
               + ", ".join(f"{c} slow -> median {s * 1000:.0f}ms" if s != float("inf") else f"{c} slow -> no answer"
                           for c, s, _st in alone)
               + (f"; stalls at {stalled_at}" if stalled_at else "; no stall up to the last step"))
    return FleetResult("slow_clients", figures, problems)
