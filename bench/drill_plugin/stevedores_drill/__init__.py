"""Test-only routes for the fault drills. Never install this in production."""

from __future__ import annotations

import time

from flask import Flask, jsonify, request

from stevedores import hookimpl

_kept: list[bytearray] = []


@hookimpl
def stevedores_startup(app: Flask) -> None:
    """Register /drill/slow and /drill/alloc."""

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
        return jsonify(kept_mb=sum(len(b) for b in _kept) // (1024 * 1024))
