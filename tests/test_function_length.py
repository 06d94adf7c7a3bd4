"""No function in the core or a plugin's package is over 60 lines (issue 16): longer ones are split
into named parts. Counted from ``def`` to the last line of the body, decorators excluded."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 60


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_LINES]


def test_no_function_in_the_core_or_a_plugin_is_over_60_lines() -> None:
    sources = [*REPO.glob("core/stevedores/**/*.py"), *REPO.glob("plugins/*/stevedores_*/**/*.py")]
    assert len(sources) > 50  # the globs still find the packages
    assert [long for path in sorted(sources) for long in _long_functions(path)] == []
