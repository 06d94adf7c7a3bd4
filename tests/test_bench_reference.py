"""bench/bare_app.py's ``/bare/counted``: the reference row of bench_operations (bare Flask after one raw
Redis round trip) really makes that round trip, once per request, on a connection each thread keeps."""

from __future__ import annotations

import importlib
import json
import threading

import pytest
import redis

pytestmark = pytest.mark.timeout(60)


def test_counted_reference_increments_redis_once_per_request(stevedores_redis_server, monkeypatch) -> None:
    server = stevedores_redis_server()
    monkeypatch.setenv("BENCH_REDIS_URL", server.url)
    bare_app = importlib.reload(importlib.import_module("bench.bare_app"))  # a fresh per-thread connection
    client = bare_app.application.test_client()

    def count() -> int:
        return json.loads(client.get("/bare/counted").data)["count"]  # served as bare Flask serves a str

    answers = [count() for _ in range(3)]
    other_thread: list[int] = []
    worker = threading.Thread(target=lambda: other_thread.append(count()))
    worker.start()
    worker.join(10)

    assert answers == [1, 2, 3]
    assert other_thread == [4]
    assert int(redis.Redis.from_url(server.url).get(bare_app.COUNTED_KEY)) == 4
    assert redis.Redis.from_url(server.url).info("clients")["connected_clients"] >= 2  # one per thread, kept
