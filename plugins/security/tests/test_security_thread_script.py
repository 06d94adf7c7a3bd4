"""The counting script on each thread's own Redis connection (stevedores_security.thread_script),
against real redis-servers: a connection per thread and per process, replaced after a restart
without an error, the script loaded again after Redis lost it, and outages raised for the breaker."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry
from stevedores_security.counting import INCR_EXPIRE_LUA
from stevedores_security.thread_script import ThreadConnectionScript

pytestmark = pytest.mark.timeout(60)

KEY = "stevedores:test:thread-script"
#: (a private redis-server, a client of it, the counting script), from the ``counted`` fixture.
Counted = tuple[Any, redis_py.Redis, ThreadConnectionScript]


def _client(url: str) -> redis_py.Redis:
    return redis_py.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def _count(script: ThreadConnectionScript, client: redis_py.Redis, key: str = KEY) -> int:
    count, _ttl = script(client, [key], [1, 60, 1000])
    return int(count)


def _client_ids(client: redis_py.Redis) -> set[int]:
    return {c["id"] for c in client.client_list() if c.get("name") != "observer"}


@pytest.fixture
def counted(stevedores_redis_server: Callable) -> Counted:
    """(a private redis-server, a client of it, the counting script) after a first count of 1."""
    server = stevedores_redis_server()
    client = _client(server.url)
    script = ThreadConnectionScript(INCR_EXPIRE_LUA)
    assert _count(script, client) == 1
    return server, client, script


def test_each_thread_counts_on_one_connection_of_its_own(stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    client = _client(server.url)
    observer = redis_py.Redis.from_url(server.url, client_name="observer")
    script = ThreadConnectionScript(INCR_EXPIRE_LUA)
    before = _client_ids(observer)

    def count_many() -> None:
        for _ in range(50):
            _count(script, client)

    threads = [threading.Thread(target=count_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert int(observer.get(KEY)) == 200  # every count reached Redis once
    assert len(_client_ids(observer) - before) == 4  # one connection per thread, reused for its 50 calls
    assert not client.connection_pool._in_use_connections  # never taken from the pool's own


def test_a_restarted_redis_is_reached_again_without_an_error(counted: Counted) -> None:
    server, client, script = counted
    server.restart()  # the thread's connection is now closed by the server, and the script cache empty
    assert _count(script, client) == 1  # no error: a fresh connection, the script loaded again
    assert _count(script, client) == 2


def test_the_script_is_loaded_again_when_redis_lost_it(counted: Counted) -> None:
    server, client, script = counted
    client.script_flush()
    assert _count(script, client) == 2
    assert client.script_exists(script.sha) == [True]


def test_an_outage_is_raised_for_the_breaker(counted: Counted) -> None:
    server, client, script = counted
    server.kill()
    with pytest.raises(redis_py.exceptions.ConnectionError):
        _count(script, client)  # the stale connection and the one fresh attempt both fail
    with pytest.raises(redis_py.exceptions.ConnectionError):
        _count(script, client)
    server.start()
    assert _count(script, client) == 1  # back by itself (the killed server kept nothing)


def test_a_frozen_redis_raises_a_timeout_within_the_read_timeout(counted: Counted) -> None:
    server, client, script = counted
    server.pause()
    started = time.monotonic()
    try:
        with pytest.raises(redis_py.exceptions.TimeoutError):
            _count(script, client)
    finally:
        server.resume()
    assert time.monotonic() - started < 0.5 * 2, "more than one read timeout (0.5 s) spent"
    # The timed-out connection was dropped and a new one answers. The timed-out count itself reached
    # Redis's socket before the freeze, so Redis runs it when it wakes: a limit errs towards refusing.
    assert _count(script, client) in (2, 3)


def test_a_new_client_gets_a_new_connection_and_the_old_one_is_closed(stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    observer = redis_py.Redis.from_url(server.url, client_name="observer")
    script = ThreadConnectionScript(INCR_EXPIRE_LUA)
    _count(script, _client(server.url))
    first = _client_ids(observer)
    _count(script, _client(server.url))  # as when the redis service builds a new client
    second = _client_ids(observer)
    assert len(first) == len(second) == 1 and first != second


def test_a_forked_child_makes_its_own_connection(counted: Counted) -> None:
    server, client, script = counted
    held: Any = script._local.held
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: counting on the parent's socket would mix the two processes' replies
        try:
            answer = f"{_count(script, client)} {script._local.held is not held}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer = repr(exc)
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    reply = os.read(read, 200).decode()
    os.waitpid(pid, 0)
    assert reply == "2 True"
    assert _count(script, client) == 3  # the parent's connection is untouched


def test_a_reply_read_later_and_one_never_read(stevedores_redis_server: Callable) -> None:
    server = stevedores_redis_server()
    client = _client(server.url)
    script = ThreadConnectionScript(INCR_EXPIRE_LUA)
    first = script.send(client, [KEY], [1, 60, 1000])
    assert _count(script, client, KEY + ":other") == 1  # the first reply is read before the connection's next use
    assert int(first.reply()[0]) == 1 and int(first.reply()[0]) == 1  # kept, and read once
    script.send(client, [KEY], [1, 60, 1000])  # never read (a request that ended before asking)
    assert _count(script, client) == 3


def test_a_reply_read_after_redis_restarted_is_counted_again(counted: Counted) -> None:
    server, client, script = counted
    server.restart()
    sent = script.send(client, [KEY], [1, 60, 1000])  # into the connection the restart closed
    assert int(sent.reply()[0]) == 1  # no error: sent again on a fresh connection when the reply was not there


def test_an_error_reading_a_reply_is_raised_by_reply(counted: Counted) -> None:
    server, client, script = counted
    server.pause()
    try:
        unread = script.send(client, [KEY], [1, 60, 1000])  # written to the socket, never read by its caller
        started = time.monotonic()
        with pytest.raises(redis_py.exceptions.TimeoutError):
            script.send(client, [KEY], [1, 60, 1000])  # reading the unread reply first times out: raised at once
        assert unread.failed_with_outage
        with pytest.raises(redis_py.exceptions.TimeoutError):
            unread.reply()  # the same error for its caller, not a second wait
        assert time.monotonic() - started < 0.5 * 1.8, "a second wait"
    finally:
        server.resume()
    assert _count(script, client) in (2, 3)  # a fresh connection answers (the timed-out count may have landed)
