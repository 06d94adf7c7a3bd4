"""A write-behind buffer for gunicorn's access lines, as nginx's ``access_log ... buffer= flush=``.

Why our own code: the access line went through ``logging`` to two handlers per request, a
``StreamHandler(sys.stderr)`` and concurrent-log-handler's ``ConcurrentRotatingFileHandler``,
which takes a file lock (portalocker), writes, flushes, checks rotation and unlocks for every
line, after a LogRecord and a format. Measured under gunicorn with wrk (py-spy, GIL-holding
samples): 13 % of all worker CPU on every page, ~80 µs of a ~780 µs ``/api/summary``. Neither
logging nor concurrent-log-handler has a buffer that keeps the lock and the syscalls off each
line (``logging.handlers.MemoryHandler`` still makes, keeps and formats one LogRecord per line
and hands them over one at a time, so the file lock is still taken per line). Here a line costs
a string join and an append under a lock: ``python -m bench.access_log_cpu`` (one thread, 5,000
lines, stderr to a file, LOG_FILE on tmpfs, the final flush included) measured 34.6 µs of CPU per
line through logging and 3.5 µs buffered (gunicorn's stock Logger: 49.6 µs; 52 and 100 µs on
a busier day); under gunicorn and wrk, the workers' CPU per ``/api/summary`` request went from
909-981 to 682-746 µs (``bench.access_log_cpu --gunicorn 3``; bench/RESULTS.md). The handlers'
own pieces still do the writing: their locks, the rotating handler's lock file, stale-file check,
rotation test and rotation, its ``do_write``.

- :meth:`AccessBuffer.add` makes the finished line, the same text the one-line formatter of
  :mod:`stevedores.logs` gives (its prefix, UTC timestamp, one line; the secrets are redacted
  once per block, see :func:`_redact_block`), and appends it; the timestamp's text is made once
  per second, the rest of the prefix once per process.
- The buffer is written as one block to each handler of the ``stevedores`` logger when its oldest
  line is ``flush_seconds`` old (a daemon thread per process, started with the first line and
  again after a fork) or when it holds :data:`BUFFER_BYTES` (inline, by the request's thread,
  unless a write is already running), and on a graceful exit (gunicorn's ``worker_exit`` hook
  and ``atexit``). A process killed with SIGKILL loses the lines not yet written: at most
  ``flush_seconds`` of them, as with nginx.
- A failed write never reaches the request: the lines stay for that destination and are written
  with the next block; beyond :data:`MAX_PENDING_BYTES` the oldest are dropped and counted, and
  the log says so (once when it starts failing, once when it drops, once when it works again).
  A block whose write failed part-way is written again whole: that destination may then hold a
  few lines twice, never fewer.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import select
import stat
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from .forking import renew_in_children
from .logs import DATE_FORMAT, LOGGER_NAME, OneLineFormatter
from .redaction import redact

log = logging.getLogger("stevedores.access_log")

#: Bytes of lines a process buffers before it writes them without waiting for the timer (nginx's
#: example ``buffer=64k``): ~300 lines of ~200 bytes, a fraction of a second of a busy worker.
BUFFER_BYTES = 64 * 1024
#: Bytes of lines kept for one destination while writing to it fails (and in the buffer while a
#: write hangs); beyond that the oldest are dropped and counted. 16 blocks, 1 MB per destination.
MAX_PENDING_BYTES = 16 * BUFFER_BYTES
#: Writes to a pipe or socket up to this size are atomic (POSIX PIPE_BUF): several workers share
#: stderr, so a block goes to a pipe in pieces of whole lines no larger than this.
PIPE_BUF = getattr(select, "PIPE_BUF", 512)


class AccessBuffer:
    """One process's buffered access lines and the thread that writes them on time.

    ``handlers`` gives the destinations at each write (default: the ``stevedores`` logger's
    handlers that admit INFO); ``clock`` (monotonic) times the flushes, ``wall_clock`` stamps
    the lines; ``start_thread=False`` leaves timed flushes to the caller (:meth:`flush_if_due`).
    """

    def __init__(self, flush_seconds: float = 1.0, *, buffer_bytes: int = BUFFER_BYTES,
                 max_pending_bytes: int = MAX_PENDING_BYTES, name: str = "gunicorn.access",
                 handlers: Callable[[], Iterable[logging.Handler]] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 start_thread: bool = True) -> None:
        self.flush_seconds = flush_seconds
        self.buffer_bytes = buffer_bytes
        self.max_pending_bytes = max_pending_bytes
        self.name = name
        self._handlers = handlers or _stevedores_handlers
        self._clock = clock
        self._wall_clock = wall_clock
        self._start_thread = start_thread
        self.after_fork()
        renew_in_children(self)

    def after_fork(self) -> None:
        """Fresh state: at start and in a forked child (:mod:`stevedores.forking`; the parent writes the
        lines it holds)."""
        self._lock = threading.Lock()  # guards the lines; held for an append or a swap only
        self._write_lock = threading.Lock()  # one block written at a time, so blocks keep their order
        self._wake = threading.Event()  # the flusher's alarm: a first line, or stop
        self._lines: deque[str] = deque()
        self._bytes = 0
        self._first_at: float | None = None  # clock() at the oldest buffered line
        self._dropped = 0  # lines dropped from the buffer while a write hung
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stamp: tuple[int, str] = (-1, "")  # (second, "<timestamp> INFO [pid] name: ")
        self._prefix_tail = f" {logging.getLevelName(logging.INFO)} [{os.getpid()}] {self.name}: "
        self._destinations: dict[logging.Handler, _Destination] = {}

    # --- the request's side --------------------------------------------------------------

    def add(self, message: str) -> None:
        """Buffer the access line of ``message``, stamped now."""
        second = int(self._wall_clock())
        stamp = self._stamp
        if stamp[0] != second:  # one strftime a second; a tuple, so threads never mix two seconds
            stamp = (second, time.strftime(DATE_FORMAT, time.gmtime(second)) + self._prefix_tail)
            self._stamp = stamp
        if "\n" in message or "\r" in message:  # as OneLineFormatter folds a multi-line message
            message = message.replace("\r", "").replace("\n", " | ")
        self.append(stamp[1] + message)

    def append(self, line: str) -> None:
        """Buffer one finished line (no newline); write the buffer now if it is full."""
        with self._lock:
            if self._first_at is None:
                self._first_at = self._clock()
                self._wake.set()
            self._lines.append(line)
            self._bytes += len(line) + 1
            full = self._bytes >= self.buffer_bytes
            if self._bytes > self.max_pending_bytes:  # a write hangs: drop the oldest, count them
                while self._bytes > self.max_pending_bytes and len(self._lines) > 1:
                    self._bytes -= len(self._lines.popleft()) + 1
                    self._dropped += 1
            start = self._thread is None and self._start_thread and not self._stopping
            if start:
                self._thread = threading.Thread(target=self._run, name="stevedores-access-log", daemon=True)
        if start:
            try:
                self._thread.start()  # type: ignore[union-attr]
            except RuntimeError:  # no new thread at interpreter shutdown: the lines go by size and at exit
                pass
        if full:
            self.flush(wait=False)  # a write already running takes these lines next

    # --- writing -------------------------------------------------------------------------

    def flush(self, wait: bool = True, timeout: float = -1) -> bool:
        """Write the buffered lines (and any a destination still owes) as one block to each
        destination. ``wait=False``: return False at once if a write is already running."""
        if not self._write_lock.acquire(wait, timeout if wait else -1):
            return False
        try:
            with self._lock:
                lines, self._lines = self._lines, deque()
                self._bytes, self._first_at = 0, None
                dropped, self._dropped = self._dropped, 0
            if lines or any(d.backlog for d in self._destinations.values()):
                self._write(list(lines))
            if dropped:
                log.warning("Access log: %d lines dropped, written too slowly (more than %s waiting)",
                            dropped, _size_text(self.max_pending_bytes))
            return True
        finally:
            self._write_lock.release()

    def flush_if_due(self) -> float | None:
        """Flush if the oldest line is ``flush_seconds`` old or the buffer is full; seconds
        until the next flush is due (None: nothing buffered)."""
        with self._lock:
            wait = self._due_in()
        if wait == 0:
            self.flush()
            with self._lock:
                wait = self._due_in()
        return wait

    def _due_in(self) -> float | None:
        """Seconds until a flush is due, 0 if it is; None when empty. Caller holds ``_lock``."""
        if self._first_at is None:
            return None
        if self._bytes >= self.buffer_bytes:
            return 0.0
        return max(0.0, self._first_at + self.flush_seconds - self._clock())

    def _run(self) -> None:
        """The flusher thread: sleep until the oldest line is due (or a first line comes), write."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._wake.clear()  # under the lock: a first line sets it again after this
                wait = self._due_in()
            if wait is None or wait > 0:
                self._wake.wait(wait)
                continue
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the flusher must outlive any fault; lines stay buffered
                log.exception("Access log: flush failed")
                self._wake.wait(max(self.flush_seconds, 0.1))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the flusher thread and write what is left (process exit)."""
        with self._lock:
            self._stopping = True
            self._wake.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if not self.flush(timeout=timeout):
            log.error("Access log: %d lines not written at exit (a write still hangs)", len(self._lines))
        for destination in self._destinations.values():
            if destination.backlog:
                log.error("Access log: %d lines not written to %s at exit (%s)", len(destination.backlog),
                          destination.label, destination.error)

    def _write(self, lines: list[str]) -> None:
        """Write ``lines`` (plus what each destination still owes) to every destination."""
        handlers = list(self._handlers())
        destinations = {h: self._destinations.get(h) or _Destination(h) for h in handlers}
        self._destinations = destinations  # a removed handler's state goes with it
        redacted: dict[int, list[str]] = {}  # per formatter: this flush's lines, redacted once
        for handler, destination in destinations.items():
            key = id(handler.formatter)
            if key not in redacted:
                redacted[key] = _redact_lines(lines, handler.formatter)
            block = destination.backlog + redacted[key] if destination.backlog else redacted[key]
            if not block:
                continue
            try:
                _write_block(handler, block, self.name)
            except Exception as exc:  # noqa: BLE001 - a destination that fails never fails a request
                destination.failed(block, exc, self.max_pending_bytes)
            else:
                destination.written()


class _Destination:
    """What one handler still owes, and the story of its failures, for the log."""

    def __init__(self, handler: logging.Handler) -> None:
        self.label = getattr(handler, "baseFilename", None) or getattr(getattr(handler, "stream", None), "name",
                                                                      None) or type(handler).__name__
        self.backlog: list[str] = []  # redacted lines not yet written here, oldest first
        self.dropped = 0
        self.error = ""

    def failed(self, block: list[str], exc: Exception, max_bytes: int) -> None:
        first = not self.error
        self.error = f"{type(exc).__name__}: {exc}"
        kept, size = len(block), 0
        while kept > 0 and size + len(block[kept - 1]) + 1 <= max_bytes:
            kept -= 1
            size += len(block[kept]) + 1
        dropping = kept > 0 and not self.dropped  # ``kept`` is now the count of the oldest, dropped
        self.dropped += kept
        self.backlog = block[kept:]
        if first:
            log.error("Access log: writing to %s failed (%s); its lines are kept (up to %s) and written "
                      "with the next block", self.label, self.error, _size_text(max_bytes))
        if dropping:
            log.error("Access log: writing to %s still fails (%s); dropping the oldest lines beyond %s",
                      self.label, self.error, _size_text(max_bytes))

    def written(self) -> None:
        if self.error:
            log.warning("Access log: writing to %s works again; %d lines were dropped while it failed",
                        self.label, self.dropped)
        self.backlog, self.dropped, self.error = [], 0, ""


def _size_text(size: int) -> str:
    return f"{size // 1024} KB" if size >= 1024 else f"{size} bytes"


def _stevedores_handlers() -> list[logging.Handler]:
    """The ``stevedores`` logger's handlers that take INFO lines (stderr, LOG_FILE)."""
    return [h for h in logging.getLogger(LOGGER_NAME).handlers if logging.INFO >= h.level]


def _redact_lines(lines: list[str], formatter: logging.Formatter | None) -> list[str]:
    """``lines`` with the secrets of ``formatter`` (a :class:`OneLineFormatter`) redacted."""
    secrets = getattr(formatter, "secrets", ())
    if not secrets or not lines:
        return lines
    return _redact_block("\n".join(lines), secrets).split("\n")


def _redact_block(text: str, secrets: Sequence[str]) -> str:
    """The lines of ``text`` redacted as :class:`OneLineFormatter` redacts each: one search per secret
    for the whole block (a secret with a line break is left out: it can match no finished line,
    and here it could match across two)."""
    return redact(text, [secret for secret in secrets if "\n" not in secret and "\r" not in secret])


def _write_block(handler: logging.Handler, lines: list[str], name: str) -> None:
    """Write ``lines`` to ``handler``: one block for the handlers that write our one-line format,
    one record per line for any other handler."""
    if isinstance(handler.formatter, OneLineFormatter):
        if _is_concurrent_rotating(handler):
            return _write_rotating(handler, lines)
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.handlers.BaseRotatingHandler):
            return _write_stream(handler, lines)
    marker = f" {name}: "
    for line in lines:  # anything else: its own format and rules, as before the buffer
        handler.handle(logging.makeLogRecord({"name": name, "levelno": logging.INFO, "levelname": "INFO",
                                              "msg": line.partition(marker)[2] or line}))
    return None


def _write_stream(handler: logging.StreamHandler, lines: list[str]) -> None:
    """A block to a stream (stderr, a plain file) under the handler's lock: one write, or pieces of
    whole lines of at most PIPE_BUF bytes on a pipe or socket, so workers' lines never mix."""
    handler.acquire()
    try:
        stream = handler.stream
        if stream is None and isinstance(handler, logging.FileHandler):  # FileHandler(delay=True)
            stream = handler.stream = handler._open()
        pieces = _pipe_pieces(lines) if _is_pipe(stream) else ["\n".join(lines)]
        for piece in pieces:
            stream.write(piece + handler.terminator)
            stream.flush()
    finally:
        handler.release()


def _is_concurrent_rotating(handler: logging.Handler) -> bool:
    try:
        from concurrent_log_handler import ConcurrentRotatingFileHandler
    except ImportError:  # pragma: no cover - a core dependency
        return False
    return isinstance(handler, ConcurrentRotatingFileHandler) and all(
        hasattr(handler, m) for m in ("_do_lock", "_do_unlock", "do_write", "shouldRollover", "doRollover"))


def _write_rotating(handler: Any, lines: list[str]) -> None:
    """A block to concurrent-log-handler's rotating file: its lock (thread lock and lock file) taken
    once, and its own steps of ``emit()`` (stale-file check, rotation test and rotation, ``do_write``)
    for pieces of the block. It rotates before a line when the file has reached maxBytes, as it does
    line by line, so each file holds whole lines and no line is lost or split across a rotation."""
    handler._do_lock()
    try:
        check_stream = getattr(handler, "_check_stream", None)
        if check_stream is not None:
            check_stream()
        start, end = 0, len(lines)
        while start < end:
            try:
                if handler.shouldRollover(None):
                    handler.doRollover()
            except Exception:  # noqa: BLE001 - as the handler's emit(): a failed rotation does not stop the write
                pass
            stop = _lines_before_rotation(handler, lines, start)
            handler.do_write("\n".join(lines[start:stop]))
            start = stop
    finally:
        handler._do_unlock()


def _lines_before_rotation(handler: Any, lines: list[str], start: int) -> int:
    """Index after the last line from ``start`` that begins while the file is under maxBytes."""
    max_bytes = handler.maxBytes
    if max_bytes <= 0:
        return len(lines)
    size = _file_size(handler)
    encoding = getattr(handler, "encoding", None) or "utf-8"
    stop = start
    while stop < len(lines) and (stop == start or size < max_bytes):
        line = lines[stop]
        size += (len(line) if line.isascii() else len(line.encode(encoding, "replace"))) + 1
        stop += 1
    return stop


def _file_size(handler: Any) -> int:
    stream = handler.stream
    if stream is not None and not stream.closed:
        stream.flush()
        return stream.seek(0, os.SEEK_END)
    try:
        return os.path.getsize(handler.baseFilename)
    except OSError:
        return 0


def _is_pipe(stream: Any) -> bool:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _pipe_pieces(lines: list[str]) -> list[str]:
    """``lines`` joined into pieces of at most PIPE_BUF bytes each (a longer line goes alone)."""
    pieces: list[str] = []
    piece: list[str] = []
    size = 0
    for line in lines:
        length = (len(line) if line.isascii() else len(line.encode("utf-8", "replace"))) + 1
        if piece and size + length > PIPE_BUF:
            pieces.append("\n".join(piece))
            piece, size = [], 0
        piece.append(line)
        size += length
    if piece:
        pieces.append("\n".join(piece))
    return pieces


#: This process's buffer (gunicorn's workers each have their own, from the fork).
ACCESS_BUFFER = AccessBuffer()
atexit.register(ACCESS_BUFFER.close)


def flush_access_log(timeout: float = 5.0) -> bool:
    """Write this process's buffered access lines now (gunicorn's ``worker_exit``, benchmarks); False
    if a write already running (a stalled stderr) did not end within ``timeout`` seconds."""
    return ACCESS_BUFFER.flush(timeout=timeout)
