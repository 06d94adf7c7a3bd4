"""The migration gate: pages and API answer 503 (never 500) while the operations schema is
behind this code, readiness says why, and ``stevedores check`` fails naming both revisions.

"Behind" means never migrated, or at a revision older than this code's head. A schema
*ahead* of this code (a newer release migrated it during a rolling deploy) is served,
with a warning: migrations are written to keep the previous release working.
With OPERATIONS_AUTO_MIGRATE on, the gate also retries the upgrade itself (the
database may have been out of reach at start-up), under the migration lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from werkzeug.exceptions import ServiceUnavailable

from .migrate import alembic_config, current_revision, head_revision, upgrade

log = logging.getLogger("stevedores.operations")

#: While behind, the database is asked again at most this often (seconds) by requests.
RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class SchemaState:
    """The schema's revision (None: never migrated), this code's head, and whether requests may be served."""

    current: str | None
    head: str
    servable: bool

    @property
    def problem(self) -> str:
        """What is wrong and what to do, naming both revisions ("" when servable; no quotes, which the public
        health JSON would scrub)."""
        if self.servable:
            return ""
        return (f"operations schema is at {self.current or 'empty (never migrated)'}, this code needs {self.head}: "
                "run stevedores db upgrade (or set OPERATIONS_AUTO_MIGRATE=true)")


class SchemaGate:
    """Whether the operations schema fits this code; once it does, no request asks the database again."""

    def __init__(self, engine_of: Callable[[], Engine], auto_migrate: bool) -> None:
        self.engine_of, self.auto_migrate = engine_of, auto_migrate
        self.head = head_revision()
        self.known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        self._state: SchemaState | None = None
        self._checked_at = self._failed_at = float("-inf")
        self._failure: Exception | None = None  # what the last failed check raised, for the threads queued behind it
        self._lock = threading.Lock()

    def check(self, max_age: float = RECHECK_SECONDS) -> SchemaState:
        """The schema's state, asked again when older than ``max_age`` seconds (never once servable).

        Raises SQLAlchemy's errors when the database is out of reach (the core answers 503).
        """
        state = self._state
        if state is not None and (state.servable or time.monotonic() - self._checked_at < max_age):
            return state
        asked = time.monotonic()
        with self._lock:
            # Threads that queued behind a check take its outcome instead of waiting for one each.
            if self._checked_at >= asked and self._state is not None:
                return self._state
            if self._failed_at >= asked and self._failure is not None:
                raise self._failure  # the same error, whatever it was (the core's one 503 path or a 500)
            engine = self.engine_of()
            try:
                if self.auto_migrate:
                    upgrade(engine)
                current = current_revision(engine)
            except Exception as exc:
                self._failed_at, self._failure = time.monotonic(), exc
                raise
            servable = current == self.head or (current is not None and current not in self.known)
            if servable and current != self.head:
                log.warning("operations schema is at %s, newer than this code's %s: serving (rolling deploy?)",
                            current, self.head)
            self._state, self._checked_at = SchemaState(current, self.head, servable), time.monotonic()
            return self._state

    def guard(self) -> None:
        """Flask before_request: raise ServiceUnavailable (503) while the schema is behind."""
        state = self.check()
        if not state.servable:
            raise ServiceUnavailable("The operations database schema is behind this version of the dashboard: "
                                     f"{state.problem}.")

    def health(self) -> dict[str, Any]:
        """The critical ``operations_schema`` health check (readiness): asks the database while behind."""
        state = self.check(max_age=0)
        body: dict[str, Any] = {"status": "healthy" if state.servable else "error",
                                "revision": state.current or "empty", "head": state.head}
        if not state.servable:
            body["problems"] = [state.problem]
        return body
