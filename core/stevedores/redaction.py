"""Secret redaction: the one function every log line, trace, health result and error report
goes through before a secret value could leave the process."""

from __future__ import annotations

from typing import Any, Iterable

#: What a secret value is replaced with, everywhere (logs, health JSON, Sentry events, hook traces).
REDACTED = "<redacted>"

#: Shorter values are not replaced: they would blank out ordinary words and digits in the text.
MIN_SECRET_LENGTH = 4


def secrets_to_redact(secrets: Iterable[str]) -> tuple[str, ...]:
    """The values worth replacing, longest first (so a secret containing another goes whole)."""
    return tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True))


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a secret replaced by :data:`REDACTED`.

    Strings are searched; dicts, lists and tuples are walked (tuples come back as lists,
    as JSON would have them); anything else is returned as it is. ``secrets`` shorter
    than :data:`MIN_SECRET_LENGTH` characters are ignored.
    """
    wanted = secrets_to_redact(secrets)
    if not wanted:
        return value
    return _redact(value, wanted)


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    return value
