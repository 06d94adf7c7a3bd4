"""Dead workers' metrics files folded into archives: totals exact, gauges per mode, crash-safe,
and one master per directory. Files are written by real short-lived processes with
prometheus_client's own multiprocess values; they are dead when the test folds them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from stevedores_observability import archive, multiprocess

pytestmark = pytest.mark.timeout(60)

WRITER = textwrap.dedent('''
    import sys, time
    from prometheus_client import Counter, Gauge, Histogram
    n = float(sys.argv[1])
    requests = Counter("t_requests", "requests", ["route"], registry=None)
    requests.labels("/a").inc(n)
    requests.labels("/b").inc(2 * n)
    Histogram("t_seconds", "latency", buckets=(0.1, 1.0), registry=None).observe(n / 10)
    for mode in ("max", "min", "sum", "mostrecent", "all", "livemax", "livesum"):
        Gauge(f"t_{mode}", mode, multiprocess_mode=mode, registry=None).set(n)
    print(__import__("os").getpid())
''')


def write_as_dead_process(directory: Path, n: float) -> int:
    """Run a process that records ``n`` into every metric of WRITER and exits; its pid."""
    done = subprocess.run([sys.executable, "-c", WRITER, str(n)], env={**os.environ,
                          "PROMETHEUS_MULTIPROC_DIR": str(directory)}, capture_output=True, text=True,
                          check=True, timeout=30)
    return int(done.stdout)


def collected(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape of ``directory`` shows: ``{(sample, sorted labels): value}``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def without(samples: dict[Any, float], *prefixes: str) -> dict[Any, float]:
    return {k: v for k, v in samples.items() if not k[0].startswith(prefixes)}


def assert_same(after: dict[Any, float], expected: dict[Any, float]) -> None:
    """Counts and buckets exactly equal; ``_sum`` of float observations up to the order of addition
    (the collector itself adds the files in directory order)."""
    assert after.keys() == expected.keys()
    for key, value in expected.items():
        assert after[key] == (pytest.approx(value, rel=1e-12) if key[0].endswith("_sum") else value), key


def test_folding_dead_files_keeps_every_total_and_leaves_one_archive_per_type(tmp_path: Path) -> None:
    pids = [write_as_dead_process(tmp_path, n) for n in (1, 2, 3)]
    before = collected(tmp_path)
    assert before[("t_requests_total", (("route", "/b"),))] == 12
    assert {k: v for k, v in before.items() if k[0] == "t_all"}  # one series per pid before

    with archive.scrape_lock(str(tmp_path)):
        assert archive.compact_dead(str(tmp_path)) == 3 * 9  # counter, histogram, 7 gauge files each
    after = collected(tmp_path)
    # live modes and `all` drop a dead process's value; everything else is exactly as before
    assert_same(after, without(before, "t_all", "t_livemax", "t_livesum"))
    assert after[("t_max", ())] == 3 and after[("t_min", ())] == 1 and after[("t_sum", ())] == 6
    assert after[("t_mostrecent", ())] == 3  # the newest timestamp wins, kept in the archive
    assert after[("t_seconds_bucket", (("le", "0.1"),))] == 1  # cumulative buckets as before
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db", "gauge_max_archive.db", "gauge_min_archive.db", "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db", "histogram_archive.db"]

    later = write_as_dead_process(tmp_path, 10)  # a second generation folds into the same archives
    assert later not in pids
    expected = collected(tmp_path)
    with archive.scrape_lock(str(tmp_path)):
        archive.compact(str(tmp_path), [later])
    after = collected(tmp_path)
    assert_same(after, without(expected, "t_all", "t_livemax", "t_livesum"))
    assert after[("t_requests_total", (("route", "/a"),))] == 16
    assert after[("t_mostrecent", ())] == 10 and after[("t_min", ())] == 1
    assert len(list(tmp_path.glob("*.db"))) == 6


def test_a_live_process_files_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")  # this process is alive
    (tmp_path / f"gauge_livemax_{os.getpid()}.db").write_bytes(b"")
    assert archive.dead_pids(str(tmp_path)) == set()
    with archive.scrape_lock(str(tmp_path)):
        assert archive.compact_dead(str(tmp_path)) == 0
    assert len(list(tmp_path.glob("*.db"))) == 2


@pytest.mark.parametrize("killed", ["before the rename", "after the rename"])
def test_a_compaction_killed_half_way_is_finished_without_counting_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed: str) -> None:
    first = write_as_dead_process(tmp_path, 1)
    with archive.scrape_lock(str(tmp_path)):
        archive.compact(str(tmp_path), [first])
    write_as_dead_process(tmp_path, 2)
    expected = without(collected(tmp_path), "t_all", "t_livemax", "t_livesum")
    real_replace = os.replace

    def dying_replace(src: str, dst: str) -> None:
        if dst.endswith("counter_archive.db"):
            if killed == "after the rename":
                real_replace(src, dst)
            raise KeyboardInterrupt("the worker was killed here")
        real_replace(src, dst)

    monkeypatch.setattr(archive.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt), archive.scrape_lock(str(tmp_path)):
        archive.compact_dead(str(tmp_path))
    monkeypatch.setattr(archive.os, "replace", real_replace)
    assert (tmp_path / archive.JOURNAL_FILE).exists()
    with archive.scrape_lock(str(tmp_path)):  # the next scrape (or exit) finishes the job first
        archive.compact_dead(str(tmp_path))
    assert not (tmp_path / archive.JOURNAL_FILE).exists()
    assert_same(collected(tmp_path), expected)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db", "gauge_max_archive.db", "gauge_min_archive.db", "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db", "histogram_archive.db"]


def test_worker_exited_folds_that_workers_files(tmp_path: Path) -> None:
    first, second = write_as_dead_process(tmp_path, 1), write_as_dead_process(tmp_path, 2)
    multiprocess.worker_exited(first, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert not list(tmp_path.glob(f"*_{first}.db"))
    assert len(list(tmp_path.glob(f"*_{second}.db"))) == 9  # another pid's files are not touched
    assert collected(tmp_path)[("t_requests_total", (("route", "/a"),))] == 3


def test_a_second_owner_of_the_directory_is_refused_naming_the_setting(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import sys, time
        from stevedores_observability import multiprocess
        multiprocess.prepare_directory({str(tmp_path)!r}, {{}})
        print("owned", flush=True)
        time.sleep(60)
    ''')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "owned"
        (tmp_path / f"counter_{holder.pid}.db").write_bytes(b"the first master's live worker")
        with pytest.raises(multiprocess.DirectoryInUse) as refused:
            multiprocess.prepare_directory(str(tmp_path), {})
        assert "METRICS_MULTIPROC_DIR" in str(refused.value) and f"pid {holder.pid}" in str(refused.value)
        assert (tmp_path / f"counter_{holder.pid}.db").exists()  # nothing of the first master's was deleted
    finally:
        holder.terminate()
        holder.wait(10)
    # the owner is gone: the directory may be taken again (and its stale files cleaned)
    multiprocess.claim_directory(str(tmp_path))
