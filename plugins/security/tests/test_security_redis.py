"""Rate-limit counting in a real redis-server: shared counts, outages, the breaker, recovery.

The first tests drive the storage through a minimal implementation of the ``redis``
service contract (docs/plugins.md) over redis-py; the last one runs the same story
through the real redis_resilience plugin.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry
from security_helpers import ProbePlugin, Recorder
from stevedores_security.counting import REDIS_PREFIX, AppWindow

from stevedores import hookimpl

READ_TIMEOUT = 0.3


class ContractRedis:
    """The ``redis`` service contract over redis-py; ``open`` simulates an open breaker."""

    def __init__(self, url: str) -> None:
        self.client = redis_py.Redis.from_url(url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=READ_TIMEOUT,
                                              retry=Retry(NoBackoff(), 0))
        self.read_timeout = READ_TIMEOUT
        self.configured = True
        self.open = False
        self.calls = 0
        self.waits = 0  # calls that waited for (about) the read timeout

    @property
    def state(self) -> str:
        """``open`` or ``closed``."""
        return "open" if self.open else "closed"

    def call(self, fn: Callable[[Any], Any], fallback: Callable[[], Any]) -> Any:
        """fn(client), or fallback() when open or failing."""
        if self.open:
            return fallback()
        self.calls += 1
        started = time.monotonic()
        try:
            return fn(self.client)
        except (redis_py.RedisError, OSError):
            return fallback()
        finally:
            if time.monotonic() - started > self.read_timeout * 0.8:
                self.waits += 1


class OffersRedis:
    """Test plugin offering a ContractRedis as the ``redis`` service."""

    def __init__(self, service: ContractRedis) -> None:
        self.service = service

    @hookimpl
    def stevedores_services(self) -> dict[str, Any]:
        return {"redis": self.service}


def _app(make: Callable, service: ContractRedis, limits: str) -> Any:
    return make(plugins=["security"], env={"RATE_LIMITS": limits, "WEB_WORKERS": "2", "RATE_LIMIT_INSTANCES": "2"},
                extra_plugins=[("contract_redis", OffersRedis(service)), ("probe", ProbePlugin())])


def _counters(url: str) -> dict[str, int]:
    plain = redis_py.Redis.from_url(url)
    return {k.decode(): int(plain.get(k)) for k in plain.scan_iter(REDIS_PREFIX + "*")}


def _rate_check(app: Any) -> dict[str, Any]:
    checks = {c.name: c for _p, c in app.extensions["stevedores"].health_checks}
    return dict(checks["rate_limiter"].func())


def test_counts_in_redis_are_shared_by_workers_and_expire(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    worker_1 = _app(make_stevedores_app, ContractRedis(server.url), "5 per minute").test_client()
    worker_2 = _app(make_stevedores_app, ContractRedis(server.url), "5 per minute").test_client()
    statuses = [worker_1.get("/probe/a").status_code for _ in range(3)]
    statuses += [worker_2.get("/probe/b").status_code for _ in range(2)]
    assert statuses == [200] * 5  # the fallback would have allowed only 5 // 2 instances = 2
    assert worker_1.get("/probe/a").status_code == 429 and worker_2.get("/probe/a").status_code == 429
    counters = _counters(server.url)
    assert list(counters.values()) == [7]  # one key: per client across the app
    ttl = redis_py.Redis.from_url(server.url).ttl(next(iter(counters)))
    assert 0 < ttl <= 60  # the earlier dashboard's keys never expired


def test_outage_moves_counting_to_memory_without_errors_or_waiting(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    service = ContractRedis(server.url)
    app = _app(make_stevedores_app, service, "1000 per hour;6 per minute")
    sink = Recorder()
    app.extensions["stevedores"].telemetry.subscribe(sink)
    client = app.test_client()
    assert client.get("/probe/a").status_code == 200 and _rate_check(app)["storage"] == "redis"

    server.pause()  # hung server: a call waits for the read timeout
    waits, started = service.waits, time.monotonic()
    hung = client.get("/probe/a")
    elapsed = time.monotonic() - started
    assert hung.status_code == 200
    assert service.waits - waits == 1  # two limits and the headers (sent, then read), but one wait at most
    assert elapsed < READ_TIMEOUT * 2 + 0.5, elapsed
    server.resume()
    server.kill()

    statuses = [client.get("/probe/a").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # instance share: 6 // 2 instances = 3 (the hung request was the first)
    check = _rate_check(app)
    assert check["storage"] == "memory" and check["status"] == "degraded"
    assert check["reason"] == "a Redis call failed or timed out"
    assert ("rate_limit_storage", 1, {"storage": "memory"}) in sink.gauges

    service.open = True  # the breaker opened: Redis is not even tried
    calls = service.calls
    durations = []
    for _ in range(5):
        started = time.monotonic()
        response = client.get("/probe/b")
        durations.append(time.monotonic() - started)
        assert response.status_code == 429 and response.headers["Retry-After"]
    assert service.calls == calls and max(durations) < 0.5, durations  # Redis never tried
    assert _rate_check(app)["reason"] == "Redis circuit breaker is open"

    server.start()  # back, empty; the breaker closes
    service.open = False
    assert client.get("/probe/b").status_code == 200  # a fresh window in Redis
    assert sorted(_counters(server.url).values()) == [1, 1]  # the hour and the minute windows
    assert _rate_check(app)["storage"] == "redis" and _rate_check(app)["status"] == "healthy"
    assert sink.gauges[-2:] == [("rate_limit_storage", 1, {"storage": "redis"}),
                                ("rate_limit_storage", 0, {"storage": "memory"})]


def test_real_redis_resilience_plugin_hang_kill_and_restart(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    env = {"REDIS_URL": server.url, "RATE_LIMITS": "1000 per hour;10 per minute", "WEB_WORKERS": "2",
           "RATE_LIMIT_INSTANCES": "2",
           "REDIS_BREAKER_FAILURE_THRESHOLD": "2", "REDIS_BREAKER_RECOVERY_TIMEOUT": "2",
           "REDIS_READ_TIMEOUT_MS": "1000", "REDIS_CONNECT_TIMEOUT_MS": "1000"}
    app = make_stevedores_app(plugins=["security", "redis_resilience"], env=env,
                              extra_plugins=[("probe", ProbePlugin())])
    redis_service = app.extensions["stevedores"].service("redis")
    if redis_service is None:
        pytest.fail("the redis_resilience plugin offers no redis service")
    client = app.test_client()
    assert [client.get("/probe/a").status_code for _ in range(3)] == [200] * 3
    assert sorted(_counters(server.url).values()) == [3, 3]

    server.pause()  # hung: each call through a closed breaker waits one read timeout (1 s)
    statuses, waited, after_open = [], [], []
    for _ in range(7):
        was_open = redis_service.state == "open"
        started = time.monotonic()
        statuses.append(client.get("/probe/a").status_code)
        (after_open if was_open else waited).append(time.monotonic() - started)
    assert statuses == [200] * 5 + [429] * 2  # fallback: 10 // 2 instances
    assert len(waited) == 2 and all(0.9 < w < 1.9 for w in waited), waited  # one wait per request, not three
    assert len(after_open) == 5 and max(after_open) < 0.9, after_open  # breaker open: never the 1 s wait
    server.resume()
    server.kill()  # mid-run, while the breaker is open
    for _ in range(3):
        started = time.monotonic()
        response = client.get("/probe/b")
        assert response.status_code == 429 and time.monotonic() - started < 0.9  # under one read timeout
    assert _rate_check(app)["reason"] == "Redis circuit breaker is open"

    server.start()  # empty dataset; after the recovery timeout a probe closes the breaker
    deadline = time.monotonic() + 10
    while not _counters(server.url) and time.monotonic() < deadline:
        assert client.get("/probe/b").status_code < 500
        time.sleep(0.2)
    assert _counters(server.url), "counting never came back to Redis"
    assert redis_service.state == "closed" and _rate_check(app)["storage"] == "redis"


def test_redis_resilience_without_redis_url_counts_in_memory(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["security", "redis_resilience"], env={"WEB_WORKERS": "1"})
    check = _rate_check(app)
    assert check["storage"] == "memory" and check["reason"] == "REDIS_URL is not set"
    assert check["status"] == "healthy"


def test_a_slow_instance_store_never_counts_as_redis_being_slow(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    # A view's own limit is counted in Redis and in the instance's store; the store's waits (its
    # lock under a burst) happen outside the Redis call, so the breaker never blames Redis for them.
    server = stevedores_redis_server()
    env = {"REDIS_URL": server.url, "WEB_WORKERS": "1", "REDIS_READ_TIMEOUT_MS": "200",
           "REDIS_BREAKER_FAILURE_THRESHOLD": "2"}
    app = make_stevedores_app(plugins=["security", "redis_resilience"], env=env)
    redis_service = app.extensions["stevedores"].service("redis")
    rate_limits = app.extensions["stevedores"].service("rate_limits")
    counter = rate_limits.counter
    store_incr = counter.fallback.incr

    def slow_incr(*args: Any) -> Any:
        time.sleep(0.3)  # over the read timeout
        return store_incr(*args)

    counter.fallback.incr = slow_incr
    with app.test_request_context("/"):
        allowed = [rate_limits.hit("3 per minute", "slow-store", key="client-a") for _ in range(4)]
    assert allowed == [True, True, True, False]
    assert redis_service.state == "closed"
    assert sorted(_counters(server.url).values()) == [4]


class ViewCounter:
    """Test plugin: a GET and a POST view that count how often they ran."""

    def __init__(self) -> None:
        self.runs = {"get": 0, "post": 0}

    @hookimpl
    def stevedores_startup(self, app: Any) -> None:
        @app.get("/counted")
        def counted_get() -> Any:
            self.runs["get"] += 1
            return {"page": "counted"}

        @app.post("/counted")
        def counted_post() -> Any:
            self.runs["post"] += 1
            return {"posted": True}


def test_a_page_is_computed_while_redis_counts_and_a_refusal_is_the_same(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    """A GET's count is read after its view ran (the page computed while Redis answers); over the
    limit it still gets the 429 with its headers, and the view's response is dropped. A POST waits
    for its count: refused, its view never runs. A client refused so is then refused at once, with
    no count and no view, until its window ends."""
    server = stevedores_redis_server()
    views = ViewCounter()
    app = make_stevedores_app(plugins=["security", "observability", "redis_resilience"],
                              env={"RATE_LIMITS": "3 per minute", "OPS_TOKEN": "t" * 32, "REDIS_URL": server.url},
                              extra_plugins=[("views", views)])
    client = app.test_client()
    statuses = [client.get("/counted").status_code for _ in range(3)]
    assert statuses == [200] * 3 and views.runs["get"] == 3
    assert list(_counters(server.url).values()) == [3]

    refused = client.get("/counted")
    assert refused.status_code == 429 and refused.get_json()["error"] == "too many requests"
    assert refused.headers["RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) >= 1
    assert "Content-Security-Policy" in refused.headers
    assert views.runs["get"] == 4  # its view ran while Redis counted; its page was dropped
    assert list(_counters(server.url).values()) == [4]

    again = [client.get("/counted").status_code for _ in range(3)] + [client.post("/counted").status_code]
    assert again == [429] * 4
    assert views.runs == {"get": 4, "post": 0}  # refused at once: no view
    assert list(_counters(server.url).values()) == [4]  # and no count: the window can only grow until it ends
    metrics = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 32}).text
    assert 'http_requests_total{method="GET",route="/counted",status="429"} 4.0' in metrics, metrics


def test_a_post_over_the_limit_never_runs_its_view(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    views = ViewCounter()
    app = make_stevedores_app(plugins=["security"], env={"RATE_LIMITS": "2 per minute"},
                              extra_plugins=[("contract_redis", OffersRedis(ContractRedis(server.url))),
                                             ("views", views)])
    client = app.test_client()
    assert [client.post("/counted").status_code for _ in range(3)] == [200, 200, 429]
    assert views.runs["post"] == 2  # the third waited for its count and was refused before its view


def test_a_frozen_redis_opens_the_breaker_while_pages_are_counted_after_their_view(
        make_stevedores_app: Callable, stevedores_redis_server: Callable) -> None:
    """Sending a count is not an answer: with Redis frozen, every GET's count is written to the socket
    and its read times out, and the breaker opens after its threshold of those, then waits no more."""
    server = stevedores_redis_server()
    app = make_stevedores_app(plugins=["security", "redis_resilience"], extra_plugins=[("probe", ProbePlugin())],
                              env={"REDIS_URL": server.url, "RATE_LIMITS": "1000 per minute",
                                   "REDIS_BREAKER_FAILURE_THRESHOLD": "3", "REDIS_BREAKER_RECOVERY_TIMEOUT": "60",
                                   "REDIS_READ_TIMEOUT_MS": "200"})
    redis_service = app.extensions["stevedores"].service("redis")
    client = app.test_client()
    assert client.get("/probe/a").status_code == 200 and redis_service.state == "closed"
    server.pause()
    try:
        for _ in range(3):
            assert client.get("/probe/a").status_code == 200  # counted in the fallback after one wait
        assert redis_service.state == "open", redis_service.breaker.snapshot()
        started = time.monotonic()
        assert client.get("/probe/a").status_code == 200
        assert time.monotonic() - started < 0.15  # open: Redis not even tried
    finally:
        server.resume()


def test_only_a_fleet_wide_refusal_is_remembered(make_stevedores_app: Callable) -> None:
    """A client refused by a count made in Redis is refused at once until that window ends; a refusal
    counted in the fallback store (the instance's share, which Redis's return can reset) is not kept."""
    app = make_stevedores_app(plugins=["security"], env={"RATE_LIMITS": "2 per minute"},
                              extra_plugins=[("probe", ProbePlugin())])
    rate_limits = app.extensions["stevedores"].service("rate_limits")
    item = rate_limits.app_items[0]
    with app.test_request_context("/probe/a"):
        fallback = AppWindow(item, 3, time.time() + 60, 2, shared=False)
        assert rate_limits._verdict("10.0.0.1", fallback, remember=True).status_code == 429
        assert "10.0.0.1" not in rate_limits._refused
        shared = AppWindow(item, 3, time.time() + 60, 2, shared=True)
        assert rate_limits._verdict("10.0.0.2", shared, remember=True).status_code == 429
        assert rate_limits._refused["10.0.0.2"] is shared
        ended = AppWindow(item, 3, time.time() - 1, 2, shared=True)
        rate_limits._refused["10.0.0.3"] = ended
    client = app.test_client()
    refused = client.get("/probe/a", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert refused.status_code == 429 and refused.headers["RateLimit-Remaining"] == "0"
    assert client.get("/probe/a", environ_base={"REMOTE_ADDR": "10.0.0.3"}).status_code == 200  # window over
    assert "10.0.0.3" not in rate_limits._refused


def test_a_count_left_pending_is_read_when_the_request_is_torn_down(make_stevedores_app: Callable) -> None:
    """Each deferred count holds the breaker's ticket until read: the teardown reads one that no
    after_request read, so an unfinished half-open probe can never leave the breaker refusing."""
    from flask import g
    from stevedores_security.counting import AppCounting

    app = make_stevedores_app(plugins=["security"], env={"RATE_LIMITS": "2 per minute"},
                              extra_plugins=[("probe", ProbePlugin())])
    rate_limits = app.extensions["stevedores"].service("rate_limits")
    reads: list[int] = []
    item = rate_limits.app_items[0]
    with app.test_request_context("/probe/a"):
        g._stevedores_app_counting = ("10.0.0.9", AppCounting(
            None, lambda: reads.append(1) or AppWindow(item, 1, time.time() + 60, 2)))
        app.do_teardown_request()
        assert reads == [1] and "_stevedores_app_counting" not in g
