"""HEAD works wherever GET does, with every installed plugin (issue 14: HEAD /login answered 400)."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

#: An example value per route converter (a status that is the same for GET and HEAD is all that matters).
EXAMPLES = {"record_id": "1", "path": "favicon.svg", "int": "1", "default": "x"}


def test_head_answers_like_get_on_every_route(stevedores_app: Any) -> None:
    client = stevedores_app.test_client()
    checked = []
    for rule in stevedores_app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", lambda m: EXAMPLES.get(m.group(1) or "default", "x"),
                      rule.rule)
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, (rule.rule, head.status_code, got.status_code)
        assert head.data == b"", rule.rule
        checked.append(rule.rule)
    assert "/login" in checked and "/health/live" in checked
