"""What a vessel page shows, read with one statement when nothing has changed.

Every request reads the vessel call and its tally totals (one statement, ``vessel_call_totals``),
whose fingerprint changes with any tally or any change to the call. The expensive parts (every
tally for the chart, the recent tallies) are read and drawn only when the fingerprint or the
minute has changed, and kept per process. The page is therefore never staler than the database,
on any worker: a tally posted through another worker changes the fingerprint at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Hashable

from markupsafe import Markup
from sqlalchemy.engine import Engine

from .charts import cumulative_chart
from .domain import utcnow
from .store import recent_tallies, single_statements, tally_series_on, vessel_call_json, vessel_call_totals
from .validation import displayable

#: Recent tallies listed on the page.
RECENT_TALLIES = 50


@dataclass(frozen=True)
class VesselView:
    """The data of one vessel page: the call (with tallied units), its chart and its newest tallies."""

    call: dict[str, Any]
    chart: Markup
    tallies: list[dict[str, Any]]
    #: Identifies this exact content: (database fingerprint, minute the chart was drawn for).
    key: Hashable


@dataclass
class VesselViews:
    """Per-process memo of vessel views (and of their page as rendered for visitors without a session)."""

    max_entries: int = 256
    _views: dict[int, VesselView] = field(default_factory=dict)
    _anonymous_pages: dict[int, tuple[Hashable, str, str | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, engine: Engine, call_id: int, now: datetime | None = None) -> VesselView:
        """The current view of a vessel call (NotFoundError if unknown); the chart runs to this minute."""
        minute = (now or utcnow()).replace(second=0, microsecond=0)
        with single_statements(engine) as conn:
            row, tallied, fingerprint = vessel_call_totals(conn, call_id)
            key = (fingerprint, minute)
            view = self._views.get(call_id)
            if view is not None and view.key == key:
                return view
            call = vessel_call_json(row, tallied)
            planned = {d: sum(call["planned"][d].values()) for d in call["planned"]}
            series = [point for point in tally_series_on(conn, call_id)
                      if displayable(point[0], f"a tally of vessel call {call_id}")]
            chart = cumulative_chart(series, planned, minute,
                                     f"Units tallied over time for {call['vessel_name']}")
            view = VesselView(call, chart, recent_tallies(conn, call_id, RECENT_TALLIES), key)
        with self._lock:
            self._views.pop(call_id, None)
            self._views[call_id] = view
            while len(self._views) > self.max_entries:
                self._views.pop(next(iter(self._views)))
        return view

    def anonymous_page(self, view: VesselView) -> tuple[str, str | None] | None:
        """(HTML, ETag or None) rendered for this exact view for a visitor without a session, if remembered."""
        memo = self._anonymous_pages.get(view.call["id"])
        return (memo[1], memo[2]) if memo is not None and memo[0] == view.key else None

    def remember_anonymous_page(self, view: VesselView, html: str, etag: str | None) -> None:
        """Keep the anonymous rendering of ``view`` and its ETag (one per vessel call, bounded like the views)."""
        with self._lock:
            self._anonymous_pages.pop(view.call["id"], None)
            self._anonymous_pages[view.call["id"]] = (view.key, html, etag)
            while len(self._anonymous_pages) > self.max_entries:
                self._anonymous_pages.pop(next(iter(self._anonymous_pages)))
