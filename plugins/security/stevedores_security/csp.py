"""The Content-Security-Policy: the default, and the validation of a replacement (CSP_POLICY).

A policy is a mapping ``directive -> sources``. Values are strings (space-separated
sources) or lists of strings; a valueless directive (``upgrade-insecure-requests``) is
``""``. Everything else is an error naming the directive, raised at start-up: a None,
bool or number value is what made Talisman fail with "can only join an iterable" per
request in the earlier dashboard.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Mapping

#: The deployment guide's sources, plus object-src, base-uri, form-action and frame-ancestors.
#: script-src and style-src also get a per-request nonce (see :func:`nonce_directives`):
#: browsers that know nonces then ignore 'unsafe-inline'; older ones keep working.
DEFAULT_POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self' 'unsafe-inline' https://cdn.jsdelivr.net",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: https:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

FETCH_DIRECTIVES = frozenset({
    "child-src", "connect-src", "default-src", "fenced-frame-src", "font-src", "frame-src", "img-src",
    "manifest-src", "media-src", "object-src", "prefetch-src", "script-src", "script-src-elem",
    "script-src-attr", "style-src", "style-src-elem", "style-src-attr", "worker-src",
})
SOURCE_LIST_DIRECTIVES = FETCH_DIRECTIVES | {"base-uri", "form-action", "frame-ancestors", "navigate-to"}
VALUELESS_DIRECTIVES = frozenset({"upgrade-insecure-requests", "block-all-mixed-content"})
OTHER_DIRECTIVES = frozenset({
    "sandbox", "report-uri", "report-to", "require-trusted-types-for", "trusted-types", "plugin-types",
    "require-sri-for",
})
KNOWN_DIRECTIVES = SOURCE_LIST_DIRECTIVES | VALUELESS_DIRECTIVES | OTHER_DIRECTIVES

#: Keywords that must be written with inner single quotes ('self', not self).
KEYWORDS = frozenset({
    "self", "none", "unsafe-inline", "unsafe-eval", "strict-dynamic", "unsafe-hashes", "report-sample",
    "unsafe-allow-redirects", "wasm-unsafe-eval", "inline-speculation-rules",
})
HASH_PREFIXES = ("nonce-", "sha256-", "sha384-", "sha512-")

EXAMPLE = '{"default-src": "\'self\'", "img-src": ["\'self\'", "data:"]}'


class CspError(ValueError):
    """A policy that cannot be used; the message names the directive at fault."""


def validate_policy(policy: Any) -> dict[str, str]:
    """Check ``policy`` and return it normalised (lower-case directives, string values).

    Raises :class:`CspError` naming the first bad directive.
    """
    if not isinstance(policy, Mapping):
        raise CspError(f"expected a JSON object of directives, e.g. {EXAMPLE}; got {type(policy).__name__}")
    if not policy:
        raise CspError("the policy has no directive; unset CSP_POLICY to use the default policy")
    normalised: dict[str, str] = {}
    for raw_name, value in policy.items():
        name = str(raw_name).strip().lower()
        if name not in KNOWN_DIRECTIVES:
            close = difflib.get_close_matches(name, sorted(KNOWN_DIRECTIVES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CspError(f"unknown directive {raw_name!r}{hint}")
        if name in normalised:
            raise CspError(f"directive {name!r} is given twice")
        normalised[name] = _directive_value(name, value)
    return normalised


def _directive_value(name: str, value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float)):
        shown = json.dumps(value)
        raise CspError(f"directive {name!r} has the value {shown}; use \"\" for a valueless directive "
                       "and a string or a list of strings for sources")
    if isinstance(value, (list, tuple)):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise CspError(f"directive {name!r} lists {json.dumps(bad[0])}; every source must be a string")
        tokens = [token for item in value for token in item.split()]
    elif isinstance(value, str):
        tokens = value.split()
    else:
        raise CspError(f"directive {name!r} has a value of type {type(value).__name__}; "
                       "use a string or a list of strings")
    for token in tokens:
        if any(ch in token for ch in ";,"):
            raise CspError(f"directive {name!r}: {token!r} contains ';' or ','; give each directive its own key")
    if name in VALUELESS_DIRECTIVES and tokens:
        raise CspError(f"directive {name!r} takes no value; use \"\"")
    if name in SOURCE_LIST_DIRECTIVES:
        for token in tokens:
            _check_source(name, token)
    return " ".join(tokens)


def _check_source(name: str, token: str) -> None:
    bare = token.lower()
    if bare in KEYWORDS or bare.startswith(HASH_PREFIXES):
        raise CspError(f"directive {name!r}: keyword {token} must be quoted as '{token}'")
    if token.startswith("'") or token.endswith("'"):
        inner = bare.strip("'")
        if not (token.startswith("'") and token.endswith("'") and len(token) > 2):
            raise CspError(f"directive {name!r}: {token} has unbalanced quotes")
        if inner not in KEYWORDS and not inner.startswith(HASH_PREFIXES):
            raise CspError(f"directive {name!r}: unknown keyword {token}")


def nonce_directives(policy: Mapping[str, str]) -> list[str]:
    """The directives that get the per-request nonce: script-src and style-src, and
    default-src when either of them is missing (it then governs scripts or styles)."""
    chosen = [d for d in ("script-src", "style-src") if d in policy]
    if len(chosen) < 2 and "default-src" in policy:
        chosen.append("default-src")
    return chosen


def render(policy: Mapping[str, str]) -> str:
    """The header value without nonces (for responses Flask does not produce)."""
    return "; ".join(f"{name} {value}".strip() for name, value in policy.items())


class CspPolicySetting:
    """Setting parser for CSP_POLICY: JSON text, validated and normalised."""

    expected = f"a JSON object of CSP directives, e.g. {EXAMPLE}"

    def __call__(self, raw: str) -> dict[str, str]:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected {self.expected}; the JSON does not parse: {exc.msg} at "
                             f"character {exc.pos}") from None
        return validate_policy(parsed)
