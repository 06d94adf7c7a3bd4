"""The in-memory fixed windows (fake clock): counting, expiry, the bound on keys."""

from __future__ import annotations

from stevedores_security.memory_windows import MemoryWindows

from stevedores.testing import FakeClock


def test_counts_within_a_window_and_starts_again_after_it() -> None:
    clock = FakeClock()
    windows = MemoryWindows(clock=clock)
    assert windows.incr("k", 60) == (1, 1060.0)
    assert windows.incr("k", 60, 2) == (3, 1060.0)
    clock.now = 1059.9
    assert windows.get("k") == (3, 1060.0)
    clock.now = 1060.0
    assert windows.get("k") == (0, 1060.0)
    assert windows.incr("k", 60) == (1, 1120.0)
    windows.clear("k")
    assert windows.get("k")[0] == 0


def test_keys_are_bounded_expired_first_then_oldest() -> None:
    clock = FakeClock()
    windows = MemoryWindows(max_keys=4, clock=clock)
    windows.incr("old-1", 1), windows.incr("old-2", 1)
    windows.incr("a", 60), windows.incr("b", 61)
    clock.now += 2  # old-1 and old-2 ended
    windows.incr("c", 62)
    assert len(windows) == 3 and windows.get("a")[0] == 1  # only the ended windows were dropped
    windows.incr("d", 63)
    windows.incr("e", 64)  # four live windows: the oldest half goes
    assert len(windows) == 3 and windows.get("a")[0] == 0 and windows.get("b")[0] == 0
    assert windows.get("d")[0] == 1 and windows.get("e")[0] == 1
