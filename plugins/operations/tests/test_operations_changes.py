"""The change signal (changes.py): pages skip their freshness query while nothing has changed, and only then.

The validity rule with a fake clock; the shared token across a fork; then in-process on the real
PostgreSQL (a database of each test's own) with the listener started as a worker starts it:
no query at all while nothing changes, a write of this instance on the next request, a write
from outside (a plain psycopg connection) within a bound (measured), the listener's connection
killed or frozen, notifications that never come back, the triggers missing; SQLite and the
setting off unchanged. The real-gunicorn test is in test_operations_workers.py.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from stevedores_operations import changes
from stevedores_operations.changes import APPLICATION_NAME, VALID_SECONDS, Freshness, SharedToken
from stevedores_operations.context import state

from bench.tcp_proxy import TcpProxy
from stevedores.testing import FakeClock, temporary_postgres_database

# --- the rule, without a database --------------------------------------------------------


def test_a_version_is_given_only_while_contact_is_recent_and_moves_with_every_change() -> None:
    clock, token = FakeClock(), SharedToken()
    freshness = Freshness(token, clock, valid_for=2.0)
    assert freshness.version() is None  # never confirmed
    freshness.confirmed(clock.now)
    first = freshness.version()
    assert first is not None and freshness.version() == first  # nothing happened: the same version
    clock.advance(1.9)
    assert freshness.version() == first
    clock.advance(0.1)
    assert freshness.version() is None  # the last answered heartbeat was sent 2 s ago: expired
    freshness.confirmed(clock.now - 0.5)  # a slow answer, 1.5 s after the last: contact was never lost
    assert freshness.version() == first
    clock.advance(3.0)
    assert freshness.version() is None
    freshness.confirmed(clock.now)  # 3 s since the last contact: notifications may have been missed
    again = freshness.version()
    assert again is not None and again != first
    freshness.confirmed(clock.now)  # contact held: same generation
    assert freshness.version() == again
    freshness.changed()  # a notification
    notified = freshness.version()
    assert notified not in (None, again)
    token.announce()  # a write of this instance
    assert freshness.version() not in (None, notified)
    freshness.lost()  # the connection dropped: no version at once
    assert freshness.version() is None
    freshness.confirmed(clock.now)
    assert freshness.version() is not None and freshness.age() == 0.0


def test_the_token_is_shared_with_processes_forked_after_it_was_made() -> None:
    token = SharedToken()
    before = token.read()
    pid = os.fork()
    if pid == 0:  # the child: a worker writing
        try:
            token.announce()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert len(before) == 8 and token.read() != before


# --- in-process on the real PostgreSQL -------------------------------------------------------


#: Listeners started by ``_started``: stopped before their test's database is dropped.
_STARTED: list[Any] = []


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_postgres_database("stevedores_changes") as url:
        try:
            yield url
        finally:  # before the drop (pytest tears this down before the app fixture that made them)
            while _STARTED:
                _STARTED.pop().stop(timeout=5)


def _plain(url: str) -> str:
    """A libpq URL (psycopg) for SQLAlchemy's ``postgresql+psycopg://``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _app(make_stevedores_app: Callable, url: str, **env: str) -> Any:
    """An operations app with the demo sample, a summary cache (in process memory) and a clerk."""
    from stevedores_operations.demo import load_demo

    app = make_stevedores_app(plugins=["operations", "redis_resilience"],
                              env={"DATABASE_URL": url, "OPERATIONS_SUMMARY_CACHE_SECONDS": "60", **env})
    load_demo(app.extensions["stevedores"].engine)
    return app


def _started(app: Any, timeout: float = 10.0) -> Any:
    """Start the listener as ``stevedores_worker_started`` does (``serve --dev``) and wait for a version."""
    app.extensions["stevedores"].worker_started(app, None)
    listener = state(app).changes
    _STARTED.append(listener)
    _wait(lambda: listener.version() is not None, timeout, "the listener never gave a version")
    return listener


def _wait(predicate: Callable[[], bool], timeout: float, failure: str) -> float:
    """Poll ``predicate`` until true; the seconds it took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, failure
        time.sleep(0.002)
    return time.monotonic() - started


class Checkouts:
    """Counts the engine's pool checkouts: every query a request runs (``data_fingerprint`` included) takes one."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "checkout", self._checked_out)

    def _checked_out(self, *_args: Any) -> None:
        self.count += 1

    def during(self, work: Callable[[], Any]) -> int:
        before = self.count
        work()
        return self.count - before


def _active_call(app: Any) -> int:
    calls = app.test_client().get("/api/vessel-calls?status=operations_active").json["vessel_calls"]
    return calls[0]["id"]


def _units(client: Any, call_id: int) -> int:
    body = json.loads(client.get("/api/summary").data)
    return next(c["tallied_total"] for c in body["calls"] if c["id"] == call_id)


def _vessel_page_shows(client: Any, call_id: int) -> bool:
    """The vessel page shows the call's discharged autos as the database has them now (read by the API)."""
    call = client.get(f"/api/vessel-calls/{call_id}").json
    done, planned = call["tallied"]["discharge"]["auto"], call["planned"]["discharge"]["auto"]
    return f"{done} / {planned}".encode() in client.get(f"/vessels/{call_id}").data


def _pages(client: Any, call_id: int, times: int = 10) -> None:
    for _ in range(times):
        for path in ("/", "/api/summary", f"/vessels/{call_id}"):
            assert client.get(path).status_code == 200


def _insert_tally(url: str, call_id: int, units: int, key: str) -> float:
    """A write from outside the app (another instance, psql, a script); the monotonic time its commit was
    acknowledged (autocommit: when the INSERT returned)."""
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("INSERT INTO operations_tallies (vessel_call_id, direction, category, units, shift, zone, clerk, "
                     "tallied_at, idempotency_key) VALUES (%s, 'discharged', 'auto', %s, 'x', 'Z', 'psql', %s, %s)",
                     (call_id, units, datetime.now(timezone.utc), key))
        return time.monotonic()


def _kill_listeners(url: str) -> int:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        return conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND application_name = %s",
                            (APPLICATION_NAME,)).fetchone()[0]


@pytest.mark.timeout(60)
def test_unchanged_data_costs_no_query_and_a_write_of_this_instance_shows_on_the_next_request(
        make_stevedores_app: Callable, pg_url: str, ops: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(make_stevedores_app, pg_url)
    token = ops.add_user(app, "clara", "clerk")
    client, call_id = app.test_client(), _active_call(app)
    listener = _started(app)
    checkouts = Checkouts(app.extensions["stevedores"].engine)
    _pages(client, call_id, 2)  # every copy made under the current version
    assert checkouts.during(lambda: _pages(client, call_id, 30)) == 0  # 90 requests, not one query
    units = _units(client, call_id)

    seen = listener.notifications
    # The write's own NOTIFY reaches this process's listener within milliseconds, often before the
    # next request: ignored here, so that only the shared token can make that request fresh.
    monkeypatch.setattr(listener.freshness, "changed", lambda: None)
    posted = client.post("/api/tallies", headers=ops.auth(token), json={
        "vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": 4, "zone": "Q1"})
    assert posted.status_code == 201, posted.json
    # The very next request, before any notification could matter: the shared token moved at the commit.
    assert checkouts.during(lambda: _units(client, call_id)) >= 1
    assert _units(client, call_id) == units + 4
    assert _vessel_page_shows(client, call_id)
    monkeypatch.undo()
    _wait(lambda: listener.notifications > seen, 5, "the write's own notification never came")
    _pages(client, call_id, 1)
    assert checkouts.during(lambda: _pages(client, call_id, 10)) == 0  # steady again


@pytest.mark.timeout(90)
def test_a_write_from_outside_the_app_shows_within_the_bound(make_stevedores_app: Callable, pg_url: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    """Measures the delay from an outside commit to the first request that shows it (PostgreSQL's
    notification reaching the listener thread); the figure quoted in the docs."""
    app = _app(make_stevedores_app, pg_url)
    client, call_id = app.test_client(), _active_call(app)
    listener = _started(app)
    units = _units(client, call_id)
    heard, shown = [], []
    for i in range(20):
        _pages(client, call_id, 1)
        notifications = listener.notifications
        written, units = _insert_tally(pg_url, call_id, 1, f"outside-{i}"), units + 1
        _wait(lambda: listener.notifications > notifications, VALID_SECONDS,  # noqa: B023 - awaited here
              f"write {i} never notified")
        heard.append(time.monotonic() - written)
        _wait(lambda: _units(client, call_id) == units, VALID_SECONDS,  # noqa: B023 - awaited here
              f"write {i} not shown within {VALID_SECONDS} s")
        shown.append(time.monotonic() - written)
        assert _vessel_page_shows(client, call_id)
        assert _units(client, call_id) == units  # and every later request serves it
    with capsys.disabled():
        print(f"\noutside write, {len(shown)} times: notification in the listener after median "
              f"{statistics.median(heard) * 1000:.1f} ms (max {max(heard) * 1000:.1f}); shown by a request after "
              f"median {statistics.median(shown) * 1000:.1f} ms (max {max(shown) * 1000:.1f})")


@pytest.mark.timeout(90)
def test_a_killed_listener_connection_falls_back_to_the_query_then_the_signal_returns(
        make_stevedores_app: Callable, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = _app(make_stevedores_app, pg_url)
    client, call_id = app.test_client(), _active_call(app)
    listener = _started(app)
    checkouts = Checkouts(app.extensions["stevedores"].engine)
    _pages(client, call_id, 2)
    units = _units(client, call_id)
    first_pid = listener.backend_pid

    assert _kill_listeners(pg_url) == 1
    lost = _wait(lambda: listener.version() is None, VALID_SECONDS, "the dropped connection was not noticed")
    _insert_tally(pg_url, call_id, 2, "while-down")  # no listener can hear this one
    assert _units(client, call_id) == units + 2  # the query path: fresh at once
    assert _vessel_page_shows(client, call_id)
    assert checkouts.during(lambda: _pages(client, call_id, 3)) >= 9  # one query per page meanwhile

    _wait(lambda: listener.version() is not None, 10, "the listener never came back")
    assert listener.reconnects >= 1 and listener.backend_pid not in (None, first_pid)
    _pages(client, call_id, 1)
    assert checkouts.during(lambda: _pages(client, call_id, 10)) == 0  # the signal is used again
    _insert_tally(pg_url, call_id, 3, "after")
    _wait(lambda: _units(client, call_id) == units + 5, VALID_SECONDS, "a write after the reconnection not shown")
    assert "change listener lost the database" in caplog.text
    assert lost < 1.0, lost  # a reset connection is noticed at once (the frozen case is bounded below)


@pytest.mark.timeout(90)
def test_a_frozen_listener_connection_expires_the_signal_within_the_bound(make_stevedores_app: Callable,
                                                                          pg_url: str) -> None:
    parsed = make_url(pg_url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
    app = None
    try:
        relayed = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = _app(make_stevedores_app, relayed)
        listener = _started(app)
        before = listener.version()
        proxy.freeze()  # nothing answers, nothing is reset
        try:
            expired = _wait(lambda: listener.version() is None, VALID_SECONDS + 1, "the signal outlived the freeze")
            time.sleep(1.5)
            assert listener.version() is None and listener.state == "reconnecting"  # its heartbeat timed out
        finally:
            proxy.thaw()
        _wait(lambda: listener.version() is not None, 20, "the listener never came back after the thaw")
        assert listener.version() != before  # whatever was cached before the freeze is void
    finally:
        if app is not None:
            app.extensions["stevedores"].shutdown(app)
        proxy.close()
    assert expired <= VALID_SECONDS + 0.2, expired  # at most VALID_SECONDS after the last answered heartbeat


@pytest.mark.timeout(60)
def test_notifications_that_never_come_back_leave_every_page_on_the_query(
        make_stevedores_app: Callable, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """What a PgBouncer in transaction mode does (LISTEN on one server connection, the rest elsewhere),
    played by sending the start-up check's notification to another channel."""
    app = _app(make_stevedores_app, pg_url)
    client, call_id = app.test_client(), _active_call(app)
    listener = state(app).changes
    channel, listener.probe_channel = listener.probe_channel, "somewhere_else"
    caplog.set_level(logging.WARNING, "stevedores.operations")
    app.extensions["stevedores"].worker_started(app, None)
    _STARTED.append(listener)
    _wait(lambda: listener.state == "unsupported", 10, f"state {listener.state}")
    assert listener.version() is None and listener.health()["status"] == "warning"
    checkouts = Checkouts(app.extensions["stevedores"].engine)
    assert checkouts.during(lambda: _pages(client, call_id, 2)) >= 6
    assert caplog.text.count("notifications do not come back") == 1
    # The check is tried again (one missed on a starved machine is no pooler): once it comes back, the signal does.
    listener.probe_channel = channel
    _wait(lambda: listener.version() is not None, 20, f"the signal never came back: state {listener.state}")
    assert caplog.text.count("notifications do not come back") == 1


@pytest.mark.timeout(60)
def test_without_the_triggers_the_signal_waits_for_migration_0005(make_stevedores_app: Callable,
                                                                  pg_url: str) -> None:
    from alembic import command
    from stevedores_operations.migrate import alembic_config, upgrade

    app = _app(make_stevedores_app, pg_url)
    engine = app.extensions["stevedores"].engine
    listener = _started(app)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004_session_epoch")  # the triggers and function dropped
    _wait(lambda: listener.state == "no triggers", 5, f"state {listener.state}")
    assert listener.version() is None
    with psycopg.connect(_plain(pg_url), autocommit=True) as conn:
        functions = conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'operations_notify_change'")
        assert functions.fetchone()[0] == 0
    upgrade(engine)
    _wait(lambda: listener.version() is not None, 5, "the signal never came back with the triggers")
    assert listener.state == "listening"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["sqlite", "postgresql with the setting off"])
def test_sqlite_and_the_setting_off_keep_one_query_per_page(make_stevedores_app: Callable, where: str,
                                                            tmp_path: Any, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'ops.sqlite3'}" if where == "sqlite" else request.getfixturevalue("pg_url")
    app = _app(make_stevedores_app, url, OPERATIONS_CHANGE_NOTIFICATIONS="auto" if where == "sqlite" else "off")
    client, call_id = app.test_client(), _active_call(app)
    app.extensions["stevedores"].worker_started(app, None)
    assert state(app).changes is None
    _pages(client, call_id, 1)
    checkouts = Checkouts(app.extensions["stevedores"].engine)
    assert checkouts.during(lambda: _pages(client, call_id, 5)) == 15  # one per page, as before
    health = app.extensions["stevedores"].health_checks
    check = next(c for _p, c in health if c.name == "operations_changes")
    assert check.func()["change_listener"] == "off"


def test_every_write_path_announces_after_its_commit(make_stevedores_app: Callable, tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch, ops: Any) -> None:
    """The API's and the pages' writes go through store.py, the demo sample through demo.py: each moves the
    token, and only once its transaction is over (the token seen then is never older than the data)."""
    from stevedores_operations import store
    from stevedores_operations.demo import load_demo_once

    database = tmp_path / "w.sqlite3"
    app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": f"sqlite:///{database}"})
    engine = app.extensions["stevedores"].engine
    in_transaction: list[bool] = []
    committed: list[tuple[int, ...]] = [(0, 0, 0)]

    def announce() -> None:
        in_transaction.append(engine.pool.checkedout() > 0)
        # What another connection sees at that moment: the write must already be committed.
        with sqlite3.connect(database) as other:
            committed.append(other.execute(
                "SELECT (SELECT count(*) FROM operations_vessel_calls), "
                "(SELECT coalesce(sum(version), 0) FROM operations_vessel_calls), "
                "(SELECT count(*) FROM operations_tallies)").fetchone())

    monkeypatch.setattr(changes.WRITES, "announce", announce)
    load_demo_once(engine)
    token = ops.add_user(app, "manu", "manager")
    client = app.test_client()
    call = client.post("/api/vessel-calls", json=ops.vessel_payload(), headers=ops.auth(token)).json
    client.patch(f"/api/vessel-calls/{call['id']}", json={"status": "arrived"}, headers=ops.auth(token))
    active = _active_call(app)
    client.post("/api/tallies", headers=ops.auth(token), json={
        "vessel_call_id": active, "direction": "discharged", "category": "auto", "units": 1, "zone": "Q"})
    assert in_transaction == [False] * 4  # demo, create, update, tally: each after its connection went back
    assert all(after != before for before, after in zip(committed, committed[1:], strict=False)), committed
    assert store.create_vessel_call.__wrapped__ and store.update_vessel_call.__wrapped__  # type: ignore[attr-defined]
    assert store.post_tally.__wrapped__  # type: ignore[attr-defined]
