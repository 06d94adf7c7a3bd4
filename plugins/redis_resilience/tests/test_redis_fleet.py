"""Redis for fleets: a peer that is not Redis, Sentinel URLs, and a real Sentinel failover."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import redis as redis_py
from stevedores_redis_resilience.health import redis_check
from stevedores_redis_resilience.sentinel import SentinelTarget, parse_sentinel_url

from stevedores import get_service
from stevedores.testing import free_port, require_service, stop_process

PLUGIN = ["redis_resilience"]


class FakePeer:
    """A TCP server on a free port that answers every connection with ``reply`` and counts them."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(4096):
                    conn.sendall(self.reply)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_peer() -> Iterator[Callable[[bytes], FakePeer]]:
    peers: list[FakePeer] = []

    def start(reply: bytes) -> FakePeer:
        peers.append(FakePeer(reply))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reply", [HTTP_400, b"-ERR unknown command\r\n"], ids=["http-server", "error-replies"])
def test_a_peer_that_is_not_redis_opens_the_breaker(reply: bytes, fake_peer: Callable, resilient: Callable) -> None:
    peer = fake_peer(reply)
    client, cache = resilient(f"redis://127.0.0.1:{peer.port}/0", failure_threshold=3)
    results = [cache.get(f"key-{i}") for i in range(200)]
    assert results == [None] * 200 and cache.mode == "memory"
    assert client.state == "open"
    assert peer.connections <= 3  # before: one new connection per call, the breaker never opening
    health = redis_check(client, cache)()
    assert (health["status"], health["circuit_breaker_state"]) == ("error", "open")
    assert health["last_error"] in ("InvalidResponse", "ResponseError")


@pytest.mark.timeout(30)
def test_an_error_reply_to_a_wrong_command_is_not_an_outage(stevedores_redis_server: Callable,
                                                            resilient: Callable) -> None:
    server = stevedores_redis_server()
    client, _ = resilient(server.url, failure_threshold=2)
    client.call(lambda r: r.set("text", "x"), lambda: None)
    for _ in range(5):  # INCR on a string: Redis answers WRONGTYPE/ERR, it is up
        assert client.call(lambda r: r.incr("text"), lambda: "fallback") == "fallback"
    assert client.state == "closed"


@pytest.mark.parametrize("url,expected", [
    ("redis+sentinel://127.0.0.1:26379/mymaster",
     SentinelTarget((("127.0.0.1", 26379),), "mymaster")),
    ("redis+sentinel://:p%40ss@s1:26379,s2:26380/cache/3",
     SentinelTarget((("s1", 26379), ("s2", 26380)), "cache", 3, None, "p@ss")),
    ("REDIS+SENTINEL://ops:pw@[::1]:26379/mymaster/",
     SentinelTarget((("::1", 26379),), "mymaster", 0, "ops", "pw")),
])
def test_sentinel_urls_in_the_form_limits_reads(url: str, expected: SentinelTarget,
                                                make_stevedores_app: Callable) -> None:
    assert parse_sentinel_url(url) == expected
    app = make_stevedores_app(plugins=PLUGIN, env={"REDIS_URL": url})
    assert get_service(app, "redis").url == url


@pytest.mark.timeout(60)
def test_the_client_follows_a_sentinel_failover(stevedores_redis_sentinel_group: Callable,
                                                make_stevedores_app: Callable) -> None:
    group = stevedores_redis_sentinel_group()
    app = make_stevedores_app(env={
        "REDIS_URL": group.url, "REDIS_BREAKER_FAILURE_THRESHOLD": "2", "REDIS_BREAKER_RECOVERY_TIMEOUT": "0.5",
        "RATE_LIMITS": "100000 per minute"})
    client, cache = get_service(app, "redis"), get_service(app, "cache")
    web = app.test_client()
    assert cache.set("before", "failover", ttl=120) and cache.get("before") == "failover"
    assert client.call(lambda r: r.connection_pool.connection_kwargs.get("socket_timeout"), lambda: None) == 0.3
    statuses: list[int] = []

    def visit() -> None:
        statuses.append(web.get("/health/live").status_code)
        statuses.append(web.get("/login").status_code)  # a page: the app-wide limits count it in Redis
        cache.get("before")

    for _ in range(20):
        visit()
    started = time.monotonic()
    group.fail_over()
    while time.monotonic() - started < 30:  # until the probe after the recovery timeout reaches the new master
        visit()
        # Right after the promotion a sentinel may still answer "no master" (MasterNotFoundError):
        # a failure like any other, the breaker opens and probes again after its recovery timeout.
        if client.call(lambda r: r.set("after", "failover"), lambda: False) and client.state == "closed":
            break
        time.sleep(0.05)
    assert client.state == "closed", (f"the breaker never closed on the promoted replica: {client.breaker.snapshot()}; "
                                      f"sentinel says the master is on {group.master_port()}")
    assert client.call(lambda r: r.connection_pool.get_master_address(), lambda: None) == (
        "127.0.0.1", group.replica.port)
    assert cache.get("before") == "failover"  # replicated before the failover, served by the new master
    assert set(statuses) == {200}
    promoted = redis_py.Redis(port=group.replica.port)
    counted = {k: int(promoted.get(k)) for k in promoted.scan_iter("stevedores:ratelimit:*")}
    assert counted, "no rate-limit count reached the promoted master"
    assert web.get("/login").status_code == 200  # the limits' own connection per thread follows the failover too
    assert {k: int(promoted.get(k)) for k in counted} == {k: v + 1 for k, v in counted.items()}, counted
    rate_limiter = web.get("/health").get_json()["checks"]["rate_limiter"]
    assert rate_limiter["storage"] == "redis", rate_limiter


def test_redis_check_reports_a_sentinel_outage_without_addresses(resilient: Callable) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    url = f"redis+sentinel://:pw@127.0.0.1:{port.getsockname()[1]}/mymaster"
    port.close()
    client, cache = resilient(url, failure_threshold=1)
    health: dict[str, Any] = redis_check(client, cache)()
    assert (health["status"], health["circuit_breaker_state"]) == ("error", "open")
    assert "127.0.0.1" not in str(health) and "pw" not in str(health)


@pytest.fixture
def tls_redis(tmp_path: Any) -> Iterator[tuple[int, str]]:
    """A real redis-server speaking only TLS (certificate for ``localhost`` from a CA of its own); (port, CA file)."""
    binary = shutil.which("redis-server")
    require_service("redis-server binary", binary is not None, "install the redis-server package")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path, timeout=30)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", *curve, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (tmp_path / "ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "ext", "-out", "server.crt")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file",
                             "ca.crt", "--tls-auth-clients", "no", "--dir", str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, str(tmp_path / "ca.crt")
    finally:
        stop_process(proc, timeout=10)


@pytest.mark.timeout(60)
def test_rediss_talks_tls_to_a_verified_server(tls_redis: tuple[int, str], make_stevedores_app: Callable,
                                               resilient: Callable) -> None:
    port, ca = tls_redis
    app = make_stevedores_app(plugins=PLUGIN, env={"REDIS_URL": f"rediss://localhost:{port}/0?ssl_ca_certs={ca}"})
    cache = get_service(app, "cache")
    assert cache.set("over", "tls", ttl=60) and cache.get("over") == "tls" and cache.mode == "redis"
    # Not trusted (no CA given: the system's CAs do not know this one) and the wrong host name:
    # both are outages the breaker counts, never a crash, never an unverified connection.
    for url in (f"rediss://localhost:{port}/0", f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"):
        client, fallback_cache = resilient(url, failure_threshold=2)
        assert [fallback_cache.get("over") for _ in range(3)] == [None] * 3
        assert client.state == "open" and "CERTIFICATE_VERIFY_FAILED" in client.breaker.snapshot().last_failure
