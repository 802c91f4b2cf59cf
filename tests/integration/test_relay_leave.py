"""Relays under real gunicorn against a real home: one stopped cleanly (SIGTERM to the
master, as systemd and Kubernetes send it) is listed as left by the time its master has
exited, and never counts as down; one killed with its agent (a crash) goes stale, then
down, as before; the one that left comes back healthy when it starts again."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance import config
from dmr_appliance.config import Heartbeats
from tests.support.home import router_session, running_home
from tests.support.identity import forwarded
from tests.support.processes import Process, free_port
from tests.support.relay_kit import relay_config

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("store_backend")]

RULES = dataclasses.replace(Heartbeats(), stale_after=2, down_after=4)


def relay(pki, tmp: Path, home_url: str, member: str) -> Process:
    """``relay serve`` alone (gunicorn and its agent; no gate), beating every second as
    relay-1.<member>."""
    state = tmp / member
    cfg = relay_config(
        pki,
        state,
        instance=f"relay-1.{member}",
        bind=f"127.0.0.1:{free_port()}",
        workers=1,
        threads=2,
        home_url=home_url,
    )
    cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, heartbeat_interval=1))
    state.mkdir(parents=True)
    path = state / "relay.toml"
    path.write_text(config.to_toml(cfg))
    return Process(
        [sys.executable, "-m", "dmr_appliance", "relay", "serve", "--config", str(path)],
        log_path=state / "relay.log",
    )


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not seen in {timeout:.0f} s: {what}"
        time.sleep(0.1)
    return found


def test_a_relay_stopped_cleanly_is_left_one_killed_goes_down(tmp_path, pki):
    with running_home(tmp_path / "home", pki, workers=1, threads=8, heartbeats=RULES) as home:
        admin = router_session(pki, forwarded(pki, "admin", "admin"))

        def health() -> dict[str, str]:
            found = admin.get(f"{home.url}/v1/instances", timeout=5).json()["instances"]
            return {i["instance"]: i["health"] for i in found}

        def gauge() -> dict[str, float]:
            text = admin.get(f"{home.url}/metrics", timeout=5).text
            return {
                s.labels["health"]: s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "dmr_home_instances"
            }

        stopped, crashed = (
            relay(pki, tmp_path, f"{home.url}/v1", m) for m in ("stopped", "crashed")
        )
        try:
            stopped.start()
            crashed.start()
            wait_for(
                lambda: health() == {"relay-1.stopped": "healthy", "relay-1.crashed": "healthy"},
                "both healthy",
            )

            os.kill(stopped.pid, signal.SIGTERM)  # the master only: it stops its agent
            stopped.process.wait(15)
            assert health()["relay-1.stopped"] == "left"  # at once: no waiting here
            assert '"event":"agent-left"' in stopped.logs()

            crashed.kill()  # SIGKILL to the group: master, worker and agent alike
            assert health()["relay-1.crashed"] == "healthy"
            wait_for(lambda: health()["relay-1.crashed"] == "stale", "stale", 10)
            wait_for(lambda: health()["relay-1.crashed"] == "down", "down", 10)
            # Both long silent now: only the crash counts for the alerts.
            assert health() == {"relay-1.stopped": "left", "relay-1.crashed": "down"}
            assert gauge() == {"healthy": 0, "stale": 0, "down": 1, "left": 1}
            assert '"event":"agent-left"' not in crashed.logs()

            stopped.start()  # a restart: healthy again
            wait_for(lambda: health()["relay-1.stopped"] == "healthy", "back healthy")
        finally:
            stopped.stop()
            crashed.stop()
