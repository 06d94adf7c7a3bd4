"""The pages: login, CSRF refusal, tallies through the form, roles, failed-login limit, summary caching."""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from flask import Response

from stevedores import get_service, hookimpl


class FakeLimits:
    """A stand-in for the security plugin's rate_limits service: counts what deduct_when keeps."""

    def __init__(self) -> None:
        self.specs: dict[str, str] = {}

    def limit(self, spec: str, scope: str, deduct_when: Callable[[Response], bool] | None = None,
              key: Callable[[], str] | None = None) -> Callable:
        self.specs[scope] = spec
        allowed, counted = int(spec.split()[0].split("/")[0]), [0]

        def decorate(view: Callable) -> Callable:
            def limited(*args: Any, **kwargs: Any) -> Any:
                if counted[0] >= allowed:
                    return "Too Many Requests", 429
                response = view(*args, **kwargs)
                full = pytest.importorskip("flask").make_response(response)
                if deduct_when is None or deduct_when(full):
                    counted[0] += 1
                return full
            limited.__name__ = view.__name__
            return limited
        return decorate

    def hit(self, spec: str, scope: str, key: str | None = None) -> bool:  # the rest of the contract
        return True

    def allows(self, spec: str, scope: str, key: str | None = None) -> bool:
        return True


class DictCache:
    """A stand-in for the cache service."""

    mode = "memory"

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str, ttl: int | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        self.data[key] = str(int(self.data.get(key, 0)) + amount)
        return int(self.data[key])


class ServicesPlugin:
    def __init__(self) -> None:
        self.limits, self.cache = FakeLimits(), DictCache()

    @hookimpl
    def stevedores_services(self) -> dict:
        return {"rate_limits": self.limits, "cache": self.cache}


@pytest.fixture
def site(make_stevedores_app: Any, tmp_path: Any, ops: Any) -> Any:
    services = ServicesPlugin()
    app = make_stevedores_app(plugins=["operations"], extra_plugins=[("fake_services", services)],
                              env={"DATABASE_URL": f"sqlite:///{tmp_path / 'pages.sqlite3'}",
                                   "OPERATIONS_LOGIN_RATE_LIMIT": "3 per minute"})
    tokens = {"clerk": ops.add_user(app, "clara", "clerk"), "manager": ops.add_user(app, "manu", "manager")}
    call_id = ops.make_active_call(app.test_client(), tokens["manager"])
    return app, services, call_id


def test_login_then_post_a_tally_through_the_form(site: Any, ops: Any) -> None:
    app, _services, call_id = site
    client = app.test_client()
    assert b"Log in" in client.get("/").data and b"Log in" in app.test_client().get("/").data  # anonymous memo
    logged_in = ops.login(client, "clara", ops.PASSWORD)
    assert logged_in.status_code == 303 and logged_in.headers["Location"] == "/"
    assert b"Log out clara (clerk)" in client.get("/").data  # never the page rendered for anonymous visitors
    page = client.get(f"/vessels/{call_id}")
    assert b"Record tally" in page.data and b"Mark operations complete" not in page.data  # a clerk
    key = re.search(rb'name="idempotency_key" value="([0-9a-f]+)"', page.data).group(1).decode()
    form = {"csrf_token": ops.csrf_of(page.data), "idempotency_key": key, "direction": "discharged",
            "category": "heavy", "units": "4", "zone": "H1"}
    posted = client.post(f"/vessels/{call_id}/tallies", data=form)
    assert posted.status_code == 303
    after = client.get(f"/vessels/{call_id}").data
    assert b"Tallied 4 heavy discharged in zone H1" in after and b"4 / 10" in after and b"<polyline" in after
    again = client.post(f"/vessels/{call_id}/tallies", data=form)  # the phone resends the same form
    assert again.status_code == 303
    assert b"counted once" in client.get(f"/vessels/{call_id}").data
    assert client.get(f"/api/vessel-calls/{call_id}").json["tallied"]["discharge"]["heavy"] == 4
    invalid = client.post(f"/vessels/{call_id}/tallies", data={**form, "idempotency_key": "x2", "units": "-2"})
    assert invalid.status_code == 422 and b"<strong>units</strong>: must not be negative (got -2)" in invalid.data


def test_forms_without_the_csrf_token_are_refused(site: Any, ops: Any) -> None:
    app, _services, call_id = site
    client = app.test_client()
    ops.login(client, "clara", ops.PASSWORD)
    form = {"direction": "discharged", "category": "auto", "units": "4", "zone": "A1"}
    assert client.post(f"/vessels/{call_id}/tallies", data=form).status_code == 400
    assert client.post(f"/vessels/{call_id}/tallies", data={**form, "csrf_token": "forged"}).status_code == 400
    assert client.post("/logout", data={}).status_code == 400
    assert client.post("/login", data={"username": "clara", "password": ops.PASSWORD}).status_code == 400
    assert client.get(f"/api/vessel-calls/{call_id}").json["tallied"]["discharge"]["auto"] == 0
    other = app.test_client()  # a token from another session does not work either
    stolen = ops.csrf_of(other.get("/login").data)
    assert client.post(f"/vessels/{call_id}/tallies", data={**form, "csrf_token": stolen}).status_code == 400


def test_roles_on_the_pages(site: Any, ops: Any) -> None:
    app, _services, call_id = site
    clerk, manager, anonymous = app.test_client(), app.test_client(), app.test_client()
    ops.login(clerk, "clara", ops.PASSWORD)
    ops.login(manager, "manu", ops.PASSWORD)
    page = clerk.get(f"/vessels/{call_id}").data
    refused = clerk.post(f"/vessels/{call_id}/status", data={"csrf_token": ops.csrf_of(page), "status":
                                                             "operations_complete"})
    assert refused.status_code == 403 and b"a clerk may not change a vessel call" in refused.data
    page = manager.get(f"/vessels/{call_id}").data
    assert b"Mark operations complete" in page
    moved = manager.post(f"/vessels/{call_id}/status", data={"csrf_token": ops.csrf_of(page),
                                                             "status": "operations_complete"})
    assert moved.status_code == 303
    assert manager.get(f"/api/vessel-calls/{call_id}").json["status"] == "operations_complete"
    page = anonymous.get(f"/vessels/{call_id}")
    assert b"Record tally" not in page.data
    assert anonymous.get("/vessels/999").status_code == 404
    assert clerk.post("/logout", data={"csrf_token": ops.csrf_of(clerk.get("/").data)}).status_code == 303
    assert b"Log out" not in clerk.get("/").data


def test_failed_logins_are_rate_limited_not_successful_ones(site: Any, ops: Any) -> None:
    app, services, _call_id = site
    assert services.limits.specs == {"operations-login": "3 per minute", "operations-tallies": "120 per minute",
                                     "operations-login-account": "20 per hour; 100 per day"}
    client = app.test_client()
    for _ in range(3):
        assert ops.login(client, "manu", ops.PASSWORD).status_code == 303  # successes are not counted
    token = ops.csrf_of(client.get("/login").data)

    def attempt(username: str, password: str) -> int:
        return client.post("/login", data={"username": username, "password": password, "csrf_token": token}
                           ).status_code

    assert [attempt("manu", "wrong password") for _ in range(4)] == [401, 401, 401, 429]
    assert attempt("manu", ops.PASSWORD) == 429


def test_the_summary_follows_the_data_whoever_wrote_it(site: Any, ops: Any) -> None:
    from stevedores_operations.summary import CACHE_KEY, data_fingerprint
    from stevedores_operations.tables import tallies

    app, services, call_id = site
    client = app.test_client()
    client.get("/")
    engine = app.extensions["stevedores"].engine
    assert f"{CACHE_KEY}:{data_fingerprint(engine)}" in services.cache.data
    with engine.begin() as conn:  # behind the app's back (another worker, a script): seen at once
        conn.execute(tallies.insert().values(vessel_call_id=call_id, direction="discharged", category="auto",
                                             units=60, shift="x", zone="A", clerk="sql", idempotency_key="sql-1",
                                             tallied_at=__import__("datetime").datetime.now()))
    assert b'id="shift-units">60<' in client.get("/").data
    ops.login(client, "clara", ops.PASSWORD)
    page = client.get(f"/vessels/{call_id}").data
    client.post(f"/vessels/{call_id}/tallies", data={"csrf_token": ops.csrf_of(page), "direction": "discharged",
                                                     "category": "auto", "units": "5", "zone": "A1"})
    assert b'id="shift-units">65<' in client.get("/").data


def test_dashboard_survives_redis_going_down(make_stevedores_app: Any, stevedores_redis_server: Any,
                                             tmp_path: Any) -> None:
    server = stevedores_redis_server()
    app = make_stevedores_app(plugins=["operations", "redis_resilience"], env={"REDIS_URL": server.url})
    cache = get_service(app, "cache")
    if cache is None:
        pytest.skip("redis_resilience does not offer the cache service in this tree yet")
    client = app.test_client()
    assert client.get("/").status_code == 200
    from stevedores_operations.summary import CACHE_KEY, data_fingerprint

    assert cache.mode == "redis"
    assert cache.get(f"{CACHE_KEY}:{data_fingerprint(app.extensions['stevedores'].engine)}")  # went through Redis
    server.kill()
    for _ in range(3):
        response = client.get("/")
        assert response.status_code == 200 and b"Operations" in response.data


def test_failed_logins_with_the_real_rate_limits_service(make_stevedores_app: Any, tmp_path: Any, ops: Any) -> None:
    app = make_stevedores_app(plugins=["operations", "security"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.sqlite3'}", "OPERATIONS_LOGIN_RATE_LIMIT": "2 per minute"})
    if get_service(app, "rate_limits") is None:
        pytest.skip("the security plugin does not offer rate_limits in this tree")
    ops.add_user(app, "manu", "manager")
    client = app.test_client()
    logins = [ops.login(client, "manu", ops.PASSWORD).status_code for _ in range(3)]
    assert logins == [303] * 3  # successes: not counted
    token = ops.csrf_of(client.get("/login").data)

    def attempt(password: str) -> int:
        return client.post("/login", data={"username": "manu", "password": password, "csrf_token": token}
                           ).status_code

    statuses = [attempt("wrong password") for _ in range(4)]
    assert statuses[0] == 401 and statuses[-1] == 429 and set(statuses) == {401, 429}, statuses


def test_workers_with_their_own_memory_caches_agree_after_a_write(site: Any, ops: Any) -> None:
    """Without Redis every worker caches in its own memory: the fingerprint keeps them right."""
    from stevedores_operations import summary as summary_module
    from stevedores_operations.summary import SummaryCache

    app, _services, call_id = site
    engine = app.extensions["stevedores"].engine
    shift_starts = app.extensions["operations"].shift_starts
    worker_a = SummaryCache(lambda: engine, DictCache(), 10, shift_starts, ())
    worker_b = SummaryCache(lambda: engine, DictCache(), 10, shift_starts, ())
    computed: list[int] = []
    original = summary_module.compute_summary

    def counting(*args: Any, **kwargs: Any) -> Any:
        computed.append(1)
        return original(*args, **kwargs)

    summary_module.compute_summary = counting
    try:
        before = worker_b.get_json()
        assert worker_b.get_json() == before and len(computed) == 1  # unchanged data: the cached copy
        posted = app.test_client().post(
            "/api/tallies", json={"vessel_call_id": call_id, "direction": "discharged", "category": "auto",
                                  "units": 9, "zone": "B2"}, headers=ops.auth(ops.add_user(app, "clive", "clerk")))
        assert posted.status_code == 201, posted.json
        worker_a.get_json()
        after = worker_b.get_json()  # B never heard of the write
        assert after != before and len(computed) == 3
    finally:
        summary_module.compute_summary = original


def test_polled_pages_and_summary_answer_304_until_the_data_changes(site: Any, ops: Any) -> None:
    """Conditional GET: anonymous /, a vessel page and /api/summary carry an ETag; If-None-Match gets 304
    while nothing changed, and the new body (another ETag) once a tally is posted."""
    from stevedores_operations.summary import SummaryCache

    app, _services, call_id = site
    client = app.test_client()
    paths = ("/", f"/vessels/{call_id}", "/api/summary")
    first = {path: client.get(path) for path in paths}
    for path, response in first.items():
        assert response.status_code == 200 and response.headers.get("ETag"), path
        again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304 and again.data == b"", path
        assert again.headers["ETag"] == response.headers["ETag"]
        assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200
    assert first["/api/summary"].json["totals"]["shift_units"] == 0
    assert first["/"].headers["Cache-Control"] == "no-store"  # kept: browsers store nothing; pollers revalidate
    assert isinstance(app.extensions["operations"].summary, SummaryCache)

    writer = app.test_client()
    ops.login(writer, "clara", ops.PASSWORD)
    assert "ETag" not in writer.get("/").headers  # a logged-in page (name, CSRF token) has none
    page = writer.get(f"/vessels/{call_id}")
    assert "ETag" not in page.headers
    writer.post(f"/vessels/{call_id}/tallies", data={"csrf_token": ops.csrf_of(page.data), "direction": "discharged",
                                                      "category": "auto", "units": "7", "zone": "A1"})
    for path, response in first.items():
        changed = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert changed.status_code == 200 and changed.headers["ETag"] != response.headers["ETag"], path
    assert client.get("/api/summary").json["totals"]["shift_units"] == 7


def test_a_page_whose_body_carries_the_nonce_gets_no_etag(make_stevedores_app: Any, tmp_path: Any) -> None:
    """A 304 would keep a body whose nonce no longer matches the new CSP: such a body is never tagged.
    The dashboard carries no nonce, so it is tagged, and its 304 comes with a fresh CSP nonce."""
    from flask import request
    from stevedores_operations.conditional import carries_nonce

    app = make_stevedores_app(plugins=["operations", "security", "redis_resilience"],  # a cached summary
                              env={"DATABASE_URL": f"sqlite:///{tmp_path / 'nonce.sqlite3'}"})
    with app.test_request_context("/"):
        request.csp_nonce = "n0nce-value"
        assert carries_nonce('<script nonce="n0nce-value"></script>')
        assert not carries_nonce("<p>no inline code</p>")
    client = app.test_client()
    page = client.get("/")
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert nonce.encode() not in page.data and page.headers.get("ETag")
    revalidated = client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert revalidated.status_code == 304 and nonce not in revalidated.headers["Content-Security-Policy"]
