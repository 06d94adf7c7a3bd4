"""Running health checks concurrently, each bounded by its own timeout.

- Checks run on a small pool of **daemon** threads owned by this plugin, created lazily
  in the process that uses them (never inherited across a fork). Daemon threads matter:
  a check that hangs forever must not keep a gunicorn worker (or the interpreter) from
  exiting, which the standard ThreadPoolExecutor's joined threads would.
- A check that raises, returns something invalid, or does not finish within its
  timeout is a failed result; the others are unaffected, and a run takes at most the
  largest timeout.
- Each check is single-flight: while one execution of a check is in progress, every
  caller (concurrent /health requests, the background refresher, /health/ready) waits on
  that same execution instead of starting another. A check that hangs therefore ties up
  at most one thread, and a flood of /health requests reaches a dependency once at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from stevedores import HealthCheck
from stevedores.forking import renew_in_children

from .redact import operator_error, public_error, public_figures
from .report import FAILED, OUTCOME_OF_STATUS, CheckResult, Report

log = logging.getLogger("stevedores.health")


class DaemonPool:
    """A bounded pool of daemon threads fed from a queue; reset in a forked child.

    Threads are started on demand (up to ``size``) when no idle thread is waiting.
    """

    def __init__(self, size: int, name: str = "stevedores-health") -> None:
        self.size, self.name = max(1, size), name
        self.after_fork()
        renew_in_children(self)

    def after_fork(self) -> None:
        """A new pool (stevedores.forking): threads do not survive a fork; neither may their locks."""
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Future, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on a pool thread; the future carries its result or exception."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("health check pool is shut down")
            self._queue.put((future, fn))
            if self._idle <= 0 and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1  # an idle thread will take it
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    @property
    def threads(self) -> int:
        """Threads started so far in this process."""
        return len(self._threads)

    def shutdown(self) -> None:
        """Let idle threads exit; busy (possibly hung) ones are daemons and die with the process."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)


@dataclass
class _Execution:
    check: HealthCheck
    started: float
    future: Future


class CheckRunner:
    """Runs ``(plugin, HealthCheck)`` pairs concurrently and builds a :class:`Report`."""

    def __init__(self, checks: Sequence[tuple[str, HealthCheck]], *, secrets: Iterable[str] = (),
                 on_result: Callable[[CheckResult], None] | None = None) -> None:
        # critical checks first, then by name: a stable order for people and diffs
        self.checks = sorted(checks, key=lambda pc: (not pc[1].critical, pc[1].name))
        self.secrets = tuple(secrets)
        self.on_result = on_result
        # enough threads for one execution of every check plus one hung execution of each
        self.pool = DaemonPool(2 * len(self.checks) + 1)
        self.after_fork()
        renew_in_children(self)

    def after_fork(self) -> None:
        """In a forked child (stevedores.forking): the parent's executions and lock are not ours."""
        self._lock = threading.Lock()
        self._running: dict[str, _Execution] = {}

    def run(self, *, critical_only: bool = False) -> Report:
        """Run every check (or the critical ones) and wait at most for the largest timeout."""
        selected = [(p, c) for p, c in self.checks if c.critical or not critical_only]
        executions = [(plugin, self._execution(check)) for plugin, check in selected]
        results = [self._await(plugin, execution) for plugin, execution in executions]
        public = {r.name: public_figures(r.figures, self.secrets) for r in results}
        if self.on_result is not None:
            for result in results:
                self.on_result(result)
        return Report.now(results, public)

    def _execution(self, check: HealthCheck) -> _Execution:
        with self._lock:
            current = self._running.get(check.name)
            if current is not None and not current.future.done():
                return current  # join the execution in progress (or the hung one)
            execution = _Execution(check, time.monotonic(), self.pool.submit(lambda: _call(check)))
            self._running[check.name] = execution
            return execution

    def _await(self, plugin: str, execution: _Execution) -> CheckResult:
        check = execution.check
        deadline = execution.started + check.timeout
        try:
            raised, value, elapsed = execution.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            elapsed = time.monotonic() - execution.started
            exc = TimeoutError(f"did not finish within {check.timeout:g}s")
            if elapsed > check.timeout * 1.5:
                exc = TimeoutError(f"still running after {elapsed:.1f}s (timeout {check.timeout:g}s)")
            return self._failure(plugin, check, exc, elapsed)
        except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit inside a check
            return self._failure(plugin, check, exc, time.monotonic() - execution.started)
        if raised:
            return self._failure(plugin, check, value, elapsed)
        return self._result(plugin, check, value, elapsed)

    def _result(self, plugin: str, check: HealthCheck, value: Any, elapsed: float) -> CheckResult:
        if not isinstance(value, Mapping):
            return self._failure(plugin, check, InvalidResult(f"returned {type(value).__name__}, not a mapping"),
                                 elapsed)
        status = value.get("status")
        if status not in OUTCOME_OF_STATUS:
            return self._failure(plugin, check, InvalidResult(f"status {status!r} is not one of "
                                                              f"{', '.join(OUTCOME_OF_STATUS)}"), elapsed)
        figures = {str(k): v for k, v in value.items() if k not in ("status", "response_time_ms")}
        return CheckResult(check.name, plugin, check.critical, status, _ms(elapsed), figures,
                           description=check.description, public=check.public)

    def _failure(self, plugin: str, check: HealthCheck, exc: BaseException, elapsed: float) -> CheckResult:
        return CheckResult(check.name, plugin, check.critical, "error", _ms(elapsed), {},
                           error=public_error(exc, self.secrets), error_detail=operator_error(exc, self.secrets),
                           description=check.description, public=check.public)

    def shutdown(self) -> None:
        """Release the pool's idle threads."""
        self.pool.shutdown()


class InvalidResult(Exception):
    """A check returned something other than a mapping with a known status."""


def _call(check: HealthCheck) -> tuple[bool, Any, float]:
    """``(raised, value or exception, seconds)`` of one call of the check."""
    started = time.perf_counter()
    try:
        value = check.func()
    except Exception as exc:  # noqa: BLE001 - reported as the check's failure
        return True, exc, time.perf_counter() - started
    return False, value, time.perf_counter() - started


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class TransitionLog:
    """Logs a check only when its outcome changes (a failing check polled every second logs once)."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, result: CheckResult) -> None:
        """Record ``result``; log a warning when it starts failing and an info line when it recovers."""
        with self._lock:
            before, self._last[result.name] = self._last.get(result.name), result.outcome
        if before == result.outcome:
            return
        if result.outcome == FAILED:
            log.warning("Health check %s failed (%s): %s", result.name,
                        "critical" if result.critical else "non-critical", result.error_detail or result.status)
        elif before == FAILED:
            log.info("Health check %s recovered: %s", result.name, result.status)
