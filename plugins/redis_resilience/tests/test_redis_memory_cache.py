"""The in-memory fallback: TTLs really expire, both bounds hold, incr keeps its window."""

from __future__ import annotations

import pytest
from stevedores_redis_resilience.memory_cache import ENTRY_OVERHEAD, MemoryCache

from stevedores.testing import FakeClock


def test_set_get_delete_and_values_stored_as_redis_would() -> None:
    cache = MemoryCache()
    assert cache.get("a") is None
    cache.set("a", "héllo")
    cache.set("n", 42)
    cache.set("f", 1.5)
    cache.set("b", b"\x00\xff")
    assert (cache.get("a"), cache.get("n"), cache.get("f"), cache.get("b")) == (
        "héllo".encode(), b"42", b"1.5", b"\x00\xff")
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    with pytest.raises(TypeError):
        cache.set("x", object())  # type: ignore[arg-type]


def test_expired_entries_are_removed_and_their_bytes_released() -> None:
    clock = FakeClock(50.0)
    cache = MemoryCache(clock=clock)
    for i in range(100):
        cache.set(f"k{i}", "v" * 100, ttl=10)
    cache.set("forever", "v")
    assert cache.stats()["entries"] == 101
    clock.now += 9.99
    assert cache.get("k1") == b"v" * 100
    clock.now += 0.01
    stats = cache.stats()  # no get on the expired keys: they are gone anyway
    assert stats["entries"] == 1
    assert stats["bytes"] == len("forever") + 1 + ENTRY_OVERHEAD
    assert cache.get("k1") is None
    assert cache.ttl("forever") is None


def test_entry_bound_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=3)
    for key in "abc":
        cache.set(key, key)
    cache.get("a")  # a is now the most recently used
    cache.set("d", "d")
    assert [cache.get(k) for k in "abcd"] == [b"a", None, b"c", b"d"]
    assert cache.stats()["evictions"] == 1
    assert len(cache) == 3


def test_byte_bound_holds_and_an_oversized_value_is_refused() -> None:
    cache = MemoryCache(max_entries=1000, max_bytes=10_000)
    for i in range(500):
        assert cache.set(f"key{i:03d}", "x" * 400)
        assert cache.stats()["bytes"] <= 10_000
    assert 10_000 - (6 + 400 + ENTRY_OVERHEAD) < cache.stats()["bytes"] <= 10_000
    assert cache.get("key499") is not None and cache.get("key000") is None
    assert cache.set("huge", "x" * 20_000) is False
    assert cache.get("huge") is None
    assert cache.stats()["rejected"] == 1


def test_replacing_a_value_recounts_its_bytes() -> None:
    cache = MemoryCache()
    cache.set("k", "x" * 1000)
    cache.set("k", "y")
    assert cache.stats()["bytes"] == 1 + 1 + ENTRY_OVERHEAD


def test_incr_starts_at_zero_and_sets_the_ttl_only_on_a_new_counter() -> None:
    clock = FakeClock(50.0)
    cache = MemoryCache(clock=clock)
    assert cache.incr("hits", ttl=60) == 1
    clock.now += 30
    assert cache.incr("hits", 5, ttl=60) == 6
    assert cache.ttl("hits") == pytest.approx(30)  # the window did not move
    clock.now += 30
    assert cache.get("hits") is None
    assert cache.incr("hits", ttl=60) == 1
    cache.set("word", "abc")
    with pytest.raises(ValueError, match="not an integer"):
        cache.incr("word")


def test_many_rewrites_of_keys_with_ttls_do_not_grow_the_deadline_heap_without_bound() -> None:
    cache = MemoryCache()
    for i in range(20_000):
        cache.set(f"k{i % 10}", "v", ttl=100)
    assert len(cache._deadlines) <= 2 * len(cache) + 65
