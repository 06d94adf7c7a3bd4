"""A circuit breaker that never holds its lock while the guarded call runs.

States: ``closed`` (calls go through; consecutive failures are counted), ``open``
(every call is refused at once until the recovery timeout has passed), ``half-open``
(a bounded number of probe calls go through; everyone else is refused at once; the
first probe to succeed closes the breaker, the first to fail opens it again, and so does
a half-open state whose probes have all been taken and none has reported within
``probe_timeout``: a caller that never reports cannot keep Redis unused until a restart).

Why not pybreaker: pybreaker 1.4.1 was measured first (8 threads each making one
200 ms guarded call). Its ``CircuitBreaker.call`` runs the call inside ``with
self._lock``, so the 8 calls took 1.60 s of wall time instead of 0.20 s: one slow
Redis call serializes every thread of the worker behind it. In half-open state the
same lock made all 8 concurrent callers run the guarded call one after another (no
bound on probes, nobody refused at once; the last caller waited 1.60 s). Both break
the two rules this breaker exists for, so it is written here instead.

How it stays correct without holding the lock during the call: :meth:`admit` hands
out a :class:`Ticket` stamped with the breaker's *generation* (bumped on every state
change). Outcomes reported with a ticket from an older generation are ignored, so a
burst of calls that started before the breaker opened cannot re-open or close it
after the fact, and only the admitted probes decide how half-open ends.

State lives in process memory (a breaker that guards Redis cannot keep its state in
Redis) and time comes from an injectable monotonic clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("stevedores.redis_resilience")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

#: Gauge values for ``redis_breaker_state`` (docs/plugins.md).
STATE_GAUGE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class Ticket:
    """Permission for one call: the generation it was granted in, and whether it is a probe."""

    generation: int
    probe: bool = False


@dataclass(frozen=True)
class Transition:
    """One state change, handed to the listener after the lock is released."""

    old: str
    new: str
    failures: int
    reason: str
    recovery_timeout: float
    probes: int


@dataclass(frozen=True)
class BreakerSnapshot:
    """The breaker's figures at one instant (for health checks and status pages)."""

    state: str
    consecutive_failures: int
    seconds_until_probe: float | None
    last_failure: str
    transitions: int


class CircuitBreaker:
    """Closed / open / half-open breaker, thread-safe, with bounded half-open probes.

    ``probe_timeout`` (seconds, None: never) bounds how long the half-open state waits for its
    probes: once every probe is taken and this long has passed since it began, the next call to
    :meth:`admit` opens the breaker again (a probe that reports later is ignored, as any outcome
    from an older generation).

    ``on_transition`` is called with a :class:`Transition` after every state change, outside the
    state lock, one at a time and in the order the changes happened (log and report from it; it
    must not raise; it may call :meth:`snapshot`).
    """

    def __init__(self, failure_threshold: int = 5, recovery_timeout: float = 60.0, half_open_probes: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[Transition], None] | None = None,
                 probe_timeout: float | None = None) -> None:
        if failure_threshold < 1 or half_open_probes < 1 or recovery_timeout < 0 or (probe_timeout or 0) < 0:
            raise ValueError("failure_threshold and half_open_probes must be >= 1, recovery_timeout and "
                             "probe_timeout >= 0")
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_probes = half_open_probes
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0
        #: The ticket every call gets while closed (None otherwise): admitting is then one attribute read.
        self._closed_ticket: Ticket | None = Ticket(0)
        self._failures = 0
        self._opened_at = 0.0
        self._half_open_at = 0.0
        self._probes_started = 0
        self._last_failure = ""
        self._transitions = 0
        self._pending: deque[Transition] = deque()
        self._notify_lock = threading.Lock()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (an open breaker past its timeout still says open)."""
        return self._state

    def admit(self) -> Ticket | None:
        """A ticket when the call may go to Redis now, None when it must use the fallback at once."""
        closed = self._closed_ticket  # one attribute read, no lock: every call on a healthy Redis asks
        if closed is not None:
            return closed
        event = None
        with self._lock:
            if self._state == CLOSED:
                return Ticket(self._generation)
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.recovery_timeout:
                    return None
                event = self._move(HALF_OPEN, self._last_failure)
            if self._probes_started >= self.half_open_probes:
                ticket = None
                if self._probes_overdue():
                    self._failures += 1
                    self._last_failure = f"no probe reported within {self.probe_timeout:g} s"
                    event = self._move(OPEN, self._last_failure)
            else:
                self._probes_started += 1
                ticket = Ticket(self._generation, probe=True)
        self._notify(event)
        return ticket

    def succeeded(self, ticket: Ticket) -> None:
        """The call admitted with ``ticket`` got an answer from Redis."""
        if ticket.generation == self._generation and self._state == CLOSED and not self._failures:
            return  # nothing to change; as if it happened before any failure or move racing with it
        event = None
        with self._lock:
            if ticket.generation != self._generation:
                return
            if self._state == CLOSED:
                self._failures = 0
            elif self._state == HALF_OPEN and ticket.probe:
                self._failures = 0
                event = self._move(CLOSED, "probe succeeded")
        self._notify(event)

    def failed(self, ticket: Ticket, reason: str) -> None:
        """The call admitted with ``ticket`` failed (connection error, timeout, too slow)."""
        event = None
        with self._lock:
            if ticket.generation != self._generation:
                return
            self._last_failure = reason
            if self._state == CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    event = self._move(OPEN, reason)
            elif self._state == HALF_OPEN and ticket.probe:
                self._failures += 1
                event = self._move(OPEN, reason)
        self._notify(event)

    def _probes_overdue(self) -> bool:
        """True when the half-open state has waited ``probe_timeout`` for its probes (the lock is held)."""
        return self.probe_timeout is not None and self._clock() - self._half_open_at >= self.probe_timeout

    def snapshot(self) -> BreakerSnapshot:
        """Current state, consecutive failures and seconds until the next probe (open only)."""
        with self._lock:
            until = None
            if self._state == OPEN:
                until = max(0.0, self.recovery_timeout - (self._clock() - self._opened_at))
            return BreakerSnapshot(self._state, self._failures, until, self._last_failure, self._transitions)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held by a thread that is gone)."""
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()

    def _move(self, new: str, reason: str) -> Transition:
        """Change state; the caller holds the lock and notifies after releasing it."""
        self._closed_ticket = None  # first: no call is admitted lock-free into the new state by mistake
        self._generation += 1
        if new == CLOSED:
            self._closed_ticket = Ticket(self._generation)
        old, self._state = self._state, new
        self._transitions += 1
        self._probes_started = 0
        if new == OPEN:
            self._opened_at = self._clock()
        elif new == HALF_OPEN:
            self._half_open_at = self._clock()
        event = Transition(old, new, self._failures, reason, self.recovery_timeout, self.half_open_probes)
        if self._on_transition is not None:
            self._pending.append(event)  # queued under the state lock: the queue's order is the true order
        return event

    def _notify(self, event: Transition | None) -> None:
        """Deliver queued transitions in order, one deliverer at a time, never under the state lock.

        A thread that finds another one delivering leaves its event to it; the deliverer
        re-checks the queue after releasing, so no event is stranded.
        """
        if event is None or self._on_transition is None:
            return
        while self._pending:
            if not self._notify_lock.acquire(blocking=False):
                return
            try:
                while self._pending:
                    try:
                        self._on_transition(self._pending.popleft())
                    except Exception:  # noqa: BLE001 - a listener must never break a Redis call
                        log.exception("Circuit breaker transition listener failed")
            finally:
                self._notify_lock.release()
