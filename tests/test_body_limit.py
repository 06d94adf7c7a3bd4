"""MAX_CONTENT_LENGTH: 413 before the body is read, on every route (stevedores.body_limit)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from typing import Any, Callable

import psutil
import pytest

MIB = 1024 * 1024


def test_a_declared_body_over_the_limit_is_refused_with_the_headers_and_a_named_field(
        make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(env={"WEB_WORKERS": "1"}).test_client()
    response = client.post("/login", data={"username": "a", "password": "x" * (2 * MIB)})
    assert response.status_code == 413
    assert response.get_json()["errors"][0]["field"] == "Content-Length"
    assert response.headers["X-Frame-Options"] == "DENY"  # the plugins' layers wrap the limit
    assert client.post("/login", data={"username": "a", "password": "b" * 100}).status_code != 413


def test_a_chunked_body_over_the_limit_is_refused_and_one_under_it_arrives_whole() -> None:
    from stevedores.body_limit import BodyLimit

    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [])
        return [b""]

    limited = BodyLimit(app, 4096)
    for size, status in ((4096, "200 OK"), (4097, "413 Request Entity Too Large")):
        endless = io.BytesIO(b"x" * size + b"never read" * 10_000)
        stream = io.BytesIO(b"x" * size)
        answers = []
        environ = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": stream if size == 4096 else endless}
        limited(environ, lambda s, h, answers=answers: answers.append(s))
        assert answers == [status]
    assert seen == [b"x" * 4096]  # whole, with its length; the over-long one never reached the app
    assert endless.tell() == 4097  # read one byte past the limit, no more


def _exchange(port: int, head: str, body_parts: Any, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` then ``body_parts`` (from a thread: the server may stop reading); return the
    first bytes of the answer and the seconds it took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send() -> None:
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server answered and closed: exactly what is tested

    started = time.monotonic()
    sock.sendall(head.encode())
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except (TimeoutError, ConnectionResetError) as exc:
        answer += repr(exc).encode()
    elapsed = time.monotonic() - started
    sock.close()
    sender.join(5)
    return answer, elapsed


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _chunked(total: int, size: int = 64 * 1024) -> Any:
    for _ in range(total // size):
        yield b"%x\r\n" % size + b"x" * size + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.timeout(120)
def test_gunicorn_answers_413_at_once_and_the_worker_does_not_grow(stevedores_gunicorn_server: Callable) -> None:
    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "1"}, ready_path="/health/live")
    worker = psutil.Process(server.proc.pid).children()[0]
    rss_before = worker.memory_info().rss
    cases = {
        # The audit's 1 GB anonymous multipart login, at 2 MiB: declared, 256 KB of it sent.
        "multipart /login": (f"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {2 * MIB}\r\n"
                             "Content-Type: multipart/form-data; boundary=b\r\n\r\n",
                             [b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n'] + [b"x" * 65536] * 4),
        # The audit's 200 MB JSON (it took a worker from 79 MB to 650 MB): 8 MB of it sent.
        "200 MB JSON": ("POST /api/vessel-calls HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n"
                        "Content-Type: application/json\r\n\r\n", [b"[" + b"1," * 32768] * 128),
        # No length declared: cut when the body passes the limit.
        "chunked /login": ("POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n\r\n", _chunked(4 * MIB)),
    }
    fields = {}
    for name, (head, body) in cases.items():
        answer, elapsed = _exchange(server.port, head, body)
        assert answer.startswith(b"HTTP/1.1 413"), (name, answer[:200])
        assert elapsed < 5, (name, elapsed)  # at once: nothing waits for the body (10 s without the limit)
        fields[name] = json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["field"]
    assert fields == {"multipart /login": "Content-Length", "200 MB JSON": "Content-Length", "chunked /login": "body"}
    grown = (worker.memory_info().rss - rss_before) / MIB
    assert grown < 16, f"the worker grew by {grown:.1f} MiB"
