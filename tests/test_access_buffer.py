"""The access log's write-behind buffer (``stevedores.access_buffer``): its timing rules with a fake
clock, the line it writes against the one-line formatter's, rotation, pipes, failures and forks;
then under real gunicorn: nothing lost or split across threads, rotation, stops, reloads and recycles."""

from __future__ import annotations

import http.client
import io
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from concurrent_log_handler import ConcurrentRotatingFileHandler

from stevedores.access_buffer import PIPE_BUF, AccessBuffer, _pipe_pieces, _write_rotating
from stevedores.logs import DATE_FORMAT, FORMAT, OneLineFormatter
from stevedores.redaction import REDACTED


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _stream_handler(stream: io.StringIO | None = None, secrets: tuple[str, ...] = ()) -> logging.StreamHandler:
    handler = logging.StreamHandler(stream if stream is not None else io.StringIO())
    handler.setFormatter(OneLineFormatter(FORMAT, DATE_FORMAT, secrets))
    return handler


def _written(handler: logging.StreamHandler) -> list[str]:
    return handler.stream.getvalue().splitlines()  # type: ignore[attr-defined]


# --- the buffer alone --------------------------------------------------------------------------


def test_lines_wait_until_the_oldest_is_flush_seconds_old_or_the_buffer_is_full() -> None:
    clock, out = _Clock(100.0), _stream_handler()
    buffer = AccessBuffer(1.0, buffer_bytes=300, handlers=lambda: [out], clock=clock, start_thread=False)
    assert buffer.flush_if_due() is None  # nothing buffered, nothing due
    buffer.append("a" * 50)
    clock.now = 100.6
    buffer.append("b" * 50)
    assert buffer.flush_if_due() == pytest.approx(0.4) and _written(out) == []  # the oldest decides
    clock.now = 101.0
    assert buffer.flush_if_due() is None and _written(out) == ["a" * 50, "b" * 50]
    clock.now = 250.0  # an idle spell does not count: the clock starts with the next first line
    buffer.append("c" * 50)
    assert buffer.flush_if_due() == pytest.approx(1.0) and len(_written(out)) == 2
    for i in range(4):  # 5 x 51 bytes, then the sixth passes 300: written at once, no time passed
        buffer.append(f"{i}" * 50)
    assert len(_written(out)) == 2
    buffer.append("f" * 50)
    assert _written(out)[2:] == ["c" * 50, *(f"{i}" * 50 for i in range(4)), "f" * 50]
    assert buffer.flush_if_due() is None


def test_the_line_is_the_one_line_formatters_line() -> None:
    """Same text as a LogRecord through OneLineFormatter: prefix, UTC stamp, pid, folding, redaction."""
    secret = "sekrit-token-value"
    formatter = OneLineFormatter(FORMAT, DATE_FORMAT, [secret, "ab"])  # "ab": too short to redact
    out = _stream_handler(secrets=(secret, "ab"))
    out.setFormatter(formatter)
    created = 1_796_036_081.75  # 2026-11-30T...Z
    buffer = AccessBuffer(1.0, handlers=lambda: [out], wall_clock=lambda: created, start_thread=False)
    messages = ['10.0.0.7 - - "GET /a?t=sekrit-token-value HTTP/1.1" 200 5 "-" "ua\r\nx" 12us',
                '10.0.0.7 - ab "GET / HTTP/1.1" 404 - "https://example.org/" "curl/8.5" 3us']
    for message in messages:
        buffer.add(message)
    buffer.flush()
    expected = []
    for message in messages:
        record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, message, None, None)
        record.created = created
        expected.append(formatter.format(record))
    assert _written(out) == expected
    assert secret not in out.stream.getvalue() and REDACTED in expected[0] and "ua | x" in expected[0]


def test_a_failing_destination_keeps_its_newest_lines_and_never_stops_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    class Disk(io.StringIO):
        full = True

        def write(self, text: str) -> int:
            if self.full:
                raise OSError(28, "No space left on device")
            return super().write(text)

    good, bad = _stream_handler(), _stream_handler(Disk())
    buffer = AccessBuffer(1.0, max_pending_bytes=10 * 11, handlers=lambda: [good, bad], start_thread=False)
    caplog.set_level(logging.INFO, "stevedores.access_log")
    lines = [f"line {i:04d}" for i in range(30)]  # 10 bytes each with the newline
    for line in lines[:5]:
        buffer.append(line)
    buffer.flush()
    assert _written(good) == lines[:5] and _written(bad) == []
    for block in (lines[5:12], lines[12:20]):  # 12, then 19 lines owed: the oldest of them dropped
        for line in block:
            buffer.append(line)
        buffer.flush()
    buffer.flush()  # nothing new: the failing destination is tried again all the same
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage() or "fails" in r.getMessage()]
    assert len(failures) == 2, failures  # once when it failed, once when it began dropping
    assert "No space left on device" in failures[0] and "dropping the oldest" in failures[1]
    bad.stream.full = False  # type: ignore[attr-defined]
    for line in lines[20:]:
        buffer.append(line)
    buffer.flush()
    assert _written(good) == lines  # every line, once, in order
    assert _written(bad) == lines[9:]  # the 11 newest it kept (110 bytes), then this block's 10
    recovered = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert len(recovered) == 1 and recovered[0].endswith("9 lines were dropped while it failed"), recovered


def test_a_block_rotates_the_file_exactly_where_line_by_line_writing_would(tmp_path: Path) -> None:
    lines = [f"line {i:05d} " + "x" * (i * 37 % 150) for i in range(2500)]
    per_line, blocks = tmp_path / "per-line", tmp_path / "blocks"
    for directory in (per_line, blocks):
        directory.mkdir()
    one = ConcurrentRotatingFileHandler(str(per_line / "app.log"), maxBytes=4096, backupCount=100)
    one.setFormatter(logging.Formatter("%(message)s"))
    for line in lines:
        one.emit(logging.makeLogRecord({"msg": line}))
    one.close()
    many = ConcurrentRotatingFileHandler(str(blocks / "app.log"), maxBytes=4096, backupCount=100)
    start = 0
    for size in (1, 700, 3, 64, 999, 2500):  # blocks of every size, one larger than many files
        _write_rotating(many, lines[start:start + size])
        start += size
    many.close()
    files = sorted(p.name for p in per_line.glob("app.log*"))
    assert len(files) > 50 and files == sorted(p.name for p in blocks.glob("app.log*"))
    for name in files:
        assert (per_line / name).read_bytes() == (blocks / name).read_bytes(), name


def _stop(procs: list[multiprocessing.process.BaseProcess]) -> None:
    """Kill and reap any of ``procs`` still running (a failed test leaves no child behind)."""
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def test_on_a_pipe_a_block_goes_in_whole_lines_of_at_most_pipe_buf(tmp_path: Path) -> None:
    lines = [f"{i:05d} " + "y" * (i * 53 % 700) for i in range(400)] + ["z" * (PIPE_BUF + 10)]
    pieces = _pipe_pieces(lines)
    assert "\n".join(pieces).split("\n") == lines
    assert all(len(p.encode()) + 1 <= PIPE_BUF for p in pieces if p != lines[-1])
    # Two processes write large blocks into one pipe that is read slowly: no line mixes with another.
    read_end, write_end = os.pipe()
    ctx = multiprocessing.get_context("fork")

    def writer(tag: str) -> None:
        stream = open(write_end, "w", closefd=False)  # noqa: SIM115 - the child's exit closes it
        buffer = AccessBuffer(60, handlers=lambda: [_stream_handler(stream)], start_thread=False)
        for i in range(3000):
            buffer.append(f"{tag} {i:05d} " + tag * 150)
        buffer.flush()

    procs = [ctx.Process(target=writer, args=(tag,)) for tag in "AB"]
    try:
        for proc in procs:
            proc.start()
        os.close(write_end)
        received = b""
        with open(read_end, "rb") as pipe:
            while chunk := pipe.read(1000):
                received += chunk
                time.sleep(0.0005)  # slower than the writers: the pipe fills and they wait
        for proc in procs:
            proc.join(10)
    finally:
        _stop(procs)
    got = received.decode().splitlines()
    assert len(got) == 6000
    assert all(re.fullmatch(r"([AB]) \d{5} \1{150}", line) for line in got), [
        line[:80] for line in got if not re.fullmatch(r"([AB]) \d{5} \1{150}", line)][:3]


def test_a_forked_child_writes_its_own_lines_only_with_a_flusher_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(OneLineFormatter(FORMAT, DATE_FORMAT))
    buffer = AccessBuffer(60.0, handlers=lambda: [handler])  # the parent's flusher starts, and sleeps
    buffer.append("parent line")

    def child() -> None:
        buffer.flush_seconds = 0.05
        buffer.append("child line")  # a new flusher thread in the child writes it; nobody calls flush()
        deadline = time.monotonic() + 10
        while "child line" not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0 if "child line" in path.read_text() else 1)

    proc = multiprocessing.get_context("fork").Process(target=child)
    try:
        proc.start()
        proc.join(15)
    finally:
        _stop([proc])
    assert proc.exitcode == 0
    assert path.read_text().splitlines() == ["child line"]  # not the parent's line, which it still holds
    buffer.close()
    assert path.read_text().splitlines() == ["child line", "parent line"]
    handler.close()


def test_the_flusher_thread_writes_on_time_and_close_writes_the_rest() -> None:
    out = _stream_handler()
    buffer = AccessBuffer(0.2, handlers=lambda: [out])
    started = time.monotonic()
    buffer.append("first")
    while not _written(out) and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert _written(out) == ["first"] and 0.15 <= time.monotonic() - started < 2
    buffer.flush_seconds = 60
    buffer.append("second")
    buffer.close()
    assert _written(out) == ["first", "second"]


# --- under gunicorn ----------------------------------------------------------------------------

ACCESS = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO \[(\d+)\] gunicorn\.access: 127\.0\.0\.1 - - '
                    r'"GET /health/live\?c=(\d+)&n=(\d+) HTTP/1\.1" 200 \d+ "-" "[^"]*" \d+us')
ACCESS_ON = {"ACCESS_LOG_INFRASTRUCTURE": "true"}  # /health/live: the cheapest route; its lines logged


def _access(text: str) -> list[tuple[int, int, int]]:
    """(pid, connection, n) of each of our access lines in ``text``; any access line that does not
    match whole (split, mixed) fails the test."""
    found = []
    for line in text.splitlines():
        if "gunicorn.access:" in line and "/health/live?c=" in line:
            match = ACCESS.fullmatch(line)
            assert match, f"not a whole access line: {line!r}"
            found.append((int(match[1]), int(match[2]), int(match[3])))
    return found


def _log_files(server_log_file: Path) -> list[Path]:
    """LOG_FILE and its rotated files, oldest first."""
    rotated = [p for p in server_log_file.parent.glob(server_log_file.name + ".*") if p.suffix[1:].isdigit()]
    return sorted(rotated, key=lambda p: -int(p.suffix[1:])) + [server_log_file]


def _file_text(log_file: Path) -> str:
    texts = []
    for path in _log_files(log_file):
        text = path.read_text()
        assert text == "" or text.endswith("\n"), f"{path.name} ends inside a line"
        texts.append(text)
    return "".join(texts)


def _get(url: str, connection: int, n: int) -> None:
    urllib.request.urlopen(f"{url}/health/live?c={connection}&n={n}", timeout=10).read()


def _until(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> float:
    """Poll ``condition`` until true; the seconds it took (AssertionError with ``message()`` after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, message()
        time.sleep(0.05)
    return time.monotonic() - started


def test_under_gunicorn_no_line_is_lost_split_or_reordered_across_threads_and_rotations(
        stevedores_gunicorn_server: Callable, stevedores_environ: dict[str, str]) -> None:
    flush = 1.0
    server = stevedores_gunicorn_server(env={**ACCESS_ON, "ACCESS_LOG_FLUSH_SECONDS": str(flush),
                                             "LOG_MAX_BYTES": "16384", "LOG_BACKUP_COUNT": "100"},
                                        ready_path="/health/live")
    log_file = Path(stevedores_environ["LOG_FILE"])
    connections, per_connection = 8, 250
    answered: list[tuple[int, int]] = []

    def client(c: int) -> None:  # one kept-alive connection: its requests are logged in their order
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for n in range(per_connection):
            for attempt in range(3):
                try:
                    conn.request("GET", f"/health/live?c={c}&n={n}")
                    response = conn.getresponse()
                    response.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                    if attempt == 2:
                        raise
            assert response.status == 200
            answered.append((c, n))
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answered) == connections * per_connection
    took = _until(lambda: len(_access(server.log())) >= len(answered) and len(_access(_file_text(log_file))) >= len(
        answered), flush + 4, lambda: f"{len(_access(server.log()))} on stderr, {len(_access(_file_text(log_file)))} "
                                      f"in LOG_FILE of {len(answered)}")
    assert took < flush + 2.5, took  # the last block was written on time (+ slack for a busy machine)
    stderr, files = _access(server.log()), _access(_file_text(log_file))
    assert len(_log_files(log_file)) > 10  # it rotated, many times, while two workers wrote
    for written in (stderr, files):
        assert sorted((c, n) for _, c, n in written) == sorted(answered)  # each line once
        for c in range(connections):  # each connection's lines in the order of its requests
            assert [n for _, cc, n in written if cc == c] == list(range(per_connection))
    for pid in {pid for pid, _, _ in stderr}:  # and each worker's lines in the same order in both
        assert [x for x in stderr if x[0] == pid] == [x for x in files if x[0] == pid]


def test_buffered_lines_are_todays_lines_and_zero_writes_each_at_once(stevedores_gunicorn_server: Callable) -> None:
    requests = [("/static/stevedores.css", {"User-Agent": 'agent "007"', "Referer": "https://example.org/x"}),
                ("/no-such-page?q=a%20b", {"User-Agent": "curl/8.5"}),
                ("/static/stevedores.css?v=2", {})]
    stamp_pid_and_time = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO \[\d+\] |\d+us$")
    lines = {}
    for flush in ("0", "1"):
        server = stevedores_gunicorn_server(env={"ACCESS_LOG_FLUSH_SECONDS": flush, "WEB_WORKERS": "1"},
                                            ready_path="/health/live")  # a successful probe: no line

        def access_lines(server: object = server) -> list[str]:
            return [x for x in server.log().splitlines() if "gunicorn.access:" in x]  # type: ignore[attr-defined]

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i, (path, headers) in enumerate(requests):
            conn.request("GET", path, headers=headers)
            conn.getresponse().read()
            if flush == "0" and i:  # one kept-alive connection: the line of the request before this one
                assert len(access_lines()) >= i, server.log()  # was written before this one was read
        conn.close()
        _until(lambda: len(access_lines()) == len(requests), 5, server.log)
        lines[flush] = [stamp_pid_and_time.sub("", x) for x in access_lines()]
        server.stop()
    assert lines["1"] == lines["0"], lines
    assert re.fullmatch(r'gunicorn\.access: 127\.0\.0\.1 - - "GET /static/stevedores\.css HTTP/1\.1" 200 \d+ '
                        r'"https://example\.org/x" "agent \\"007\\"" ', lines["0"][0]), lines["0"][0]


def _requests_then(server: object, count: int, start: int = 0) -> list[tuple[int, int]]:
    url = server.url  # type: ignore[attr-defined]
    for n in range(start, start + count):
        _get(url, 0, n)
    return [(0, n) for n in range(start, start + count)]


def test_a_graceful_stop_writes_every_buffered_line(stevedores_gunicorn_server: Callable,
                                                    stevedores_environ: dict[str, str]) -> None:
    server = stevedores_gunicorn_server(env={**ACCESS_ON, "ACCESS_LOG_FLUSH_SECONDS": "60"}, ready_path="/health/live")
    log_file = Path(stevedores_environ["LOG_FILE"])
    sent = _requests_then(server, 40)
    time.sleep(0.2)
    assert _access(server.log()) == [] and _access(_file_text(log_file)) == []  # still buffered (60 s)
    assert server.stop(signal.SIGTERM) == 0
    for text in (server.log(), _file_text(log_file)):
        assert sorted((c, n) for _, c, n in _access(text)) == sent


def test_a_reload_and_recycles_lose_no_line(stevedores_gunicorn_server: Callable,
                                            stevedores_environ: dict[str, str]) -> None:
    """SIGHUP (old workers stop gracefully), recycling by count (GUNICORN_MAX_REQUESTS) and a worker's
    SIGTERM (what memory_guard sends itself): each exiting worker writes its lines as it goes."""
    server = stevedores_gunicorn_server(env={**ACCESS_ON, "ACCESS_LOG_FLUSH_SECONDS": "60",
                                             "GUNICORN_MAX_REQUESTS": "30"}, ready_path="/health/live")
    log_file = Path(stevedores_environ["LOG_FILE"])
    first = server.wait_for_workers(2)
    sent = _requests_then(server, 20)
    os.kill(server.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    _until(lambda: len(_access(server.log())) == 20, 15, server.log)  # the old workers wrote theirs
    assert sorted((c, n) for _, c, n in _access(_file_text(log_file))) == sent
    booted = server.wait_for_workers(4)
    os.kill(booted[-1], signal.SIGTERM)  # as memory_guard recycles a worker
    sent += _requests_then(server, 100, start=20)  # more than 2 x 33: workers recycle by count
    assert server.stop(signal.SIGTERM) == 0
    assert "Autorestarting worker after current request" in server.log()
    assert len(server.booted_workers()) >= 6 and set(first) < set(server.booted_workers())
    for text in (server.log(), _file_text(log_file)):
        assert sorted((c, n) for _, c, n in _access(text)) == sent
