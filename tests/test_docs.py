"""Documentation that must not drift from the code."""

from __future__ import annotations

import inspect
import os
import re
import types
from pathlib import Path
from typing import Callable

import pytest

from stevedores import hookspecs
from stevedores.cli import settings_table
from stevedores.plugins import Plugins

REPO = Path(__file__).resolve().parent.parent


def _hookspecs() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("stevedores_")]


def test_every_hook_spec_has_a_docstring_and_a_section_in_docs_plugins_md() -> None:
    doc = (REPO / "docs" / "plugins.md").read_text()
    sections = set(re.findall(r"^### (stevedores_\w+)$", doc, re.M))
    specs = _hookspecs()
    assert len(specs) >= 12
    missing = [name for name in specs if name not in sections]
    assert not missing, f"hook specs without a section in docs/plugins.md: {missing}"
    undocumented = [name for name in specs if len(inspect.getdoc(getattr(hookspecs, name)) or "") < 40]
    assert not undocumented, f"hook specs without a docstring: {undocumented}"
    stale = sections - set(specs)
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"


@pytest.mark.parametrize("document", ["README.md", "docs/deployment.md"])
def test_settings_tables_match_the_declared_settings(document: str) -> None:
    text = (REPO / document).read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S)
    assert block, f"{document} lacks the settings table markers"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEVEDORES_")}
    expected = settings_table(Plugins.from_environ(env))
    assert not re.search(r"`(True|False|None)`|`\(|`\[", expected), "a Python repr in the settings table"
    assert block.group(1).strip() == expected.strip(), (
        f"{document}'s settings table is stale: regenerate it with `stevedores settings --markdown`")


@pytest.mark.parametrize("plugin", sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "README.md").exists()))
def test_each_plugin_readme_lists_exactly_the_settings_it_declares(plugin: str) -> None:
    from stevedores.runtime import declared_settings

    declared = {s.name for owner, s in declared_settings(Plugins.from_environ({})) if owner == plugin}
    readme = (REPO / "plugins" / plugin / "README.md").read_text()
    section = re.search(r"^## Settings\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, f"plugins/{plugin}/README.md has no '## Settings' section"
    listed = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", section.group(1), re.M))
    listed |= set(re.findall(r"^[-*]\s+`([A-Z][A-Z0-9_]+)`", section.group(1), re.M))
    assert listed == declared, (f"plugins/{plugin}/README.md: listed but not declared {sorted(listed - declared)}, "
                                f"declared but not listed {sorted(declared - listed)}")


def _hook_sections() -> dict[str, str]:
    doc = (REPO / "docs" / "plugins.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^### (stevedores_\w+)\n(.*?)(?=^##)", doc, re.S | re.M)}


def test_each_documented_signature_matches_its_hook_spec() -> None:
    for name, section in _hook_sections().items():
        documented = re.search(rf"`{name}\(([^)]*)\)", section)
        assert documented, f"docs/plugins.md: the {name} section does not start with its signature"
        arguments = [a.strip() for a in documented.group(1).split(",") if a.strip()]
        assert arguments == list(inspect.signature(getattr(hookspecs, name)).parameters), name


def _examples() -> dict[str, types.ModuleType]:
    modules = {}
    for name, section in _hook_sections().items():
        code = re.search(r"```python\n(.*?)```", section, re.S)
        assert code, f"docs/plugins.md: the {name} section has no example"
        module = modules[name] = types.ModuleType(f"example_{name}")
        exec(compile(code.group(1), f"docs/plugins.md ({name})", "exec"), module.__dict__)  # noqa: S102
    return modules


def test_every_hook_example_runs_as_a_plugin(make_stevedores_app: Callable) -> None:
    import click
    from sqlalchemy import create_engine

    examples = _examples()
    app = make_stevedores_app(plugins=[], extra_plugins=list(examples.items()),
                              env={"CRANE_API_URL": "https://cranes.example/api"})
    runtime = app.extensions["stevedores"]
    assert runtime.plugins.active() == sorted(examples), [(i.name, i.error) for i in runtime.plugins.listing()]
    response = app.test_client().get("/cranes")
    assert response.get_json() == {"online": 3, "cached": False} and response.headers["X-Crane-Feed"] == "live"
    assert runtime.service("cranes").online() == 3 and runtime.telemetry.declared("cranes_online").kind == "gauge"
    assert [c.name for _p, c in runtime.health_checks] == ["cranes"]
    assert [link.href for _p, link in runtime.menu_links] == ["/cranes"]
    assert runtime.worker_decision().final == 2  # WEB_WORKERS=2 in the test environment, below the proposal
    group = click.Group()
    runtime.plugins.call("stevedores_register_commands", cli=group)
    assert "cranes" in group.commands
    engine = create_engine("sqlite://")
    assert runtime.plugins.call("stevedores_preflight", config=runtime.config, engine=engine) == [
        ("stevedores_preflight", ["table crane_events is missing: run `stevedores cranes migrate`"])]
    runtime.plugins.call("stevedores_server_starting", config=runtime.config, telemetry=runtime.telemetry)
    runtime.worker_started(app)
    assert not app.extensions["cranes_stop"].is_set()
    runtime.shutdown(app)
    runtime.plugins.call("stevedores_child_exit", config=runtime.config, pid=4242)
    assert "cranes_stop" not in app.extensions
    assert runtime.plugins.active() == sorted(examples)
