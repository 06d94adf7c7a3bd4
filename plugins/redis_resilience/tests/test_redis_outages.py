"""Real redis-server faults: kill -9, SIGSTOP, restart, and many threads through all of it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import redis
from stevedores_redis_resilience.health import redis_check

LOGGER = "stevedores.redis_resilience"


def breaker_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "Circuit breaker" in r.getMessage()]


def test_kill_9_costs_only_the_threshold_then_serves_from_memory(stevedores_redis_server: Callable, resilient: Callable,
                                                                 telemetry: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = stevedores_redis_server()
    client, cache = resilient(server.url, failure_threshold=3)
    assert cache.set("greeting", "hello", ttl=60) is True
    assert (cache.get("greeting"), cache.mode, client.state) == ("hello", "redis", "closed")

    server.kill()
    attempts: list[int] = []

    def read(redis_client: redis.Redis) -> Any:
        attempts.append(1)
        return redis_client.get("greeting")

    durations, results = [], []
    for _ in range(20):
        started = time.monotonic()
        results.append(client.call(read, lambda: "from memory", operation="get"))
        durations.append(time.monotonic() - started)
    assert len(attempts) == 3  # the threshold's worth of calls reached for Redis, no more
    assert results == ["from memory"] * 20
    assert client.state == "open" and cache.mode == "memory"
    assert max(durations[3:]) < 0.15  # open breaker: no waiting (generous margin for a busy machine)

    assert cache.set("tally:berth-4", "17", ttl=30) is True
    assert cache.get("tally:berth-4") == "17"
    assert cache.incr("visits", ttl=30) == 1 and cache.incr("visits", ttl=30) == 2
    assert telemetry.total("redis_fallback_total", operation="get") >= 18
    assert telemetry.total("redis_fallback_total", operation="set") == 1
    assert telemetry.transitions() == ["open"]

    health = redis_check(client, cache)()
    assert {k: health[k] for k in ("status", "fallback", "circuit_breaker_state")} == {
        "status": "error", "fallback": "in-memory", "circuit_breaker_state": "open"}
    assert health["failures"] == 3
    assert 55 < health["seconds_until_probe"] <= 60
    assert health["last_error"] == "ConnectionError"
    lines = breaker_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("Circuit breaker OPEN after 3 consecutive Redis failures")


def test_a_hung_redis_never_holds_a_call_longer_than_the_read_timeout(stevedores_redis_server: Callable,
                                                                      resilient: Callable) -> None:
    server = stevedores_redis_server()
    client, cache = resilient(server.url, connect_timeout=0.25, read_timeout=0.25, failure_threshold=3)
    cache.set("k", "v")
    server.pause()  # SIGSTOP: the kernel still accepts connections, nobody answers
    durations = []
    for _ in range(12):
        started = time.monotonic()
        assert cache.get("k") is None  # nothing was written to memory before the hang
        durations.append(time.monotonic() - started)
    slow = [d for d in durations if d > 0.2]  # paid (most of) the 0.25 s read timeout
    assert len(slow) == 3, durations
    assert max(durations) < 0.25 + 0.2, durations  # the read timeout plus scheduling margin on a busy box
    assert client.state == "open"


def test_restart_exactly_one_probe_then_closed_and_redis_used_again(stevedores_redis_server: Callable,
                                                                     resilient: Callable,
                                                                     telemetry: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = stevedores_redis_server()
    client, cache = resilient(server.url, failure_threshold=2, recovery_timeout=0.4, read_timeout=3.0)
    cache.set("during", "old")
    server.kill()
    cache.get("a"), cache.get("b")
    assert client.state == "open"
    cache.set("during", "written in the outage")
    server.start()
    time.sleep(0.45)

    callers = 20
    barrier = threading.Barrier(callers)
    others_done = threading.Event()
    attempts, fallbacks, results = [], [], []
    lock = threading.Lock()

    def probe_call(redis_client: redis.Redis) -> str:
        attempts.append(1)
        redis_client.ping()
        others_done.wait(2.0)  # keep the probe in flight until every other caller has been answered
        return "redis"

    def fallback() -> str:
        with lock:
            fallbacks.append(1)
            if len(fallbacks) == callers - 1:
                others_done.set()
        return "memory"

    def caller() -> None:
        barrier.wait(5)
        results.append(client.call(probe_call, fallback))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(attempts) == 1
    assert sorted(results) == ["memory"] * (callers - 1) + ["redis"]
    assert client.state == "closed" and cache.mode == "redis"
    assert telemetry.transitions() == ["open", "half-open", "closed"]
    lines = breaker_lines(caplog)
    assert [line.split(":")[0] for line in lines[1:]] == ["Circuit breaker HALF-OPEN", "Circuit breaker CLOSED"]

    # Redis is the authority again: the outage's value was not replayed, memory was cleared.
    assert cache.get("during") is None
    assert len(cache.memory) == 0
    cache.set("after", "back")
    assert redis.Redis.from_url(server.url).get("after") == b"back"


def test_many_threads_while_redis_dies_and_returns(stevedores_redis_server: Callable, resilient: Callable,
                                                   telemetry: Any) -> None:
    server = stevedores_redis_server()
    client, cache = resilient(server.url, failure_threshold=3, recovery_timeout=0.3, read_timeout=0.3)
    errors: list[BaseException] = []
    tallies = {"calls": 0, "redis": 0, "memory": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(n: int) -> None:
        try:
            while not stop.is_set():
                answer = client.call(lambda c: (c.incr(f"hits:{n}"), "redis")[1], lambda: "memory",
                                     operation="hammer")
                cache.set(f"k{n}", str(n), ttl=5)
                cache.get(f"k{n}")
                cache.incr(f"c{n}", ttl=5)
                cache.delete(f"gone{n}")
                with lock:
                    tallies["calls"] += 1
                    tallies[answer] += 1
        except BaseException as exc:  # noqa: BLE001 - the test collects anything that escapes
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    server.kill()
    time.sleep(1.0)
    server.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert not [t for t in threads if t.is_alive()], "a thread is stuck (deadlock?)"
    assert errors == []
    assert tallies["calls"] == tallies["redis"] + tallies["memory"]
    assert tallies["redis"] > 0 and tallies["memory"] > 0
    assert telemetry.total("redis_fallback_total", operation="hammer") == tallies["memory"]
    assert telemetry.total("redis_fallback_total") == client.fallbacks
    deadline = time.monotonic() + 10  # on a starved machine a probe can be slow (a failure): let it retry
    while client.state != "closed" and time.monotonic() < deadline:
        client.call(lambda c: c.ping(), lambda: None)
        time.sleep(0.05)
    assert client.state == "closed"
    transitions = telemetry.transitions()
    assert transitions[0] == "open" and transitions[-1] == "closed"
    for before, after in zip(["closed", *transitions[:-1]], transitions, strict=True):
        assert (before, after) in {("closed", "open"), ("open", "half-open"), ("half-open", "closed"),
                                   ("half-open", "open")}, transitions
    assert client.call(lambda c: c.incr("after-the-storm"), lambda: None) == 1  # counting is back in Redis
    assert cache.mode == "redis"


def test_a_call_slower_than_the_read_timeout_counts_as_a_failure(stevedores_redis_server: Callable,
                                                                 resilient: Callable) -> None:
    server = stevedores_redis_server()
    client, _cache = resilient(server.url, read_timeout=0.2, failure_threshold=2)

    def slow(redis_client: redis.Redis) -> str:
        redis_client.ping()
        time.sleep(0.3)  # each command is quick; the whole call is not
        return "answer"

    assert client.call(slow, lambda: "fallback") == "answer"
    assert client.call(slow, lambda: "fallback") == "answer"
    assert client.state == "open"
    assert client.breaker.snapshot().last_failure.startswith("call took")


def test_a_command_error_is_not_an_outage(stevedores_redis_server: Callable, resilient: Callable, caplog: Any) -> None:
    server = stevedores_redis_server()
    client, cache = resilient(server.url, failure_threshold=1)
    cache.set("word", "abc")
    for _ in range(3):
        assert client.call(lambda c: c.incr("word"), lambda: -1) == -1  # ResponseError: served the fallback
    assert client.state == "closed"
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ResponseError" in warnings[0].getMessage()  # not one per call
