"""The circuit breaker's state machine, driven by a fake monotonic clock."""

from __future__ import annotations

import threading
import time

import pytest
from stevedores_redis_resilience.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, Transition

from stevedores.testing import FakeClock


def make(threshold: int = 3, recovery: float = 10.0, probes: int = 1) -> tuple[CircuitBreaker, FakeClock, list]:
    clock, events = FakeClock(), []
    breaker = CircuitBreaker(threshold, recovery, probes, clock=clock, on_transition=events.append)
    return breaker, clock, events


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.failed(ticket, "ConnectionError: refused")


def test_opens_after_exactly_the_threshold_of_consecutive_failures() -> None:
    breaker, _clock, events = make(threshold=3)
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    assert [(e.old, e.new, e.failures) for e in events] == [(CLOSED, OPEN, 3)]
    assert events[0].reason == "ConnectionError: refused"


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _clock, _events = make(threshold=3)
    fail(breaker, 2)
    breaker.succeeded(breaker.admit())
    fail(breaker, 2)
    assert breaker.state == CLOSED
    assert breaker.snapshot().consecutive_failures == 2


def test_open_refuses_until_the_recovery_timeout_then_admits_exactly_one_probe() -> None:
    breaker, clock, events = make(threshold=1, recovery=10.0, probes=1)
    fail(breaker)
    clock.advance(9.9)
    assert breaker.admit() is None
    assert breaker.snapshot().seconds_until_probe == pytest.approx(0.1)
    clock.advance(0.1)
    probe = breaker.admit()
    assert probe is not None and probe.probe
    assert breaker.state == HALF_OPEN
    assert [breaker.admit() for _ in range(50)] == [None] * 50  # everyone else: fallback at once
    breaker.succeeded(probe)
    assert breaker.state == CLOSED
    assert [e.new for e in events] == [OPEN, HALF_OPEN, CLOSED]
    assert breaker.admit() is not None


def test_a_failed_probe_reopens_for_a_full_recovery_timeout() -> None:
    breaker, clock, events = make(threshold=1, recovery=5.0)
    fail(breaker)
    clock.advance(5.0)
    probe = breaker.admit()
    breaker.failed(probe, "TimeoutError: read")
    assert breaker.state == OPEN
    clock.advance(4.9)
    assert breaker.admit() is None
    clock.advance(0.1)
    assert breaker.admit() is not None
    assert [e.new for e in events] == [OPEN, HALF_OPEN, OPEN, HALF_OPEN]


def test_a_probe_that_never_reports_reopens_the_breaker_after_the_probe_timeout() -> None:
    clock, events = FakeClock(), []
    breaker = CircuitBreaker(1, 5.0, 1, clock=clock, on_transition=events.append, probe_timeout=5.0)
    fail(breaker)
    clock.advance(5.0)
    lost = breaker.admit()  # a caller takes the only probe and never reports
    assert lost is not None and lost.probe
    clock.advance(4.9)
    assert breaker.admit() is None and breaker.state == HALF_OPEN  # within the deadline: still waiting
    clock.advance(0.1)
    assert breaker.admit() is None  # overdue: opened again, for a full recovery timeout
    assert breaker.state == OPEN
    assert breaker.snapshot().last_failure == "no probe reported within 5 s"
    clock.advance(5.0)
    probe = breaker.admit()
    assert probe is not None and probe.probe  # a new probe, where without the deadline none would ever come
    breaker.succeeded(lost)  # the lost probe's late answer belongs to a finished half-open period
    assert breaker.state == HALF_OPEN
    breaker.succeeded(probe)
    assert breaker.state == CLOSED
    assert [e.new for e in events] == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_without_a_probe_timeout_an_unreported_probe_holds_the_half_open_state() -> None:
    breaker, clock, _events = make(threshold=1, recovery=1.0)
    fail(breaker)
    clock.advance(1.0)
    assert breaker.admit() is not None
    clock.advance(3600.0)
    assert breaker.admit() is None and breaker.state == HALF_OPEN


def test_the_redis_service_bounds_its_probes_by_one_recovery_timeout() -> None:
    from stevedores_redis_resilience.client import ResilientRedis

    assert ResilientRedis("redis://127.0.0.1:1/0", recovery_timeout=60.0).breaker.probe_timeout == 60.0
    assert ResilientRedis("redis://127.0.0.1:1/0", recovery_timeout=0.1, connect_timeout=0.3,
                          read_timeout=0.3).breaker.probe_timeout == pytest.approx(0.6)


def test_half_open_admits_the_configured_number_of_probes_and_the_first_success_closes() -> None:
    breaker, clock, _events = make(threshold=1, recovery=1.0, probes=3)
    fail(breaker)
    clock.advance(1.0)
    probes = [breaker.admit() for _ in range(5)]
    assert [p is not None for p in probes] == [True, True, True, False, False]
    breaker.succeeded(probes[1])
    assert breaker.state == CLOSED
    breaker.failed(probes[0], "late")  # a probe of the finished half-open period changes nothing
    assert breaker.state == CLOSED


def test_outcomes_of_calls_admitted_before_a_state_change_are_ignored() -> None:
    breaker, clock, events = make(threshold=2, recovery=1.0)
    in_flight = [breaker.admit() for _ in range(10)]  # a burst admitted while closed
    for ticket in in_flight[:2]:
        breaker.failed(ticket, "refused")
    assert breaker.state == OPEN
    for ticket in in_flight[2:]:
        breaker.failed(ticket, "refused")  # late failures do not reset the open timer
    clock.advance(1.0)
    probe = breaker.admit()
    breaker.succeeded(in_flight[2])  # a stale success does not close a half-open breaker
    assert breaker.state == HALF_OPEN
    breaker.succeeded(probe)
    assert breaker.state == CLOSED
    assert [e.new for e in events] == [OPEN, HALF_OPEN, CLOSED]


def test_no_lock_is_held_while_a_call_runs() -> None:
    """One thread sits inside a slow "call"; 50 others still get their answer at once."""
    breaker = CircuitBreaker(5, 60.0, 1)
    inside, release = threading.Event(), threading.Event()

    def slow_caller() -> None:
        ticket = breaker.admit()
        inside.set()
        release.wait(5)
        breaker.succeeded(ticket)

    slow = threading.Thread(target=slow_caller)
    slow.start()
    assert inside.wait(5)
    started = time.monotonic()
    for _ in range(50):
        breaker.succeeded(breaker.admit())
    assert time.monotonic() - started < 0.5  # would wait for release (5 s) if the lock were held
    release.set()
    slow.join(5)


def test_transition_listener_runs_outside_the_lock() -> None:
    seen: list[str] = []
    breaker: CircuitBreaker

    def listener(event: Transition) -> None:
        seen.append(breaker.snapshot().state)  # would deadlock if called under the lock

    breaker = CircuitBreaker(1, 1.0, 1, on_transition=listener)
    fail(breaker)
    assert seen == [OPEN]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 1.0, 0)


def test_transitions_reach_the_listener_in_the_order_they_happened() -> None:
    """Many threads flipping the breaker: the listener's story is a consistent chain, nothing lost."""
    seen: list[Transition] = []

    def listener(event: Transition) -> None:
        time.sleep(0.0001)  # invite other threads to change state meanwhile
        seen.append(event)

    breaker = CircuitBreaker(1, 0.0, 1, on_transition=listener)

    def flip(n: int) -> None:
        for i in range(300):
            ticket = breaker.admit()
            if ticket is not None:
                (breaker.failed(ticket, "x") if (i + n) % 3 else breaker.succeeded(ticket))

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == breaker.snapshot().transitions > 10
    for before, after in zip(seen[:-1], seen[1:], strict=True):
        assert before.new == after.old, [(e.old, e.new) for e in seen]
