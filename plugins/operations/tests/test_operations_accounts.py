"""Accounts against hostile clients (issue 14): sessions end server-side, the password rule, failed-login
limits per account as well as per address (POST only), HEAD wherever GET, one 429 body."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stevedores import get_service

pytestmark = pytest.mark.timeout(120)


def copy_cookie(source: Any, target: Any) -> None:
    """What a thief does with a copied cookie: replay it from another client."""
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


def logged_in_as(client: Any) -> bytes | None:
    match = re.search(rb"Log out ([a-z0-9._-]+)", client.get("/").data)
    return match.group(1) if match else None


# --- sessions end on the server -------------------------------------------------------------------


def test_a_copied_cookie_stops_working_after_logout(ops_app: Any, tokens: dict, ops: Any) -> None:
    browser, thief = ops_app.test_client(), ops_app.test_client()
    assert ops.login(browser, "clara", ops.PASSWORD).status_code == 303
    copy_cookie(browser, thief)
    assert logged_in_as(thief) == b"clara"  # the copy works while the session lives
    assert browser.post("/logout", data={"csrf_token": ops.csrf_of(browser.get("/").data)}).status_code == 303
    assert logged_in_as(thief) is None
    call_id = ops.make_active_call(ops_app.test_client(), tokens["manager"])
    stolen_csrf = ops.csrf_of(thief.get("/login").data)  # the copied cookie still holds the old CSRF token
    posted = thief.post(f"/vessels/{call_id}/tallies", data={"csrf_token": stolen_csrf, "direction": "discharged",
                                                             "category": "auto", "units": "1", "zone": "A"})
    assert posted.status_code == 302 and "/login" in posted.headers["Location"]  # not a tally
    assert ops.login(browser, "clara", ops.PASSWORD).status_code == 303 and logged_in_as(browser) == b"clara"
    assert logged_in_as(thief) is None  # a new login is a new epoch, not the old cookie's


def test_deactivation_and_a_new_password_end_sessions(ops_app: Any, tokens: dict, ops: Any) -> None:
    from stevedores_operations.accounts import change_password, deactivate_user

    engine = ops_app.extensions["stevedores"].engine
    clara, manu = ops_app.test_client(), ops_app.test_client()
    ops.login(clara, "clara", ops.PASSWORD)
    ops.login(manu, "manu", ops.PASSWORD)
    change_password(engine, "clara", "a brand new quayside phrase")
    assert logged_in_as(clara) is None and logged_in_as(manu) == b"manu"  # only clara's sessions end
    assert ops.login(clara, "clara", ops.PASSWORD).status_code == 401
    assert ops.login(clara, "clara", "a brand new quayside phrase").status_code == 303
    deactivate_user(engine, "manu")
    assert logged_in_as(manu) is None


def test_a_session_cookie_without_an_epoch_is_not_a_login(ops_app: Any, tokens: dict) -> None:
    client = ops_app.test_client()
    with client.session_transaction() as session:  # a cookie signed before sessions carried an epoch
        session["uid"] = 1
    assert logged_in_as(client) is None
    with client.session_transaction() as session:
        session["uid"], session["epoch"] = 2**40, 0
    assert logged_in_as(client) is None


# --- the password rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("password, rule", [
    ("aaaaaaaaaa", "at least 15 characters"),  # the audit's case: 10 characters passed
    ("aaaaaaaaaaaaaaaaaaaa", "too easy to guess"),
    ("123456789012345", "too easy to guess"),
    ("qwertyuiopasdfgh", "too easy to guess"),
    ("passwordpassword", "too easy to guess"),
    ("xqvlorbantu12345", "too easy to guess"),  # the username plus a sequence
    ("x" * 1025, "at most 1024 characters"),
])
def test_weak_passwords_are_refused_naming_the_rule(ops_app: Any, password: str, rule: str) -> None:
    from stevedores_operations.accounts import AccountError, create_user

    with pytest.raises(AccountError, match=f"^password: .*{rule}"):
        create_user(ops_app.extensions["stevedores"].engine, "xqvlorbantu", password, "clerk")


def test_the_username_is_part_of_the_check() -> None:
    from stevedores_operations.passwords import password_problem

    assert password_problem("xqvlorbantu12345", "someone.else") is None
    assert "too easy to guess" in (password_problem("xqvlorbantu12345", "xqvlorbantu") or "")


def test_the_rule_applies_to_password_changes(ops_app: Any, tokens: dict) -> None:
    from stevedores_operations.accounts import AccountError, change_password

    engine = ops_app.extensions["stevedores"].engine
    with pytest.raises(AccountError, match="^password: is too easy to guess"):
        change_password(engine, "clara", "clara1234567890")
    with pytest.raises(AccountError, match="^username: no account named 'nobody'"):
        change_password(engine, "nobody", "a brand new quayside phrase")


# --- failed-login limits: per address and per account, POST only ---------------------------------


@pytest.fixture
def limited(make_stevedores_app: Any, tmp_path: Any, ops: Any) -> Any:
    app = make_stevedores_app(plugins=["operations", "security"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path / 'limits.sqlite3'}", "OPERATIONS_LOGIN_RATE_LIMIT": "3 per minute",
        "OPERATIONS_ACCOUNT_LOGIN_RATE_LIMIT": "2 per hour", "WEB_WORKERS": "1"})
    assert get_service(app, "rate_limits") is not None
    ops.add_user(app, "manu", "manager")
    ops.add_user(app, "clara", "clerk")
    return app


def test_failed_logins_are_limited_per_account_from_any_address(limited: Any, ops: Any) -> None:
    def attempt(address: str, username: str, password: str) -> int:
        client = limited.test_client()
        environ = {"REMOTE_ADDR": address}
        token = ops.csrf_of(client.get("/login", environ_base=environ).data)
        return client.post("/login", environ_base=environ, data={"username": username, "password": password,
                                                                 "csrf_token": token}).status_code

    assert attempt("192.0.2.1", "manu", "wrong guess one") == 401
    assert attempt("192.0.2.2", "MANU ", "wrong guess two") == 401  # another address, the same account
    assert attempt("192.0.2.3", "manu", ops.PASSWORD) == 429  # the account's budget is spent, everywhere
    assert attempt("192.0.2.3", "clara", ops.PASSWORD) == 303  # other accounts are not locked


def test_a_wrong_password_never_makes_get_login_429(limited: Any, ops: Any) -> None:
    client = limited.test_client()
    token = ops.csrf_of(client.get("/login").data)
    statuses = [client.post("/login", data={"username": f"user{i}", "password": "wrong", "csrf_token": token}
                            ).status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]  # per address: 3 per minute
    for _ in range(3):
        assert client.get("/login").status_code == 200
        assert client.head("/login").status_code == 200
    refused = client.post("/login", data={"username": "manu", "password": ops.PASSWORD, "csrf_token": token})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


# --- HEAD wherever GET; one 429 body ------------------------------------------------------------------


def test_head_answers_wherever_get_does(ops_app: Any, tokens: dict, ops: Any) -> None:
    call_id = ops.make_active_call(ops_app.test_client(), tokens["manager"])
    client = ops_app.test_client()
    checked = []
    for rule in ops_app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint.endswith("static"):
            continue
        path = rule.rule.replace("<record_id:call_id>", str(call_id))
        assert "<" not in path, f"add an example value for {rule.rule}"
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.data == b"" and head.headers.get("Content-Type") == got.headers.get("Content-Type"), path
        checked.append(path)
    assert "/login" in checked and f"/vessels/{call_id}" in checked


def test_the_api_429_is_the_rate_limits_service_body(make_stevedores_app: Any, tmp_path: Any, ops: Any) -> None:
    app = make_stevedores_app(plugins=["operations", "security"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path / 'api429.sqlite3'}", "OPERATIONS_TALLY_RATE_LIMIT": "2 per minute",
        "WEB_WORKERS": "1"})
    token = ops.add_user(app, "clara", "clerk")
    client = app.test_client()
    statuses = [client.post("/api/tallies", json={}, headers=ops.auth(token)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [422, 422, 429]
    body = statuses[-1].json
    assert body["error"] == "too many requests" and body["retry_after"] >= 1 and "limit" in body, body
    assert statuses[-1].headers["Retry-After"] == str(body["retry_after"])
