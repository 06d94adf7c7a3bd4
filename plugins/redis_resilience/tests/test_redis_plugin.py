"""The plugin as the dashboard sees it: settings, services, health check, modes, bad input, fork."""

from __future__ import annotations

import json
import os
import ssl
import time
from typing import Any, Callable

import pytest
import redis
from stevedores_redis_resilience.health import redis_check

from stevedores import ConfigError, get_service
from stevedores.testing import free_port

PLUGIN = ["redis_resilience"]


@pytest.mark.parametrize(("bad", "expected"), [
    *[(url, "redis://") for url in (
        "localhost:6379",
        "http://127.0.0.1:6379/0",
        "redis://",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/cache",
        "redis://127.0.0.1:6379/0?bogus_option=1",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
        "rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe")],
    *[(url, "redis+sentinel://") for url in (
        "redis+sentinel://s3cr3t-pw@127.0.0.1:26379",          # no service name
        "redis+sentinel://:s3cr3t-pw@127.0.0.1/mymaster",      # no port
        "redis+sentinel://:s3cr3t-pw@h1:26379,h2:port/mymaster",
        "redis+sentinel://:s3cr3t-pw@h1:70000/mymaster",
        "redis+sentinel://:s3cr3t-pw@h1:26379/mymaster/zero",
        "redis+sentinel://:s3cr3t-pw@h1:26379/mymaster/0/extra",
        "redis+sentinel://:s3cr3t-pw@h1:26379/mymaster?ssl=true",
        "redis+sentinel://:s3cr3t-pw@:26379/mymaster")],
])
def test_a_malformed_redis_url_stops_start_up_naming_redis_url(make_stevedores_app: Callable, bad: str,
                                                               expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=PLUGIN, env={"REDIS_URL": bad})
    assert [p.name for p in caught.value.problems] == ["REDIS_URL"]
    assert expected in str(caught.value)  # says what was expected
    assert "s3cr3t-pw" not in str(caught.value)


def test_the_password_of_a_bad_url_is_never_shown(make_stevedores_app: Callable) -> None:
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=PLUGIN, env={"REDIS_URL": "redis://:s3cr3t-pass@127.0.0.1:6379/0?x=s3cr3t-pass"})
    assert "REDIS_URL" in str(caught.value) and "s3cr3t-pass" not in str(caught.value)


def test_bad_numeric_settings_are_all_reported_by_name(make_stevedores_app: Callable) -> None:
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=PLUGIN, env={
            "REDIS_READ_TIMEOUT_MS": "fast", "REDIS_BREAKER_FAILURE_THRESHOLD": "0", "REDIS_FALLBACK_MAX_BYTES": "10"})
    assert sorted(p.name for p in caught.value.problems) == [
        "REDIS_BREAKER_FAILURE_THRESHOLD", "REDIS_FALLBACK_MAX_BYTES", "REDIS_READ_TIMEOUT_MS"]


def test_settings_reach_the_services(make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    app = make_stevedores_app(plugins=PLUGIN, env={
        "REDIS_URL": server.url, "REDIS_CONNECT_TIMEOUT_MS": "150", "REDIS_READ_TIMEOUT_MS": "250",
        "REDIS_BREAKER_FAILURE_THRESHOLD": "7", "REDIS_BREAKER_RECOVERY_TIMEOUT": "12.5",
        "REDIS_BREAKER_HALF_OPEN_PROBES": "2", "REDIS_FALLBACK_MAX_ENTRIES": "50", "REDIS_FALLBACK_MAX_BYTES": "4096",
        "REDIS_HEALTH_CHECK_INTERVAL": "9"})
    client, cache = get_service(app, "redis"), get_service(app, "cache")
    assert (client.configured, client.state, client.read_timeout, client.connect_timeout) == (
        True, "closed", 0.25, 0.15)
    breaker = client.breaker
    assert (breaker.failure_threshold, breaker.recovery_timeout, breaker.half_open_probes) == (7, 12.5, 2)
    assert (cache.memory.max_entries, cache.memory.max_bytes) == (50, 4096)
    kwargs = client.client().connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["health_check_interval"]) == (
        0.25, 0.15, 9)
    assert kwargs["retry"].get_retries() == 0  # the breaker decides, not redis-py
    assert client.call(lambda c: c.ping(), lambda: False) is True


def test_rediss_verifies_the_certificate_and_host_name_by_default(resilient: Callable) -> None:
    client, _cache = resilient("rediss://:pw@redis.example.internal:6380/0")
    connection = client.client().connection_pool.make_connection()  # opens nothing
    assert (connection.cert_reqs, connection.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_without_redis_url_everything_works_in_memory(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=PLUGIN)
    client, cache = get_service(app, "redis"), get_service(app, "cache")
    assert (client.configured, client.state, cache.mode) == (False, "not-configured", "memory")
    assert client.call(lambda c: 1 / 0, lambda: "fallback") == "fallback"
    cache.set("summary", json.dumps({"vessels": 3}), ttl=60)
    assert json.loads(cache.get("summary")) == {"vessels": 3}
    checks = {check.name: check for _plugin, check in app.extensions["stevedores"].health_checks}
    assert checks["redis"].critical is False
    assert checks["redis"].func() == {"status": "healthy", "mode": "in-memory",
                                      "circuit_breaker_state": "not-configured"}


def test_health_check_through_the_app_when_redis_answers_and_when_it_is_gone(make_stevedores_app: Callable,
                                                                           stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    app = make_stevedores_app(plugins=PLUGIN, env={"REDIS_URL": server.url, "REDIS_BREAKER_FAILURE_THRESHOLD": "2"})
    check = next(c for _p, c in app.extensions["stevedores"].health_checks if c.name == "redis")
    healthy = check.func()
    assert {k: healthy[k] for k in ("status", "mode", "circuit_breaker_state")} == {
        "status": "healthy", "mode": "redis", "circuit_breaker_state": "closed"}
    assert healthy["ping_ms"] >= 0
    server.kill()
    first = check.func()  # one failed PING: still closed, already an error
    assert (first["status"], first["circuit_breaker_state"], first["failures"]) == ("error", "closed", 1)
    second = check.func()
    assert {k: second[k] for k in ("status", "fallback", "circuit_breaker_state", "failures")} == {
        "status": "error", "fallback": "in-memory", "circuit_breaker_state": "open", "failures": 2}
    started = time.monotonic()
    assert check.func()["circuit_breaker_state"] == "open"
    assert time.monotonic() - started < 0.15  # an open breaker makes the check answer at once


@pytest.mark.parametrize("mode", ["redis", "memory"])
def test_the_cache_behaves_the_same_in_both_modes(mode: str, stevedores_redis_server: Callable,
                                                  resilient: Callable) -> None:
    _client, cache = resilient(stevedores_redis_server().url if mode == "redis" else None)
    assert cache.mode == mode
    assert cache.get("nothing") is None
    assert cache.set("text", "héllo") is True and cache.get("text") == "héllo"
    assert cache.set("raw", b"\x00\xff") is True and cache.get_bytes("raw") == b"\x00\xff"
    assert cache.set("number", 42) is True and cache.get("number") == "42"
    assert cache.delete("text") is True and cache.delete("text") is False and cache.get("text") is None
    assert cache.incr("hits", ttl=0.6) == 1 and cache.incr("hits", 4, ttl=30) == 5
    assert cache.incr("plain") == 1
    cache.set("short", "lived", ttl=0.3)
    time.sleep(0.65)
    assert cache.get("short") is None
    assert cache.get("hits") is None  # the window's ttl was kept, not pushed to 30 s
    assert cache.incr("hits", ttl=30) == 1
    assert cache.get("plain") == "1"
    with pytest.raises(ValueError):
        cache.set("bad", "x", ttl=0)


def test_a_wrong_password_is_an_outage_not_a_crash(stevedores_redis_server: Callable, resilient: Callable,
                                                   caplog: Any) -> None:
    server = stevedores_redis_server()
    redis.Redis.from_url(server.url).config_set("requirepass", "right-password")
    client, cache = resilient(server.url.replace("redis://", "redis://:wrong-password-9f3@"))
    assert cache.set("k", "v") is True and cache.get("k") == "v"  # served from memory
    cache.get("x")
    assert client.state == "open"
    assert client.breaker.snapshot().last_failure.startswith("AuthenticationError")
    assert "wrong-password-9f3" not in caplog.text
    good, good_cache = resilient(server.url.replace("redis://", "redis://:right-password@"))
    assert good_cache.set("k", "v") is True and good.state == "closed" and good_cache.mode == "redis"


def test_an_unreachable_host_is_an_outage_not_a_crash(resilient: Callable) -> None:
    client, cache = resilient(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    started = time.monotonic()
    for i in range(20):
        cache.set(f"k{i}", "v")
        assert cache.get(f"k{i}") == "v"
    assert time.monotonic() - started < 1.0
    assert client.state == "open"
    assert redis_check(client, cache)()["circuit_breaker_state"] == "open"


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(stevedores_redis_server: Callable,
                                                                           resilient: Callable) -> None:
    server = stevedores_redis_server()
    client, cache = resilient(server.url)
    parent_id = client.call(lambda c: c.client_id(), lambda: None)
    assert parent_id is not None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, then leave without running any cleanup
        try:
            child_id = client.call(lambda c: c.client_id(), lambda: None)
            os.write(write_end, json.dumps({"id": child_id, "mode": cache.mode}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read())
    assert child["id"] is not None and child["id"] != parent_id and child["mode"] == "redis"
    assert client.call(lambda c: c.client_id(), lambda: None) == parent_id  # same socket, still working
    assert client.state == "closed"


def test_a_call_in_two_steps_is_one_outcome_for_the_breaker(stevedores_redis_server: Callable,
                                                            resilient: Callable) -> None:
    """``start`` sends and ``finish`` reads under one ticket: a write to a frozen Redis is no answer,
    so it cannot reset the failures its reads add up; once open, nothing is sent and the read is skipped."""
    from stevedores.contracts import DeferredRedisService

    server = stevedores_redis_server()
    client, _cache = resilient(server.url, failure_threshold=2)
    assert isinstance(client, DeferredRedisService)
    assert client.start(lambda r: r.set("k", "v"), lambda: False).finish(lambda sent: sent) is True
    server.pause()
    try:
        assert client.call(lambda r: r.get("k"), lambda: "fallback") == "fallback"  # one failure
        started = client.start(lambda r: r, lambda: "fallback")  # admitted: no outcome yet
        assert not started.fell_back and client.state == "closed"
        assert started.finish(lambda r: r.get("k")) == "fallback"  # the second failure opens it
        assert client.state == "open"
        skipped = client.start(lambda r: pytest.fail("sent while open"), lambda: "fallback")
        assert skipped.fell_back and skipped.finish(lambda _: pytest.fail("read while open")) == "fallback"
    finally:
        server.resume()
