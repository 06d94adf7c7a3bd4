"""The request body limit (``MAX_CONTENT_LENGTH``): 413 before any of the body is read.

One WSGI layer, :class:`BodyLimit`, for the two ways a body arrives:

- **Declared length** (``Content-Length``): the layer, just outside Flask, answers 413
  from the header alone. Flask's own check (MAX_CONTENT_LENGTH, set to the same value)
  fires only when the body is first parsed, after the session, every before_request
  handler and the view have started; the audit found a 1 GB multipart POST to /login spooled to disk before its CSRF
  check. Unread, the body is dropped by gunicorn (it drains at most 64 KB, then closes).
- **Chunked** (no ``Content-Length``): nobody knows the size in advance, so the same layer
  reads at most ``limit + 1`` bytes: more is a 413 at once; otherwise the app gets the body
  as an ordinary one of known length. Memory per request stays bounded by the limit. (Not
  werkzeug's ``LimitedStream(is_max=True)``, which Flask applies with MAX_CONTENT_LENGTH:
  its ``read()`` stops at the limit without looking further, so an over-long chunked form
  arrives silently truncated, measured with werkzeug 3.1: a 4 MiB chunked POST /login gave
  a 400 "CSRF token missing" instead of a 413.)

The plugins' WSGI layers (headers, metrics) wrap this one, so a 413 carries the security
headers and is counted like any answer.
"""

from __future__ import annotations

import io
import json
from typing import IO, Any, Callable

#: Default MAX_CONTENT_LENGTH: the largest legitimate body (a JSON tally batch, a login form) is a
#: few KB; 1 MiB leaves room for growth and stops a 200 MB JSON taking a worker from 79 MB to 650 MB.
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024


def too_large_body(limit: int, declared: int | None = None) -> bytes:
    """The 413 JSON body, in the API's error shape (``error``, ``message``, ``errors[field, message]``);
    the field is ``Content-Length`` for a declared size, ``body`` for a chunked one."""
    field = "Content-Length" if declared is not None else "body"
    what = f"{declared} bytes declared exceed" if declared is not None else "the chunked body exceeds"
    message = f"{what} the limit of {limit} bytes (MAX_CONTENT_LENGTH)"
    return json.dumps({"error": "payload_too_large", "message": f"{field}: {message}",
                       "errors": [{"field": field, "message": message}]}).encode()


class BodyLimit:
    """WSGI layer: 413 for a body over ``limit`` bytes, declared or chunked, before the app reads any of it."""

    def __init__(self, wsgi_app: Callable[..., Any], limit: int) -> None:
        self.app = wsgi_app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        declared = environ.get("CONTENT_LENGTH")
        if declared:
            try:
                length = int(declared)
            except ValueError:
                length = -1  # gunicorn refuses a bad Content-Length itself; werkzeug treats it as 0
            if length > self.limit:
                return self.refuse(start_response, length)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and "wsgi.input" in environ:
            body = read_at_most(environ["wsgi.input"], self.limit + 1)
            if len(body) > self.limit:
                return self.refuse(start_response, None)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]  # werkzeug ignores Content-Length beside it
        return self.app(environ, start_response)

    def refuse(self, start_response: Callable[..., Any], declared: int | None) -> list[bytes]:
        """The 413 answer (JSON, see :func:`too_large_body`)."""
        body = too_large_body(self.limit, declared)
        start_response("413 Request Entity Too Large",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def read_at_most(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream`` (fewer when it ends first), read 64 KB at a time."""
    buffer = bytearray()
    while len(buffer) < size:
        data = stream.read(min(64 * 1024, size - len(buffer)))
        if not data:
            break
        buffer += data
    return bytes(buffer)
