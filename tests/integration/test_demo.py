"""``dmr demo`` end to end, as the README runs it: a subprocess, its last stdout line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx, pytest.mark.once]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes that name ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_demo_accounts_for_every_message_and_leaves_nothing_running(tmp_path):
    state = tmp_path / "state"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmr_appliance",
            "demo",
            "--json",
            "--messages",
            "60",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tally = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tally["unaccounted"] == 0, tally
    assert tally["sent"] == tally["delivered"] + tally["refused"] + tally["reported_failed"]
    assert tally["sent"] >= 61  # the batch, then mallory's messages around her revocation
    assert tally["processed_twice"] == 0
    delivered = tally["delivered"]
    assert tally["signed"] == tally["signature_verified"] == delivered, tally
    assert tally["receipts_verified"] == delivered, tally
    assert tally["tampered_refused"] and tally["tampered_code"] == "signature-invalid", tally
    assert tally["refused"] >= 1 and "403 sender-revoked" in tally["refusal_reasons"]
    assert tally["revocation_ms"] is not None and tally["revocation_ms"] <= 1000
    assert tally["relay_killed"] == "relay-1" and tally["relay_back_after_s"] is not None
    # stdout is the demo; the services' logs are in the state dir.
    assert '"event"' not in proc.stdout
    assert (state / "logs" / "relay-1.log").stat().st_size > 0
    assert (state / "logs" / "demo.log").stat().st_size > 0
    assert "sent 60/60" in proc.stderr  # not a terminal: a progress line every ~10 %
    assert not processes_mentioning(str(state)), "a process of the stack was left behind"

    # dmr trace on one of the demo's messages: the sender's, the router's, the relay's and
    # the recipient's lines about it, in time order.
    received = [
        json.loads(x) for x in (state / "recipient" / "deliveries.jsonl").read_text().splitlines()
    ]
    message_id = received[-1]["id"]
    traced = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmr_appliance",
            "trace",
            message_id,
            "--state-dir",
            str(state),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert traced.returncode == 0, traced.stderr
    entries = [json.loads(x) for x in traced.stdout.splitlines()]
    seen = {(e["component"].split("-")[0], e["event"]) for e in entries}
    assert {
        ("demo", "send.attempt"),
        ("router", "router.access"),
        ("relay", "response"),  # the relay's one line per message
        ("relay", "relay.gate"),
        ("recipient", "received"),
    } <= seen, seen
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    table = subprocess.run(
        [sys.executable, "-m", "dmr_appliance", "trace", message_id, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and len(table.stdout.splitlines()) == len(entries) + 1
