"""The restore procedure of docs/operations.md on a real home under gunicorn, with the
`dmr` CLI as an operator runs it: back up while home serves, change something, stop home,
restore, start it: the change is gone, home serves, and a relay's agent that held the
lost home's newest document takes the restored home's (its sync version is above)."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from dmr_appliance import cli
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.metrics import RelayMetrics
from tests.support.home import router_session, running_home
from tests.support.identity import forwarded
from tests.support.relay_kit import relay_config

pytestmark = pytest.mark.slow


def add(admin, home, pid: str) -> None:
    admin.post(
        f"{home.url}/v1/participants",
        timeout=10,
        json={
            "id": pid,
            "endpoint": f"https://127.0.0.1:1/{pid}",
            "rooms": ["lobby"],
        },
    ).raise_for_status()


def listed(admin, home) -> list[str]:
    resp = admin.get(f"{home.url}/v1/participants", timeout=10)
    resp.raise_for_status()
    return [p["id"] for p in resp.json()["participants"]]


def agent_for(pki, tmp_path: Path, home) -> Agent:
    cfg = relay_config(pki, tmp_path / "relay", home_url=f"{home.url}/v1")
    cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, poll_wait=1))
    return Agent(cfg, RelayMetrics())


def test_backup_change_stop_restore_start(pki, tmp_path, capsys):
    state, backups = tmp_path / "home", tmp_path / "backups"
    admin = router_session(pki, forwarded(pki, "admin", "admin"))
    with running_home(state, pki, workers=2, threads=8) as home:
        add(admin, home, "alice")
        assert cli.main(["home", "backup", str(backups), "--config", str(home.config_path)]) == 0
        made = capsys.readouterr().out.strip()
        add(admin, home, "bob")  # after the backup: the restore loses it
        agent = agent_for(pki, tmp_path, home)
        assert agent.poll_once() is True
        held = agent.version  # the lost home's newest document: the relay's floor
        assert cli.main(["home", "restore", made, "--config", str(home.config_path)]) == 1
        assert capsys.readouterr().err.startswith("dmr: home is running: ")
        assert listed(admin, home) == ["alice", "bob"]

    assert cli.main(["home", "restore", made, "--config", str(home.config_path)]) == 0
    assert "sync version" in capsys.readouterr().out
    private = [state / "home.db", *(state / "keys").glob("*.pem"), *Path(made).rglob("*.*")]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    with running_home(state, pki, workers=2, threads=8) as home:
        assert listed(admin, home) == ["alice"]
        agent = agent_for(pki, tmp_path, home)  # restarted: the saved document is its floor
        assert agent.version == held
        assert agent.poll_once() is True, "the relay refused the restored home's document"
        assert agent.version > held
        add(admin, home, "carol")  # home serves writes too
        assert listed(admin, home) == ["alice", "carol"]
