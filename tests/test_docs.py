"""Documentation that must not drift from the code."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

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
