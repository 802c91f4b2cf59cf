"""What the roles' Molecule verifiers share: running a playbook again against the
scenario's own hosts (a check-mode pass, a bad input), from inside `molecule verify`.

Molecule gives the verifier its environment (ANSIBLE_CONFIG, ANSIBLE_ROLES_PATH,
MOLECULE_EPHEMERAL_DIRECTORY, MOLECULE_SCENARIO_DIRECTORY), so ansible-playbook here
sees the same inventory, group_vars and roles as converge did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", "."))
INVENTORY = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "inventory"
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def playbook(
    *args: str,
    playbook: str | Path | None = None,
    extra_vars: dict | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """ansible-playbook on the scenario's inventory (converge.yml unless named)."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), str(playbook or SCENARIO / "converge.yml")]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += list(args)
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="1")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def recap(proc: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    return {
        host: {
            "ok": int(ok),
            "changed": int(changed),
            "unreachable": int(unr),
            "failed": int(failed),
        }
        for host, ok, changed, unr, failed in RECAP.findall(proc.stdout)
    }


def assert_check_mode_clean() -> None:
    """--check --diff on the converged hosts: nothing would change, nothing fails."""
    proc = playbook("--check", "--diff")
    counts = recap(proc)
    assert proc.returncode == 0 and counts, f"check mode failed:\n{tail(proc)}"
    for host, count in counts.items():
        assert count["changed"] == 0 and count["failed"] == 0, (
            f"check mode on {host}: {count}\n{tail(proc)}"
        )


def assert_fails(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The play failed, and its output names every needle."""
    assert proc.returncode != 0, f"expected a failure:\n{tail(proc)}"
    text = proc.stdout + proc.stderr
    for needle in needles:
        assert needle in text, f"{needle!r} not in the failure:\n{tail(proc)}"


def tail(proc: subprocess.CompletedProcess, lines: int = 80) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-lines:])
