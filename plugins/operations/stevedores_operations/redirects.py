"""Where a page may send the browser after login: same-site relative paths only, whatever the encoding.

The check is on the text and on every percent-decoding of it (a browser or proxy may decode once
more than we do): each form must be a path that starts with one ``/`` (``//host`` is another site,
``/\\host`` is too for browsers, which read ``\\`` as ``/``), with no scheme or host, and nothing a
browser strips or rewrites while parsing (tab, CR, LF, other control or invisible characters).
Anything else falls back to the default. Hostile cases: plugins/operations/tests/test_operations_redirects.py.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

#: Longest ``next`` kept (a path of this dashboard is far shorter).
MAX_NEXT_LENGTH = 2048
#: Percent-decodings checked; a value still changing after that many is refused.
MAX_DECODINGS = 4


def safe_next(target: object, default: str = "/") -> str:
    """``target`` when it is a same-site relative path in every decoding of it, else ``default``."""
    if not isinstance(target, str) or len(target) > MAX_NEXT_LENGTH:
        return default
    form = target
    for _ in range(MAX_DECODINGS):
        if not _same_site_path(form):
            return default
        decoded = unquote(form)
        if decoded == form:
            return target
        form = decoded
    return default


def _same_site_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return False
    if not text.isprintable():  # control, format, surrogate, line/paragraph separators, non-ASCII spaces
        return False
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc
