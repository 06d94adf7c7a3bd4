"""Test-only routes for the fault drills. Never install this in production."""

from __future__ import annotations

import threading
import time

from flask import Flask, jsonify, request

from stevedores import hookimpl

_kept: list[bytearray] = []


def _release(block: bytearray) -> None:
    """Drop a block allocated with ``hold`` (a large bytearray goes straight back to the OS)."""
    for i, kept in enumerate(_kept):
        if kept is block:
            del _kept[i]
            return


@hookimpl
def stevedores_startup(app: Flask) -> None:
    """Register /drill/slow and /drill/alloc (``?mb=8``, ``&hold=seconds`` to release it later)."""

    @app.get("/drill/slow")
    def drill_slow():  # noqa: ANN202
        seconds = min(float(request.args.get("seconds", "2")), 20.0)
        time.sleep(seconds)
        return jsonify(slept=seconds)

    @app.get("/drill/alloc")
    def drill_alloc():  # noqa: ANN202
        mb = min(int(request.args.get("mb", "8")), 256)
        block = bytearray(mb * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
        _kept.append(block)
        hold = request.args.get("hold")  # seconds; absent: kept for the worker's life
        if hold is not None:
            release = threading.Timer(min(float(hold), 600.0), _release, args=(block,))
            release.daemon = True
            release.start()
        return jsonify(kept_mb=sum(len(b) for b in _kept) // (1024 * 1024))
