"""relay/draining.py: what ``dmr relay drain`` waits on, the deliveries in flight of every
live worker, read from the instance's metrics directory (workers are stand-in processes
that count as relay/delivery.py does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dmr_appliance import metrics
from dmr_appliance.errors import Unavailable
from dmr_appliance.relay import draining

WORKER = (
    "import os; from dmr_appliance.relay.metrics import RelayMetrics; "
    "RelayMetrics().in_flight.inc({}); print(os.getpid())"
)


def worker(directory: Path, in_flight: int) -> int:
    """A worker process that admitted ``in_flight`` deliveries (and never finished them);
    its pid."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER.format(in_flight)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, metrics.ENV: str(directory)},
    )
    return int(done.stdout)


def test_drain_waits_for_the_deliveries_in_flight_of_every_live_worker(tmp_path, monkeypatch):
    socket = tmp_path / "run" / "relay.sock"
    assert draining.in_flight(socket) == 0  # no metrics directory: nothing runs
    directory = metrics.directory(socket)
    directory.mkdir(parents=True)
    assert draining.in_flight(socket) == 0
    first, second = worker(directory, 2), worker(directory, 3)
    assert draining.in_flight(socket) == 5
    waits: list[float] = []
    assert (
        draining.wait_idle(socket, 0.2, settle=0, on_wait=lambda left, waited: waits.append(left))
        is None
    )
    assert waits and set(waits) == {5.0}
    monkeypatch.setenv(metrics.ENV, str(directory))
    metrics.process_exited(first)  # gunicorn's child_exit: its gauge is gone
    assert draining.in_flight(socket) == 3
    metrics.process_exited(second)
    waited = draining.wait_idle(socket, 5, settle=0)
    assert waited is not None and waited < 5


def test_the_flag_refuses_while_it_exists_then_serves_again(tmp_path):
    path = tmp_path / "run" / "draining"
    path.parent.mkdir()
    flag = draining.Flag(path, interval=0.0)
    flag.refuse_if_set()  # no flag: nothing raised
    path.touch()
    with pytest.raises(Unavailable) as err:
        flag.refuse_if_set()
    assert (err.value.code, err.value.status) == ("draining", 503)
    path.unlink()
    flag.refuse_if_set()


def test_the_flag_is_looked_at_only_every_interval(tmp_path):
    path = tmp_path / "draining"
    flag = draining.Flag(path, interval=60.0)
    flag.refuse_if_set()
    path.touch()
    flag.refuse_if_set()  # not looked at again yet: still serving
