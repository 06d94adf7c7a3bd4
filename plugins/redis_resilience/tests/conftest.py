"""Fixtures of the redis_resilience tests: a telemetry recorder and a resilient client factory."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
from stevedores_redis_resilience.cache import ResilientCache
from stevedores_redis_resilience.client import ResilientRedis
from stevedores_redis_resilience.memory_cache import MemoryCache


class TelemetryRecorder:
    """Stands in for the runtime's telemetry: keeps every figure reported."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[str, str, float, dict[str, str]]] = []

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        with self.lock:
            self.records.append(("count", name, amount, labels))

    def gauge(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.records.append(("gauge", name, value, labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.records.append(("observe", name, value, labels))

    def total(self, name: str, **labels: str) -> float:
        """Sum of counter ``name`` over the records whose labels include ``labels``."""
        with self.lock:
            return sum(v for kind, n, v, lab in self.records
                       if kind == "count" and n == name and labels.items() <= lab.items())

    def transitions(self) -> list[str]:
        """The ``to`` label of every breaker transition, in order."""
        with self.lock:
            return [lab["to"] for kind, n, _v, lab in self.records if n == "redis_breaker_transitions_total"]


@pytest.fixture
def telemetry() -> TelemetryRecorder:
    return TelemetryRecorder()


@pytest.fixture
def resilient(telemetry: TelemetryRecorder) -> Iterator[Callable[..., tuple[ResilientRedis, ResilientCache]]]:
    """Factory: ``resilient(url, **options)`` -> (redis service, cache service); closed after the test."""
    made: list[ResilientRedis] = []

    def make(url: str | None, max_entries: int = 1000, max_bytes: int = 1 << 20,
             **options: Any) -> tuple[ResilientRedis, ResilientCache]:
        defaults: dict[str, Any] = {"connect_timeout": 0.2, "read_timeout": 0.2, "failure_threshold": 3,
                                    "recovery_timeout": 60.0}
        client = ResilientRedis(url, telemetry=telemetry, **{**defaults, **options})
        made.append(client)
        return client, ResilientCache(client, MemoryCache(max_entries, max_bytes))

    yield make
    for client in made:
        client.close()
