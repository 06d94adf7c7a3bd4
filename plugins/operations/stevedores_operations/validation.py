"""Boundary rules for every value the API and the forms accept, shared by both (and by any new form).

- **Dates** lie in ``[EARLIEST, LATEST)``: 2000-01-01T00:00Z up to (not including) 2100-01-01T00:00Z.
  A fixed window rather than "now ± N years": a vessel call planned for 2099 is odd but harmless,
  while year 99 or 9999 breaks arithmetic on it (a shift before year 1, an axis 2000 years wide),
  and a fixed window gives the same answer for stored data and new data on any day.
- **Ids** are PostgreSQL ``integer`` (the type of every id column): 1 .. 2**31-1. URLs take them
  through the ``record_id`` route converter, so a larger or negative id is a 404 before any query.
- **Text** is what a person types on one line: no control characters (NUL, CR, LF, tab, DEL and the
  other Unicode ``Cc`` characters) and no lone surrogates (``"\\ud800"`` in JSON: neither PostgreSQL
  nor UTF-8 can store it), within a field's length limit.

Every check names the field; the parsers turn that into a 422 ``{"field", "message"}``.
Rendering uses :func:`displayable` so that a row written before these rules (a tally in year 99)
is shown as unknown and logged instead of failing the page.
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import datetime, timezone
from typing import Any

from werkzeug.routing import IntegerConverter, Map

log = logging.getLogger("stevedores.operations")

#: Earliest date accepted or shown (inclusive), UTC.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: Latest date accepted or shown (exclusive), UTC.
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
#: Largest id: PostgreSQL ``integer`` (https://www.postgresql.org/docs/current/datatype-numeric.html).
MAX_ID = 2**31 - 1
#: Longest whole number accepted as text (``int()`` of thousands of digits is slow, and past 4300 refused).
MAX_INTEGER_DIGITS = 18


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as one line of text, or None when it can.

    Refused: Unicode control characters (category ``Cc``: NUL, CR, LF, tab, DEL, C1) and surrogates
    (category ``Cs``, only ever lone in a Python str: a JSON ``\\ud800`` escape).
    """
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            return f"must not contain control characters (found U+{ord(char):04X})"
        if category == "Cs":
            return f"must not contain a lone surrogate (found U+{ord(char):04X}); send valid UTF-8"
    return None


def moment_problem(value: datetime) -> str | None:
    """Why an aware datetime is outside the accepted window, or None when it is inside."""
    if not EARLIEST <= value < LATEST:
        return f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
    return None


def id_problem(value: int) -> str | None:
    """Why ``value`` cannot be a record id (1 .. MAX_ID), or None."""
    if not 1 <= value <= MAX_ID:
        return f"must be between 1 and {MAX_ID}"
    return None


def displayable(value: datetime | None, what: str = "a stored date") -> datetime | None:
    """``value`` if it lies in the window; else None, with a warning naming ``what`` (never an error).

    For rendering: rows written before the window was enforced must not fail a page.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    if moment_problem(value) is None:
        return value
    log.warning("operations: %s is out of range (%s); shown as unknown", what, value.isoformat())
    return None


def decimal_range_pattern(high: int) -> str:
    """A regular expression matching exactly the decimal numbers 1 .. ``high`` (no sign, no leading zero).

    E.g. ``decimal_range_pattern(250)`` matches 1-9, 10-99, 100-199, 200-249 and 250.
    """
    digits = str(high)
    width = len(digits)
    choices = [rf"[1-9]\d{{0,{width - 2}}}"] if width > 1 else []
    for i, char in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(char) > low:
            rest = width - i - 1
            choices.append(digits[:i] + f"[{low}-{int(char) - 1}]" + (rf"\d{{{rest}}}" if rest else ""))
    choices.append(digits)
    return "(?:" + "|".join(choices) + ")"


class RecordIdConverter(IntegerConverter):
    """Route converter ``<record_id:name>``: a database id, 1 .. MAX_ID; anything else does not match (404).

    The range is in the pattern itself: a rule whose converter refused a value after matching it
    would still count for werkzeug's method check, and a PATCH to ``/api/vessel-calls/2147483648``
    would then answer 405 instead of 404. ``int()`` never sees more than 10 digits.
    """

    regex = decimal_range_pattern(MAX_ID)

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=MAX_ID)


def register_converters(app: Any) -> None:
    """Make ``<record_id:...>`` available in ``app``'s routes (call before registering blueprints)."""
    app.url_map.converters.setdefault("record_id", RecordIdConverter)
