"""The local stack: real home, relays, nginx and recipient as child processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dmr_appliance import config, pki, serving
from dmr_appliance.local.processes import group_alive
from dmr_appliance.local.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx]


def test_prepare_makes_pki_and_configs_that_load(tmp_path):
    stack = Stack(tmp_path / "state", relays=3)
    stack.prepare()
    for kind, name in [
        ("router", "router"),
        ("server", "home"),
        ("admin", "admin"),
        ("relay", "relay-3"),
        ("participant", "alice"),
    ]:
        cert, key = stack.cert(kind, name)
        issued = pki.load_certificate(cert.read_bytes())
        assert pki.certificate_kind(issued) == kind and pki.certificate_name(issued) == name
        assert key.stat().st_mode & 0o777 == 0o600
    home = config.load(config.HomeConfig, stack.config_dir / "home.toml")
    assert home.bind == f"127.0.0.1:{stack.ports['home']}"
    relay = config.load(config.RelayConfig, stack.config_dir / "relay-3.toml")
    assert relay.instance == "relay-3" and relay.home_url == stack.home_url
    router = config.load(config.RouterConfig, stack.config_dir / "router.toml")
    assert router.relays == [f"127.0.0.1:{stack.ports[n]}" for n in stack.relay_names]
    serving.test_config(stack.config_dir / "nginx.conf", router.prefix)
    assert len(set(stack.ports.values())) == len(stack.ports)
    # A second prepare keeps the PKI (same CA) and picks new ports.
    ca = stack.ca.read_bytes()
    stack.prepare()
    assert stack.ca.read_bytes() == ca


def test_stack_serves_through_the_router_and_stops_completely(tmp_path):
    stack = Stack(tmp_path / "state", relays=2, port=0)
    with stack:
        admin = stack.session()
        page = admin.get(stack.status_url, timeout=10)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        jwks = admin.get(stack.router_url + "/.well-known/jwks.json", timeout=10)
        assert jwks.status_code == 200 and jwks.json()["keys"]
        for name in stack.relay_names:
            assert admin.get(stack.relay_url(name) + "/readyz", timeout=5).ok
        groups = stack.process_groups()
        # home, relays, each with its gate; the router (nginx), the recipient; the router's
        # Prometheus exporter where Debian's package is installed (CI installs it)
        assert len(groups) == 2 * (stack.relay_count + 1) + 2 + (stack.exporter_url is not None)
        assert all(group_alive(g) for g in groups)
    assert not [g for g in groups if group_alive(g)], "a process of the stack was left behind"
    assert not (stack.state_dir / "stack.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_dmr_up_stops_everything_on_a_signal(tmp_path, sig):
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmr_appliance",
            "up",
            "--relays",
            "1",
            "--port",
            "0",
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
            assert time.monotonic() < deadline, "".join(output)
        else:
            pytest.fail("dmr up ended before it was running:\n" + "".join(output))
        pids = json.loads((state / "stack.json").read_text())
        groups = [pid for pid in pids.values() if pid]
        exporter = shutil.which("prometheus-nginx-exporter") is not None
        assert len(groups) == 6 + exporter and all(group_alive(g) for g in groups)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
        assert proc.returncode == 0, "".join(output)
        assert "every process has exited" in rest
        assert not [g for g in groups if group_alive(g)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.once
def test_processes_left_by_a_killed_dmr_up_are_reaped_on_the_next_start(tmp_path):
    state = tmp_path / "state"
    first = Stack(state, relays=1, port=0).start()
    groups = first.process_groups()
    # As if `dmr up` had been SIGKILLed: its children keep running, stack.json stays.
    assert (state / "stack.json").exists()
    second = Stack(state, relays=1, port=0)
    try:
        second.start()
        assert not [g for g in groups if group_alive(g)]
    finally:
        second.stop()
        first.stop()  # nothing left to stop, but closes its handles
    assert os.path.exists(state / "pki" / "ca.pem")
