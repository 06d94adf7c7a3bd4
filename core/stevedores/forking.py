"""Fork safety, one way for the core and every plugin: one ``os.register_at_fork`` hook
for every object that must renew itself in a forked child.

Gunicorn forks its workers from a master that has loaded the plugins (and, with
``preload_app``, the whole app). Locks held by a thread of the parent at the moment of
fork stay held forever in the child (that thread does not exist there), threads do not
survive, and sockets must not be shared across processes: objects registered with
:func:`renew_in_children` get ``after_fork()`` called in each child, before any code of
the child runs, so they need no ``os.getpid()`` comparison on their hot paths.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Protocol

log = logging.getLogger("stevedores.forking")


class Renewable(Protocol):
    """Anything with an ``after_fork()`` method."""

    def after_fork(self) -> None:
        """Renew locks and drop inherited connections in the child."""


_objects: weakref.WeakSet = weakref.WeakSet()
_registered = threading.Event()


def renew_in_children(obj: Renewable) -> None:
    """Call ``obj.after_fork()`` in every process forked from now on (held weakly)."""
    if not _registered.is_set():
        _registered.set()
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _objects.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_objects):
        try:
            obj.after_fork()
        except Exception:  # noqa: BLE001 - a fork must not fail because of us
            log.exception("after_fork of %r failed", obj)
