"""Hooks run through pluggy's own caller: wrappers, old-style hookwrappers, firstresult and
tracing behave as pluggy documents, and a misbehaving implementation fails only its plugin."""

from __future__ import annotations

import logging
from typing import Any, Callable, Generator

import pluggy
import pytest
from flask import Flask

from stevedores import MenuLink, hookimpl
from stevedores.plugins import PluginError, Plugins

LENIENT = {"STEVEDORES_STRICT_PLUGINS": "0"}


class Links:
    @hookimpl
    def stevedores_menu_links(self) -> list[MenuLink]:
        return [MenuLink("Cranes", "/cranes")]


class Wrapper:
    """A new-style wrapper around startup and an old-style hookwrapper around the menu links."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def stevedores_startup(self, app: Flask) -> Generator[None, Any, Any]:
        self.seen.append("before startup")
        result = yield
        self.seen.append(f"after startup, app {app.name}")
        return result

    @hookimpl(hookwrapper=True)
    def stevedores_menu_links(self) -> Generator[None, pluggy.Result, None]:
        outcome = yield
        links = outcome.get_result()
        self.seen.append(f"old-style saw {len(links)} answer(s)")
        outcome.force_result(links + [[MenuLink("Added by the wrapper", "/added")]])


class BrokenWrapper:
    @hookimpl(wrapper=True)
    def stevedores_startup(self) -> Generator[None, Any, Any]:
        yield
        raise RuntimeError("teardown broke")


class NeverYields:
    @hookimpl(wrapper=True)
    def stevedores_startup(self) -> Any:
        if False:  # a generator function that returns before its yield
            yield
        return None


def test_wrappers_run_around_the_other_implementations(make_stevedores_app: Callable) -> None:
    wrapper = Wrapper()
    app = make_stevedores_app(plugins=[], extra_plugins=[("links", Links()), ("wrapper", wrapper)])
    runtime = app.extensions["stevedores"]
    assert wrapper.seen == ["before startup", "after startup, app stevedores", "old-style saw 1 answer(s)"]
    assert [(plugin, link.href) for plugin, link in runtime.menu_links] == [("links", "/cranes"),
                                                                             ("wrapper", "/added")]
    assert runtime.plugins.active() == ["links", "wrapper"]


@pytest.mark.parametrize("plugin, reason", [(BrokenWrapper(), "raised RuntimeError: teardown broke after its yield"),
                                            (NeverYields(), "wrapper did not yield")])
def test_a_misbehaving_wrapper_fails_only_its_plugin(make_stevedores_app: Callable, plugin: object,
                                                      reason: str) -> None:
    app = make_stevedores_app(plugins=[], extra_plugins=[("links", Links()), ("bad", plugin)], env=LENIENT)
    infos = {i.name: i for i in app.extensions["stevedores"].plugins.listing()}
    assert infos["bad"].status == "failed" and infos["bad"].error == f"stevedores_startup {reason}"
    assert infos["links"].status == "active"
    assert app.test_client().get("/").status_code == 200


class QuaySpec:
    @pluggy.HookspecMarker("stevedores")(firstresult=True)
    def stevedores_quay_for(self, vessel: str) -> str | None:
        """Which quay takes ``vessel``: the first plugin that knows answers."""


class Knows:
    def __init__(self, answer: str | None) -> None:
        self.answer, self.asked = answer, 0

    @hookimpl
    def stevedores_quay_for(self, vessel: str) -> str | None:
        self.asked += 1
        return self.answer


class Raising:
    @hookimpl(tryfirst=True)
    def stevedores_quay_for(self, vessel: str) -> str:
        raise LookupError(vessel)


def test_a_firstresult_hook_stops_at_the_first_answer_and_skips_failed_plugins() -> None:
    plugins = Plugins(strict=False)
    plugins.pm.add_hookspecs(QuaySpec)
    first, second, unsure = Knows("quay 4"), Knows("quay 9"), Knows(None)
    for name, obj in [("second", second), ("first", first), ("unsure", unsure), ("raising", Raising())]:
        plugins.register(name, obj)  # pluggy calls the last registered first; tryfirst before all
    assert plugins.call("stevedores_quay_for", vessel="Maersk Kinloss") == [("first", "quay 4")]
    assert (first.asked, second.asked, unsure.asked) == (1, 0, 1)
    assert plugins.infos["raising"].status == "failed"
    assert plugins.infos["raising"].error == "stevedores_quay_for raised LookupError: Maersk Kinloss"


def test_strict_mode_lets_a_wrapper_failure_through() -> None:
    plugins = Plugins(strict=True)
    plugins.register("bad", BrokenWrapper())
    with pytest.raises(PluginError, match="plugin 'bad' failed: stevedores_startup raised RuntimeError"):
        plugins.call("stevedores_startup", app=None, config=None)


def test_hook_tracing_logs_calls_and_results_with_secrets_redacted(make_stevedores_app: Callable,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-value-xyz-" * 2

    class Leaky:
        @hookimpl
        def stevedores_menu_links(self) -> list[MenuLink]:
            return [MenuLink("Leak", "/leak", description=f"token {secret}")]

    caplog.set_level(logging.INFO, logger="stevedores.hooks")
    make_stevedores_app(plugins=[], extra_plugins=[("leaky", Leaky())],
                        env={"STEVEDORES_TRACE_HOOKS": "1", "OPS_TOKEN": secret})
    traced = [r.getMessage() for r in caplog.records if r.name == "stevedores.hooks"]
    assert any(line.strip().startswith("stevedores_menu_links [hook]") for line in traced), traced
    assert any("finish stevedores_menu_links -->" in line and "/leak" in line for line in traced)
    assert not any(secret in line for line in traced)
    assert any("token <redacted>" in line for line in traced)
