"""What a vessel page shows, read with one statement when something may have changed, none otherwise.

A request reads the vessel call and its tally totals (one statement, ``vessel_call_totals``),
whose fingerprint changes with any tally or any change to the call. The expensive parts (every
tally for the chart, the recent tallies) are read and drawn only when the fingerprint or the
minute has changed, and kept per process. The page is therefore never staler than the database,
on any worker: a tally posted through another worker changes the fingerprint at once. With the
change signal (changes.py) even that statement is skipped while the signal's version is the one
the kept view was checked under and the minute is the same.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Hashable

from markupsafe import Markup
from sqlalchemy.engine import Engine

from .changes import no_version
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
    #: The change signal's version taken before the fingerprint was last read (None: none).
    version: Hashable | None = None


@dataclass
class VesselViews:
    """Per-process memo of vessel views (and of their page as rendered for visitors without a session)."""

    max_entries: int = 256
    #: The change signal (``changes.ChangeListener.version``); ``no_version``: query on every request.
    version: Callable[[], Hashable | None] = no_version
    _views: dict[int, VesselView] = field(default_factory=dict)
    _anonymous_pages: dict[int, tuple[Hashable, str, str | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, engine: Engine, call_id: int, now: datetime | None = None) -> VesselView:
        """The current view of a vessel call (NotFoundError if unknown); the chart runs to this minute.

        No query while the change signal's version is the kept view's and the minute is the same.
        """
        minute = (now or utcnow()).replace(second=0, microsecond=0)
        version = self.version()  # before the totals: a write committing later makes a newer version
        view = self._views.get(call_id)
        if version is not None and view is not None and view.version == version and view.key[1] == minute:
            return view
        with single_statements(engine) as conn:
            row, tallied, fingerprint = vessel_call_totals(conn, call_id)
            key = (fingerprint, minute)
            view = self._views.get(call_id)
            if view is not None and view.key == key:
                if view.version != version:  # the data read after ``version`` is this view's
                    self._keep(call_id, replace(view, version=version))
                return view
            call = vessel_call_json(row, tallied)
            planned = {d: sum(call["planned"][d].values()) for d in call["planned"]}
            series = [point for point in tally_series_on(conn, call_id)
                      if displayable(point[0], f"a tally of vessel call {call_id}")]
            chart = cumulative_chart(series, planned, minute,
                                     f"Units tallied over time for {call['vessel_name']}")
            view = VesselView(call, chart, recent_tallies(conn, call_id, RECENT_TALLIES), key, version)
        self._keep(call_id, view)
        return view

    def _keep(self, call_id: int, view: VesselView) -> None:
        with self._lock:
            self._views.pop(call_id, None)
            self._views[call_id] = view
            while len(self._views) > self.max_entries:
                self._views.pop(next(iter(self._views)))

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
