"""The plugin manager and runtime: isolation of failures, strict mode, lists, ordering."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
from flask import Flask

from stevedores import HealthCheck, Int, MenuLink, Middleware, Setting, WorkerProposal, hookimpl, infrastructure
from stevedores.plugins import PluginError, Plugins
from stevedores.runtime import Runtime, get_service

LENIENT = {"STEVEDORES_STRICT_PLUGINS": "0"}  # these tests are about failure isolation


class Raises:
    """A plugin whose startup hook raises."""

    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        @app.get("/half-registered")
        def half() -> str:
            return "x"

        raise RuntimeError("boom in startup")

    @hookimpl
    def stevedores_health_checks(self) -> list[HealthCheck]:
        return [HealthCheck("never", lambda: {"status": "healthy"})]


class Offers:
    """Offers a service and a setting."""

    @hookimpl
    def stevedores_settings(self) -> list[Setting]:
        return [Setting("OFFER_SIZE", Int(min=1), 3, "size")]

    @hookimpl
    def stevedores_services(self, config: Any) -> dict[str, Any]:
        return {"counter": {"size": config["OFFER_SIZE"]}}


class Uses:
    """Uses the service when there is one."""

    seen: Any = "unset"

    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        Uses.seen = get_service(app, "counter")


def test_a_plugin_that_raises_in_startup_is_failed_and_the_app_serves(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=[], extra_plugins=[("bad", Raises())], env=LENIENT)
    info = {p.name: p for p in app.extensions["stevedores"].plugins.listing()}["bad"]
    assert info.status == "failed" and "RuntimeError: boom in startup" in info.error
    assert app.extensions["stevedores"].health_checks == []  # what it contributed is dropped
    assert app.test_client().get("/").status_code == 200


def test_strict_mode_makes_a_failure_fatal_naming_the_plugin(make_stevedores_app: Callable) -> None:
    with pytest.raises(PluginError, match="plugin 'bad' failed: stevedores_startup raised RuntimeError"):
        make_stevedores_app(plugins=[], extra_plugins=[("bad", Raises())])  # the kit's environment is strict


def test_services_are_offered_between_plugins_without_imports(make_stevedores_app: Callable) -> None:
    make_stevedores_app(plugins=[], extra_plugins=[("offers", Offers()), ("uses", Uses())], env={"OFFER_SIZE": "7"})
    assert Uses.seen == {"size": 7}
    make_stevedores_app(plugins=[], extra_plugins=[("uses", Uses())])
    assert Uses.seen is None  # absent provider: the consumer gets None and carries on


def test_plugin_settings_are_validated_with_the_cores(make_stevedores_app: Callable) -> None:
    from stevedores import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=[], extra_plugins=[("offers", Offers())], env={"OFFER_SIZE": "0", "PORT": "x"})
    assert {p.name for p in caught.value.problems} == {"OFFER_SIZE", "PORT"}


def test_a_setting_declared_twice_fails_the_second_plugin() -> None:
    class Clash:
        @hookimpl
        def stevedores_settings(self) -> list[Setting]:
            return [Setting("PORT", Int(), 1, "mine")]

    runtime = Runtime.load({}, load_entry_points=False, extra_plugins=[("clash", Clash())])
    info = runtime.plugins.infos["clash"]
    assert info.status == "failed" and "PORT is already declared by core" in info.error
    assert runtime.config["PORT"] == 8000


def test_wrong_return_types_fail_the_plugin_not_the_app(make_stevedores_app: Callable) -> None:
    class Wrong:
        @hookimpl
        def stevedores_health_checks(self) -> list[Any]:
            return ["not a check"]

    app = make_stevedores_app(plugins=[], extra_plugins=[("wrong", Wrong())], env=LENIENT)
    assert "returned a list holding str, not HealthCheck" in app.extensions["stevedores"].plugins.infos["wrong"].error


def test_duplicate_health_check_names_fail_the_later_plugin(make_stevedores_app: Callable) -> None:
    def plugin() -> object:
        class P:
            @hookimpl
            def stevedores_health_checks(self) -> list[HealthCheck]:
                return [HealthCheck("db", lambda: {"status": "healthy"}, critical=True)]
        return P()

    app = make_stevedores_app(plugins=[], extra_plugins=[("a", plugin()), ("b", plugin())], env=LENIENT)
    runtime = app.extensions["stevedores"]
    # pluggy calls the last registered first: "b" registers the check, "a" repeats it and fails
    assert [(p, c.name) for p, c in runtime.health_checks] == [("b", "db")]
    assert [(i.name, i.status) for i in runtime.plugins.listing()] == [("a", "failed"), ("b", "active")]
    assert "'db' is already registered by b" in runtime.plugins.infos["a"].error


def test_allow_and_deny_lists() -> None:
    class Nothing:
        @hookimpl
        def stevedores_startup(self) -> None: ...

    plugins = Plugins.from_environ({"STEVEDORES_DISABLE_PLUGINS": "b"}, load_entry_points=False,
                                   extra=[("a", Nothing()), ("b", Nothing())])
    assert [(i.name, i.status) for i in plugins.listing()] == [("a", "active"), ("b", "disabled")]
    plugins = Plugins.from_environ({"STEVEDORES_PLUGINS": "b"}, load_entry_points=False,
                                   extra=[("a", Nothing()), ("b", Nothing())])
    assert [(i.name, i.status) for i in plugins.listing()] == [("a", "disabled"), ("b", "active")]
    assert plugins.infos["b"].hooks == ["stevedores_startup"]


def test_a_misspelt_hook_fails_registration() -> None:
    class Typo:
        @hookimpl
        def stevedores_strtup(self) -> None: ...

    plugins = Plugins.from_environ({}, load_entry_points=False, extra=[("typo", Typo())])
    assert plugins.infos["typo"].status == "failed"
    assert "stevedores_strtup" in plugins.infos["typo"].error


def test_middleware_is_composed_once_in_documented_order(make_stevedores_app: Callable) -> None:
    calls: list[str] = []

    def mw(label: str, order: int) -> Middleware:
        def wsgi(app: Any) -> Any:
            def wrapped(environ: dict, start_response: Any) -> Any:
                calls.append(f"wsgi:{label}")
                return app(environ, start_response)
            return wrapped

        def before() -> None:
            calls.append(f"before:{label}")

        def after(response: Any) -> Any:
            calls.append(f"after:{label}")
            return response

        return Middleware(label, order=order, wsgi=wsgi, before_request=before, after_request=after)

    class Outer:
        @hookimpl
        def stevedores_middleware(self) -> list[Middleware]:
            return [mw("outer", 10)]

    class Inner:
        @hookimpl
        def stevedores_middleware(self) -> list[Middleware]:
            return [mw("inner", 900)]

    app = make_stevedores_app(plugins=[], extra_plugins=[("zz-inner", Inner()), ("aa-outer", Outer())])
    app.test_client().get("/")
    assert calls == ["wsgi:outer", "wsgi:inner", "before:outer", "before:inner", "after:inner", "after:outer"]


def test_middleware_may_leave_infrastructure_routes_alone(make_stevedores_app: Callable) -> None:
    calls: list[str] = []

    def handlers(label: str) -> dict[str, Any]:
        def before() -> None:
            calls.append(f"before:{label}")

        def after(response: Any) -> Any:
            calls.append(f"after:{label}")
            return response

        return {"before_request": before, "after_request": after}

    class Probe:
        @hookimpl
        def stevedores_startup(self, app: Flask) -> None:
            app.add_url_rule("/probe", "probe", infrastructure(lambda: "ok"))
            app.add_url_rule("/page", "page", lambda: "page")

        @hookimpl
        def stevedores_middleware(self) -> list[Middleware]:
            return [Middleware("everywhere", order=10, **handlers("everywhere")),
                    Middleware("pages-only", order=20, infrastructure=False, **handlers("pages")),
                    Middleware("also-everywhere", order=30, **handlers("also"))]

    client = make_stevedores_app(plugins=[], extra_plugins=[("probe", Probe())]).test_client()
    assert client.get("/probe").text == "ok"
    assert calls == ["before:everywhere", "before:also", "after:also", "after:everywhere"]
    calls.clear()
    assert client.get("/page").text == "page"
    assert calls == ["before:everywhere", "before:pages", "before:also", "after:also", "after:pages",
                     "after:everywhere"]


def test_worker_sizing_combines_proposals_and_names_who_decided() -> None:
    class Memory:
        @hookimpl
        def stevedores_worker_limits(self) -> WorkerProposal:
            return WorkerProposal(2, "128MB / 64MB per worker", {"Max Workers by Memory": "2"})

    runtime = Runtime.load({"WEB_WORKERS": "4"}, load_entry_points=False, extra_plugins=[("mem", Memory())])
    decision = runtime.worker_decision()
    assert (decision.final, decision.decided_by) == (2, "mem")
    assert decision.lines()[-1].startswith("Final Workers: 2 (decided by mem")
    runtime = Runtime.load({"WEB_CONCURRENCY": "1"}, load_entry_points=False, extra_plugins=[("mem", Memory())])
    assert (runtime.worker_decision().final, runtime.worker_decision().decided_by) == (1, "WEB_CONCURRENCY")
    assert Runtime.load({}, load_entry_points=False).worker_decision().final == 2


def test_menu_links_appear_on_the_landing_page(make_stevedores_app: Callable) -> None:
    class Links:
        @hookimpl
        def stevedores_menu_links(self) -> list[MenuLink]:
            return [MenuLink("Berth plan", "/berths", "Who is alongside")]

    body = make_stevedores_app(plugins=[], extra_plugins=[("links", Links())]).test_client().get("/").text
    assert 'href="/berths"' in body and "Berth plan" in body and "<script" not in body


def test_a_plugin_may_take_over_the_landing_page(make_stevedores_app: Callable) -> None:
    class Home:
        @hookimpl
        def stevedores_startup(self, app: Flask) -> None:
            app.add_url_rule("/", "home", lambda: "operations home")

    assert make_stevedores_app(plugins=[], extra_plugins=[("home", Home())]).test_client().get("/").text == \
        "operations home"


def test_two_apps_do_not_share_plugins(make_stevedores_app: Callable) -> None:
    a = make_stevedores_app(plugins=[], extra_plugins=[("offers", Offers())])
    b = make_stevedores_app(plugins=[])
    assert "offers" in a.extensions["stevedores"].plugins.infos
    assert "offers" not in b.extensions["stevedores"].plugins.infos


def test_failure_is_logged_once_with_the_reason(make_stevedores_app: Callable, caplog: Any) -> None:
    with caplog.at_level(logging.ERROR, logger="stevedores"):
        make_stevedores_app(plugins=[], extra_plugins=[("bad", Raises())], env=LENIENT)
    lines = [r.getMessage() for r in caplog.records if "Plugin bad" in r.getMessage()]
    assert len(lines) == 1 and "boom in startup" in lines[0]


def test_sessions_survive_the_cached_serializer(make_stevedores_app: Callable) -> None:
    from flask import session

    class Counter:
        @hookimpl
        def stevedores_startup(self, app: Flask) -> None:
            @app.get("/count")
            def count() -> str:
                session["n"] = session.get("n", 0) + 1
                return str(session["n"])

    app = make_stevedores_app(plugins=[], extra_plugins=[("counter", Counter())])
    client = app.test_client()
    assert [client.get("/count").text for _ in range(3)] == ["1", "2", "3"]
    app.secret_key = "another-secret-key-" + "y" * 32  # rotated: old cookies no longer verify
    assert client.get("/count").text == "1"


def test_a_hook_returning_a_non_list_fails_that_plugin_only(make_stevedores_app: Callable) -> None:
    class Sloppy:
        @hookimpl
        def stevedores_worker_limits(self) -> int:
            return 3

        @hookimpl
        def stevedores_health_checks(self) -> int:
            return 42

    app = make_stevedores_app(plugins=[], extra_plugins=[("sloppy", Sloppy())], env=LENIENT)
    runtime = app.extensions["stevedores"]
    info = runtime.plugins.infos["sloppy"]
    assert info.status == "failed" and "stevedores_worker_limits returned int" in info.error
    assert runtime.worker_decision().final == 2 and app.test_client().get("/").status_code == 200


def test_cross_setting_checks_stop_start_up_naming_the_setting() -> None:
    from stevedores import ConfigError
    from stevedores.settings import Problem

    class Window:
        @hookimpl
        def stevedores_settings(self) -> list[Setting]:
            return [Setting("WINDOW_MIN", Int(), 1, "low"), Setting("WINDOW_MAX", Int(), 5, "high")]

        @hookimpl
        def stevedores_check_config(self, config: Any) -> list[Problem]:
            if config["WINDOW_MAX"] > config["WINDOW_MIN"]:
                return []
            return [Problem("WINDOW_MAX", f"must be above WINDOW_MIN ({config['WINDOW_MIN']})")]

    assert Runtime.load({}, load_entry_points=False, extra_plugins=[("window", Window())]).config["WINDOW_MAX"] == 5
    with pytest.raises(ConfigError) as caught:
        Runtime.load({"WINDOW_MIN": "9"}, load_entry_points=False, extra_plugins=[("window", Window())])
    assert [(p.name, p.message) for p in caught.value.problems] == [("WINDOW_MAX", "must be above WINDOW_MIN (9)")]
