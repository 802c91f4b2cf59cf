"""A hostile relay key holder against home under real gunicorn (issue 22, items 3 and 7):
its long polls cannot take home's threads, its heartbeats cannot make up names without
bound, and an admin can forget an instance with the CLI.

The tests talk to home's gate directly: as the router (vouching for a caller) or, for
the CLI, as the admin peer itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance import cli
from dmr_appliance.config import Heartbeats
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.wire.home import HomeRefused
from tests.support.home import router_session, running_home
from tests.support.identity import forwarded
from tests.support.problems import assert_problem
from tests.support.relay_kit import relay_config

# Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("store_backend")]

POLL_WAIT = 10


def as_(pki, kind, name):
    return router_session(pki, forwarded(pki, kind, name))


def beat(instance: str) -> dict:
    return {"instance": instance, "address": "10.0.0.5:8801", "version": "0.1.0", "sync_version": 1}


def latencies(session, url: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.monotonic()
        with contextlib.suppress(requests.Timeout):  # counted as the time it took: starved
            assert session.get(url, timeout=POLL_WAIT + 5).status_code == 200
        found.append(time.monotonic() - started)
    return found


@contextmanager
def hostile_polls(pki, home, etag: str, count: int) -> Iterator[Counter]:
    """``count`` pollers with relay-1's certificate, each on its own connection, polling
    again at once when answered and a second after a refusal, until the block ends."""
    answers: Counter = Counter()
    stop = threading.Event()

    def poller() -> None:
        session = as_(pki, "relay", "relay-1")
        while not stop.is_set():
            try:
                resp = session.get(
                    f"{home.url}/v1/sync",
                    params={"wait": POLL_WAIT},
                    headers={"If-None-Match": etag},
                    timeout=POLL_WAIT + 10,
                )
            except requests.RequestException:
                answers["error"] += 1
                continue
            answers[resp.status_code] += 1
            if resp.status_code in (429, 503):
                assert resp.headers["Content-Type"] == "application/problem+json"
                stop.wait(1.0)

    threads = [threading.Thread(target=poller, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        # A change answers every held poll at once (starved, they end with their wait).
        with contextlib.suppress(requests.RequestException):
            add_participant(as_(pki, "admin", "admin"), home.url, "wake-up")
        for thread in threads:
            thread.join(POLL_WAIT + 15)


def add_participant(session, url: str, pid: str) -> None:
    session.post(
        f"{url}/v1/participants",
        timeout=POLL_WAIT + 5,
        json={"id": pid, "endpoint": f"https://{pid}.example/in", "rooms": ["lobby"]},
    )


def test_held_polls_do_not_stall_admin_calls(tmp_path, pki):
    # 2 workers x 16 threads: 100 polls would hold every thread without the caps.
    with running_home(tmp_path / "home", pki, workers=2, threads=16) as home:
        admin = as_(pki, "admin", "admin")
        url = f"{home.url}/v1/participants"
        latencies(admin, url, 5)  # warm: connection, workers' first requests
        idle = latencies(admin, url, 20)
        etag = as_(pki, "relay", "relay-1").get(f"{home.url}/v1/sync", timeout=5).headers["ETag"]
        with hostile_polls(pki, home, etag, 100) as answers:
            time.sleep(3)  # every poll sent; the admitted ones are waiting
            loaded = latencies(admin, url, 10)
        idle_p50, loaded_p50 = statistics.median(idle), statistics.median(loaded)
        print(
            f"admin GET /v1/participants: idle p50 {idle_p50 * 1000:.1f} ms, under 100 "
            f"polls p50 {loaded_p50 * 1000:.1f} ms, max {max(loaded) * 1000:.1f} ms; "
            f"poll answers {dict(answers)}"
        )
        assert loaded_p50 < max(5 * idle_p50, 0.5), (idle, loaded)
        assert max(loaded) < 3.0, loaded
        assert answers[429] > 0, answers  # the polls beyond relay-1's share were refused


def waiting(home, session) -> int:
    text = session.get(f"{home.url}/metrics", timeout=5).text
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "dmr_home_sync_waiters"
        )
    )


def test_a_relay_over_its_poll_cap_gets_429_and_its_agent_backs_off(tmp_path, pki):
    # One worker of 16 threads: 12 polls at most (3/4), for one certificate as for all.
    with running_home(tmp_path / "home", pki, workers=1, threads=16) as home:
        admin = as_(pki, "admin", "admin")
        etag = as_(pki, "relay", "relay-1").get(f"{home.url}/v1/sync", timeout=5).headers["ETag"]
        with hostile_polls(pki, home, etag, 12):
            deadline = time.monotonic() + 10
            while waiting(home, admin) < 12:
                assert time.monotonic() < deadline, "the 12 polls did not all wait"
                time.sleep(0.1)
            over = as_(pki, "relay", "relay-1").get(
                f"{home.url}/v1/sync",
                params={"wait": POLL_WAIT},
                headers={"If-None-Match": etag},
                timeout=POLL_WAIT + 5,
            )
            assert_problem(over, 429, "sync-polls-per-caller")
            assert int(over.headers["Retry-After"]) > 0
            other = as_(pki, "relay", "relay-2").get(
                f"{home.url}/v1/sync",
                params={"wait": POLL_WAIT},
                headers={"If-None-Match": etag},
                timeout=POLL_WAIT + 5,
            )
            assert other.status_code == 503, other.text
            assert other.json()["type"] == "urn:dmr:problem:sync-polls-busy"
            # relay-1's own agent, told so, waits as long as home asks.
            cfg = relay_config(pki, tmp_path / "relay", home_url=f"{home.url}/v1")
            agent = Agent(cfg, RelayMetrics())
            agent.poll_once()  # its first document: no wait, not capped
            with pytest.raises(HomeRefused) as busy:
                agent.poll_once()
            assert busy.value.retry_after == int(over.headers["Retry-After"])
            started = time.monotonic()
            assert admin.get(f"{home.url}/v1/participants", timeout=5).status_code == 200
            assert time.monotonic() - started < 1.0


def test_one_relay_certificate_beats_under_at_most_32_names(tmp_path, pki):
    with running_home(tmp_path / "home", pki, workers=1, threads=4) as home:
        relay = as_(pki, "relay", "relay-2")
        for n in range(32):
            resp = relay.post(
                f"{home.url}/v1/heartbeats", json=beat(f"relay-2.flood-{n:02}"), timeout=5
            )
            assert resp.status_code == 200, resp.text
        resp = relay.post(f"{home.url}/v1/heartbeats", json=beat("relay-2.flood-32"), timeout=5)
        assert_problem(resp, 409, "instance-limit")


def test_dmr_instances_forget_removes_one(tmp_path, pki, monkeypatch, capsys):
    with running_home(tmp_path / "home", pki, workers=1, threads=4) as home:
        relay = as_(pki, "relay", "relay-1")
        for name in ("relay-1.gone", "relay-1.kept"):
            relay.post(f"{home.url}/v1/heartbeats", json=beat(name), timeout=5).raise_for_status()
        # The CLI as an operator runs it, with the admin certificate, straight to the gate.
        for name, value in [
            ("DMR_HOME_URL", f"{home.url}/v1"),
            ("DMR_CLIENT_CERT", pki.cert("admin", "admin")),
            ("DMR_CLIENT_KEY", pki.key("admin", "admin")),
            ("DMR_CA", pki.ca),
        ]:
            monkeypatch.setenv(name, str(value))
        capsys.readouterr()
        assert cli.main(["instances", "forget", "relay-1.gone"]) == 0
        assert "relay-1.gone" in capsys.readouterr().out
        assert cli.main(["instances"]) == 0
        listed = capsys.readouterr().out
        assert "relay-1.kept" in listed and "relay-1.gone" not in listed
        assert cli.main(["instances", "forget", "relay-1.gone"]) != 0
        assert "no instance 'relay-1.gone'" in capsys.readouterr().err


def test_an_instance_down_past_forget_after_leaves_the_alert_metric(tmp_path, pki):
    rules = dataclasses.replace(Heartbeats(), stale_after=1, down_after=2, forget_after=4)
    with running_home(tmp_path / "home", pki, workers=1, threads=4, heartbeats=rules) as home:
        as_(pki, "relay", "relay-1").post(
            f"{home.url}/v1/heartbeats", json=beat("relay-1.gone"), timeout=5
        ).raise_for_status()
        admin = as_(pki, "admin", "admin")

        def down() -> float:
            text = admin.get(f"{home.url}/metrics", timeout=5).text
            return next(
                s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "dmr_home_instances" and s.labels["health"] == "down"
            )

        time.sleep(2.5)
        assert down() == 1  # DmrRelayHeartbeatsStopped would fire
        time.sleep(2.0)
        assert down() == 0
        assert admin.get(f"{home.url}/v1/instances", timeout=5).json()["instances"] == []
