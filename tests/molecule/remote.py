"""The hosts of a multi-host Molecule scenario as its testinfra tests reach them (the
site's and home_ha's): a command run there, a file put there, a transient unit started
there and waited on, a step's figures printed. Imported as ``remote`` by tests that put
tests/molecule on sys.path, as they do for ``helpers``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import helpers


def host(name: str):
    """The scenario's host NAME over Ansible (the inventory Molecule wrote)."""
    import testinfra

    return testinfra.get_host(f"ansible://{name}?ansible_inventory={helpers.INVENTORY}")


def ok(h, command: str, timeout: int = 120) -> str:
    """COMMAND's output on host H; fails the test, with both streams, on a non-zero exit."""
    done = h.run(f"timeout {timeout} {command}")
    assert done.rc == 0, f"{h.backend.host}: {command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def put(h, path: str, text: str) -> None:
    h.run(f"cat > {path} <<'DMR_EOF'\n{text}\nDMR_EOF")


def put_file(h, source: Path) -> str:
    """SOURCE (a file of the tests) copied to the host's /root; its path there."""
    put(h, f"/root/{source.name}", source.read_text())
    return f"/root/{source.name}"


def wait_until(check: Callable, timeout: float, what: str, every: float = 0.5):
    """CHECK's first true value within TIMEOUT seconds; fails the test naming WHAT."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(every)


def figures_of(scenario: str) -> Callable[..., None]:
    """figures(STEP, **values): prints "SCENARIO: STEP: {values}", one line a step, which
    scripts/molecule.sh shows with the scenario's result (molecule verify runs -s)."""

    def figures(step: str, **values) -> None:
        print(f"\n{scenario}: {step}: {json.dumps(values, sort_keys=True)}", flush=True)

    return figures


class Units:
    """Commands run as transient units PREFIX-NAME: they outlive the docker exec that
    starts them, and their end is a unit's state."""

    def __init__(self, prefix: str, timeout: float = 120) -> None:
        self.prefix, self.timeout = prefix, timeout

    def start(self, h, unit: str, command: str, *, clean: str, stdout: str = "") -> None:
        """COMMAND as PREFIX-UNIT, after removing CLEAN, the files of its last run; its
        output in STDOUT when given."""
        h.run(f"rm -f {clean}; systemctl reset-failed {self.prefix}-{unit} 2>/dev/null")
        to_file = f"--property StandardOutput=file:{stdout} " if stdout else ""
        ok(h, f"systemd-run --unit {self.prefix}-{unit} {to_file}{command}")

    def wait_done(self, h, unit: str, what: str, timeout: float | None = None) -> None:
        wait_until(
            lambda: h.service(f"{self.prefix}-{unit}").is_running is False,
            timeout or self.timeout,
            what,
        )
