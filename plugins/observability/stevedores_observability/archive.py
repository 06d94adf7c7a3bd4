"""Dead workers' metrics files merged into per-type archives, so the directory stays bounded.

prometheus_client's multiprocess mode gives every process its own files
(``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_<mode>_<pid>.db``) and never removes a
dead process's counters or histograms: every recycle adds ~48 KB that each scrape reads
again, and a full tmpfs then kills new workers with SIGBUS (issue 12: after ~30 recycles on a
1 MB tmpfs). Here a dead process's files are folded into one archive per file type, written
back in prometheus_client's own mmap format, so the collector reads them like any other file:

- ``counter``, ``histogram``, ``summary``: ``MultiProcessCollector.merge(files, accumulate=False)``
  (the library's own arithmetic; ``accumulate=False`` keeps histogram buckets per-bucket, as
  the files hold them) of the archive and the dead files, written to ``<type>_archive.db``.
  Totals are preserved exactly (float sums of the same values);
- gauges in a ``live*`` mode: deleted (``mark_process_dead``: a dead worker's value stops
  counting, which is what the mode means);
- ``max``, ``min``, ``sum``: merged the same way into ``gauge_<mode>_archive.db`` (the
  collector drops the pid label for these modes, so the archive's "pid" never shows);
- ``mostrecent``: per series, the value with the newest timestamp is kept (``merge`` does not
  return timestamps, and the collector needs them to pick the most recent);
- ``all``: deleted like ``liveall``. Decided here: prometheus_client would keep one series per
  dead pid forever (``pid`` label), the unbounded growth this module exists to stop, and a
  file-name pid cannot be kept in an archive. Use ``liveall`` semantics knowingly.

Everything happens under :func:`scrape_lock`, the ``fcntl.flock`` that ``GET /metrics``
takes around its read (the master compacts in ``child_exit``; workers scrape): a scrape
never sees a dead worker's counts twice (archive and file) or not at all. The archive is
written to a temporary name and renamed, and a journal makes an interrupted compaction
(a worker killed mid-way) finish on the next one rather than count twice.

Learned from public designs (prometheus_client issues on dead-process files; GitLab's and
others' "compact the dead pids' files into one" approaches); none of their code is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
from collections import defaultdict
from typing import Iterable, Iterator

log = logging.getLogger("stevedores.observability")

ARCHIVE = "archive"
LOCK_FILE = ".scrape.lock"
JOURNAL_FILE = ".compaction.journal"
#: Gauge modes whose dead-process values are dropped rather than archived (see the module doc).
DROPPED_GAUGE_MODES = frozenset({"all", "liveall", "livesum", "livemax", "livemin", "livemostrecent"})
MERGED_GAUGE_MODES = frozenset({"max", "min", "sum"})


@contextlib.contextmanager
def scrape_lock(directory: str) -> Iterator[None]:
    """Hold the directory's exclusive ``flock`` (``<directory>/.scrape.lock``) across processes.

    Taken by every scrape and every compaction. A new open file per acquisition, so threads
    of one process exclude each other too; the kernel releases it if the holder dies.
    """
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def file_pid(path: str) -> str | None:
    """The process identifier in a metrics file name (``counter_42.db`` -> ``"42"``), else None."""
    name = os.path.basename(path)
    if not name.endswith(".db"):
        return None
    parts = name[:-3].split("_")
    if parts[0] == "gauge":
        return parts[2] if len(parts) == 3 else None
    return parts[1] if len(parts) == 2 else None


def dead_pids(directory: str) -> set[int]:
    """Pids named by metrics files in ``directory`` whose process no longer exists."""
    dead = set()
    for path in glob.glob(os.path.join(directory, "*.db")):
        pid = file_pid(path)
        if pid is None or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(int(pid))
        except PermissionError:  # exists, owned by someone else
            pass
    return dead


def compact(directory: str, pids: Iterable[int]) -> int:
    """Fold the files of the dead processes ``pids`` into the archives; return files removed.

    Call with :func:`scrape_lock` held. Raises OSError when the directory cannot be written
    (the dead files are then left as they were: nothing is lost).
    """
    _finish_interrupted(directory)
    groups: dict[str, list[str]] = defaultdict(list)  # archive file prefix -> dead files
    dropped: list[str] = []
    for pid in set(pids):
        for path in glob.glob(os.path.join(directory, f"*_{pid}.db")):
            if file_pid(path) != str(pid):
                continue
            parts = os.path.basename(path)[:-3].split("_")
            if parts[0] != "gauge":
                groups[parts[0]].append(path)
            elif parts[1] in MERGED_GAUGE_MODES or parts[1] == "mostrecent":
                groups[f"gauge_{parts[1]}"].append(path)
            else:
                dropped.append(path)
    removed = 0
    for path in dropped:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed += 1
    for prefix, files in groups.items():
        removed += _fold(directory, prefix, files)
    return removed


def compact_dead(directory: str) -> int:
    """Under the lock already held: fold every dead process's files (what a scrape does first)."""
    return compact(directory, dead_pids(directory))


def _fold(directory: str, prefix: str, files: list[str]) -> int:
    archive = os.path.join(directory, f"{prefix}_{ARCHIVE}.db")
    temporary = archive + ".tmp"  # not *.db: the collector never reads it
    inputs = ([archive] if os.path.exists(archive) else []) + sorted(files)
    entries = _newest(inputs) if prefix == "gauge_mostrecent" else _merged(inputs)
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)
    _write(temporary, entries)
    journal = os.path.join(directory, JOURNAL_FILE)
    _write_journal(journal, temporary, archive, files)
    os.replace(temporary, archive)
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    os.remove(journal)
    return len(files)


def _merged(files: list[str]) -> list[tuple[str, float, float]]:
    """(mmap key, value, timestamp 0) of ``files`` summed (or min/max'ed) by prometheus_client."""
    from prometheus_client.multiprocess import MultiProcessCollector

    entries = []
    for metric in MultiProcessCollector.merge(files, accumulate=False):
        for sample in metric.samples:
            entries.append((_key(metric.name, sample.name, sample.labels, metric.documentation), sample.value, 0.0))
    return entries


def _newest(files: list[str]) -> list[tuple[str, float, float]]:
    """Per mmap key, the (value, timestamp) with the newest timestamp (``mostrecent`` gauges)."""
    from prometheus_client.mmap_dict import MmapedDict

    newest: dict[str, tuple[float, float]] = {}
    for path in files:
        for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(path):
            if key not in newest or timestamp >= newest[key][1]:
                newest[key] = (value, timestamp)
    return [(key, value, timestamp) for key, (value, timestamp) in newest.items()]


def _key(metric_name: str, sample_name: str, labels: dict[str, str], help_text: str) -> str:
    """The mmap key prometheus_client writes for this series (``mmap_dict.mmap_key``'s format)."""
    labels = {k: v for k, v in labels.items() if k != "pid"}
    return json.dumps([metric_name, sample_name, labels, help_text], sort_keys=True)


def _write(path: str, entries: list[tuple[str, float, float]]) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    mapped = MmapedDict(path)
    try:
        for key, value, timestamp in entries:
            mapped.write_value(key, value, timestamp)
    finally:
        mapped.close()


def _write_journal(journal: str, temporary: str, archive: str, files: list[str]) -> None:
    with open(journal + ".new", "w") as out:
        json.dump({"temporary": temporary, "archive": archive, "files": files}, out)
    os.replace(journal + ".new", journal)


def _finish_interrupted(directory: str) -> None:
    """Complete or undo a compaction that a killed process left half done.

    Journal written, temporary archive still there: the rename did not happen, the dead files
    still count; drop the temporary. Temporary gone: the archive already holds the dead
    files' counts; remove those files (else they would count twice).
    """
    journal = os.path.join(directory, JOURNAL_FILE)
    try:
        with open(journal) as source:
            pending = json.load(source)
    except FileNotFoundError:
        return
    if os.path.exists(pending["temporary"]):
        os.remove(pending["temporary"])
    else:
        for path in pending["files"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    log.warning("Metrics compaction interrupted earlier in %s: finished it", directory)
    os.remove(journal)
