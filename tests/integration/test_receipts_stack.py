"""`dmr send --proof` through the real local stack (home, a relay, nginx, the demo
recipient answering with receipts), then `dmr receipts verify` on the bundle it wrote
(issue 26): the proof round trip with nothing faked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.stack_kit import dmr_send

ROOM = "ops"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=1, rooms={ROOM: ("alice", "bob")}),
]


def test_a_proof_kept_by_dmr_send_verifies_offline(stack, tmp_path):
    proof = tmp_path / "proof.json"
    done = dmr_send(
        stack, "--room", ROOM, "--to", "bob", "--data", '{"n": 1}', "--require-receipts",
        "--proof", str(proof), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["signed"] and result["outcomes"][0]["receipt"]["digest"] == result["digest"]
    pki = stack.pki_dir
    verify = [sys.executable, "-m", "dmr_appliance", "receipts", "verify", str(proof),
              "--ca", str(pki / "ca.pem"), "--crl", str(pki / "crl.pem")]  # fmt: skip
    checked = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 of 1 receipt(s) verified" in checked.stdout
    bundle = json.loads(proof.read_text())
    bundle["message"]["payload"] = {"n": 2}
    proof.write_text(json.dumps(bundle))
    checked = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 1 and "signature-invalid" in checked.stdout
