"""Keeping the public health JSON free of secrets, connection strings, host names and tracebacks.

Two audiences see check results: anyone who can reach /health (load balancers, probes,
the internet when misconfigured) and operators holding OPS_TOKEN. The public view gets
an error's class and a scrubbed first line; figures are passed through
:func:`public_figures`, which drops text under names that tend to carry locations or
credentials and scrubs the rest. Operators get the full text, with secret setting values
still replaced (secrets are never printed).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from stevedores.redaction import REDACTED, redact

PUBLIC_MESSAGE_LENGTH = 160

# Figures whose *text* is never public (numbers and booleans under these names are harmless).
_SENSITIVE_PARTS = frozenset({
    "url", "urls", "uri", "dsn", "host", "hosts", "hostname", "server", "address", "addr", "ip", "password",
    "passwd", "secret", "token", "credentials", "connection", "path", "file", "traceback", "stack", "detail",
})

_WRAPPED = re.compile(r"^\([\w.]+\)\s*")
_SPACES = re.compile(r"\s+")
_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://\S+", re.IGNORECASE)
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_IPV6 = re.compile(r"\[?\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b\]?", re.IGNORECASE)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_PORT = re.compile(r"\bport\s+\d+\b", re.IGNORECASE)
_KEYVALUE = re.compile(r"\b(host|hostaddr|user|password|dbname|port|server)\s*=\s*\S+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w<])(?:/[\w.\-]+){2,}/?")
_DOTTED_HOST = re.compile(r"\b(?:[a-z0-9-]+\.)+(?:local|internal|com|net|org|io|cloud|svc|cluster|lan)\b",
                          re.IGNORECASE)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced (operators see everything else)."""
    return redact(text, secrets)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Public form of a piece of text: no secrets, URLs, addresses, host names, paths or quoted names."""
    text = redact_secrets(text, secrets)
    for pattern in (_URL, _KEYVALUE, _QUOTED, _IPV4, _IPV6, _DOTTED_HOST, _PATH):
        text = pattern.sub(REDACTED, text)
    return _PORT.sub("port " + REDACTED, text)


def public_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``ClassName: scrubbed first line`` (at most :data:`PUBLIC_MESSAGE_LENGTH` characters of message)."""
    message = _WRAPPED.sub("", _first_line(str(exc)))  # SQLAlchemy's "(psycopg.OperationalError) " prefix
    message = _SPACES.sub(" ", scrub(message, secrets))
    if len(message) > PUBLIC_MESSAGE_LENGTH:
        message = message[: PUBLIC_MESSAGE_LENGTH - 1] + "…"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def operator_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``ClassName: full message`` with secret values redacted (for operators only)."""
    return redact_secrets(f"{type(exc).__name__}: {exc}".strip(), secrets)


def public_figures(figures: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A check's figures as anyone may see them (see the module docstring)."""
    secrets = tuple(secrets)
    return {str(key): value for key, value in ((k, _public_value(k, v, secrets)) for k, v in figures.items())
            if value is not _DROP}


_DROP = object()


def _public_value(key: Any, value: Any, secrets: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _is_sensitive(str(key)):
        return _DROP
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return public_figures(value, secrets)
    if isinstance(value, (list, tuple)):
        items = [_public_value("", item, secrets) for item in value]
        return [item for item in items if item is not _DROP]
    return scrub(str(value), secrets)


def _is_sensitive(key: str) -> bool:
    parts = re.split(r"[_\-\s.]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", key).lower())
    return any(part in _SENSITIVE_PARTS for part in parts)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
