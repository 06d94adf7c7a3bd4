"""Several instances behind HAProxy (bench/fleet.py, short forms of `make drills`' fleet drills).

One fleet for the module: two instances of the real app (gunicorn.conf.py, production
profile) behind HAProxy running deploy/haproxy.cfg, a PostgreSQL database of its own
behind a TCP relay the drills can freeze, and a redis-server of its own reached by each
instance through its own relay. The tests run in file order and the last one breaks
instance 2's Redis for good.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest

from bench.fleet import (
    Fleet,
    FleetResult,
    drill_database_freeze,
    drill_database_terminated,
    drill_redis_lost_by_one,
    drill_rolling_restart,
    error_lines,
    start_fleet,
)
from bench.slow_clients import drill_slow_clients


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="test-fleet-")))
        yield start_fleet(stack, workdir)


def _held(result: FleetResult, fleet: Fleet) -> None:
    print(result.line())
    if not result.passed:
        pytest.fail(f"{result.line()}\n{error_lines(fleet)}")


@pytest.mark.timeout(120)  # includes starting the fleet
def test_slow_clients_wait_in_haproxy_not_in_gunicorn(fleet: Fleet) -> None:
    threads = int(fleet.instances[0].env["WEB_WORKERS"]) * 4
    # The control: slow clients straight at one instance stop /health/quick there. 2 per request
    # thread, then 8 if need be: the kernel hands connections to whichever worker accepts first,
    # and a worker left with a free thread answers every probe it accepts.
    result = drill_slow_clients(fleet, seconds=3, connections=200, steps=(threads * 2, threads * 8))
    _held(result, fleet)
    assert "stalls at" in result.figures, result.figures


@pytest.mark.timeout(60)
def test_terminated_database_connections_cost_no_read(fleet: Fleet) -> None:
    _held(drill_database_terminated(fleet, seconds=4), fleet)


@pytest.mark.timeout(120)
def test_a_rolling_restart_loses_no_write(fleet: Fleet) -> None:
    _held(drill_rolling_restart(fleet, seconds=4), fleet)


@pytest.mark.timeout(90)
def test_a_frozen_database_answers_every_request_within_ten_seconds(fleet: Fleet) -> None:
    try:
        _held(drill_database_freeze(fleet, seconds=4, freeze=12.0), fleet)
    finally:
        fleet.database_proxy.thaw()
        for server in ("app1", "app2"):
            fleet.lb.wait_for(server, "UP")


@pytest.mark.timeout(90)  # includes stopping the fleet
def test_one_instance_losing_redis_costs_no_user_a_request(fleet: Fleet) -> None:
    _held(drill_redis_lost_by_one(fleet, seconds=4), fleet)

