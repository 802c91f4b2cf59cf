"""`dmr receipts verify FILE --ca CA [--crl CRL]` (issue 26): a proof bundle that `dmr
send --proof` wrote, checked offline; every alteration refused with its reason (exit 1),
a file that is no bundle one line with the fix (exit 2), never a traceback."""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import subprocess
import sys

import pytest

from dmr_appliance import pki as pki_mod
from dmr_appliance.cli import main
from tests.support.doc_blocks import blocks_for
from tests.support.sender_kit import ROUTER, cli_sender, sender_kit

HERE = "tests/unit/test_cli_receipts.py"


def send_with_proof(tmp_path, pki, monkeypatch, *to: str) -> dict:
    """The bundle ``dmr send --proof`` writes for a message from alice to ``to``."""
    cli_sender(sender_kit(tmp_path / "home", pki), monkeypatch)
    proof = tmp_path / "sent.json"
    argv = ["send", "--pki", str(pki.dir), "--as", "alice", "--router", ROUTER, "--room", "ops"]
    for pid in to:
        argv += ["--to", pid]
    assert main([*argv, "--data", '{"text": "hi"}', "--proof", str(proof)]) == 0
    return json.loads(proof.read_text())


@pytest.fixture
def bundle(tmp_path, pki, monkeypatch) -> dict:
    return send_with_proof(tmp_path, pki, monkeypatch, "bob", "carol")


@pytest.fixture
def verify(tmp_path, pki, capsys):
    def run(doc, *options: str, code: int, ca=None) -> str:
        path = tmp_path / "bundle.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        capsys.readouterr()
        argv = ["receipts", "verify", str(path), "--ca", str(ca or pki.ca), *options]
        assert main(argv) == code
        out = capsys.readouterr()
        return out.out if code != 2 else out.err

    return run


def test_a_good_bundle_verifies(bundle, verify, pki):
    out = verify(bundle, "--crl", str(pki.crl), code=0)
    lines = out.splitlines()
    assert "from alice in ops: signature verified (to bob, carol)" in lines[0]
    assert "bob" in lines[1] and "https://localhost:9443/inbox/bob" in lines[1]
    assert "verified, signed by recipient" in lines[1] and "received 20" in lines[1]
    assert lines[-1] == "2 of 2 receipt(s) verified"
    doc = json.loads(verify(bundle, "--json", code=0))
    assert doc["ok"] and doc["message"]["verified"]
    assert [r["to"] for r in doc["receipts"]] == ["bob", "carol"]


def test_an_altered_message_is_refused(bundle, verify):
    bundle["message"]["payload"] = {"text": "pay 1000"}
    out = verify(bundle, code=1)
    assert "signature REFUSED: signature-invalid" in out.splitlines()[0]
    assert out.count("REFUSED: signature-invalid") == 3  # the message, and for each receipt


def _altered(token: str, **claims: str) -> str:
    head, payload, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(claims)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return ".".join([head, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), sig])


def test_an_altered_receipt_is_refused(bundle, verify):
    # Backdated to when the message was made: within every validity, but not what was signed.
    made = bundle["message"]["created_at"]
    bundle["receipts"][0] = _altered(bundle["receipts"][0], received_at=made)
    out = verify(bundle, code=1)
    assert "signature verified" in out.splitlines()[0]  # the message itself is intact
    assert "REFUSED: receipt-invalid" in out.splitlines()[1]
    assert "verified, signed by recipient" in out.splitlines()[2]
    assert out.splitlines()[-1] == "1 of 2 receipt(s) verified"


def test_a_receipt_for_another_message_is_refused(bundle, verify, tmp_path, pki, monkeypatch):
    other = send_with_proof(tmp_path / "other", pki, monkeypatch, "bob")
    bundle["receipts"] = other["receipts"]
    out = verify(bundle, code=1)
    assert "REFUSED: receipt-mismatch: the receipt names id" in out


def test_a_bundle_under_another_ca_is_refused(bundle, verify, fresh_pki):
    out = verify(bundle, code=1, ca=fresh_pki.ca)
    assert "signature REFUSED: signature-cert-untrusted" in out
    assert out.count("cert-untrusted") == 3


def test_a_receipt_by_a_revoked_certificate_is_refused(tmp_path, fresh_pki, monkeypatch, verify):
    bundle = send_with_proof(tmp_path, fresh_pki, monkeypatch, "bob")
    pki_mod.revoke(fresh_pki.dir, "server", "recipient")
    out = verify(bundle, "--crl", str(fresh_pki.crl), code=1, ca=fresh_pki.ca)
    assert "REFUSED: receipt-cert-revoked" in out
    assert verify(bundle, code=0, ca=fresh_pki.ca)  # without the CRL it is not known


def test_a_bundle_without_receipts_proves_no_delivery(bundle, verify):
    out = verify({**bundle, "receipts": []}, code=1)
    assert "signature verified" in out and "no receipts" in out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("hello", "is not JSON; give the file 'dmr send --proof' wrote"),
        ('{"message": {}}', "is not a proof bundle"),
        ('{"message": [], "receipts": []}', "is not a proof bundle"),
        ('{"message": {}, "receipts": [1]}', "is not a proof bundle"),
    ],
)
def test_a_file_that_is_no_bundle_is_one_line(verify, content, said):
    err = verify(content, code=2)
    assert said in err and len(err.strip().splitlines()) == 1


def test_missing_files_and_a_bad_crl_are_one_line(verify, capsys, tmp_path, pki, fresh_pki):
    assert main(["receipts", "verify", str(tmp_path / "none.json"), "--ca", str(pki.ca)]) == 2
    assert "cannot read" in capsys.readouterr().err
    err = verify("{}", "--crl", str(pki.ca), code=2)
    assert "--crl" in err and "not a PEM CRL" in err
    err = verify("{}", "--crl", str(fresh_pki.crl), code=2)
    assert "not signed by the CA in --ca" in err
    err = verify("{}", code=2, ca=tmp_path / "no-ca.pem")
    assert "--ca" in err and len(err.strip().splitlines()) == 1


def test_garbage_receipts_are_refused_not_raised(bundle, verify):
    bundle["receipts"] = ["x", "a.b.c", "e30.e30.", "", "€" * 10]
    out = verify(bundle, code=1)
    assert out.count("REFUSED: receipt-") == 5


def test_the_documented_verify(bundle, tmp_path, pki):
    """docs/sender.md's `dmr receipts verify` block, run as an operator runs it."""
    name = "test_the_documented_verify"
    (block,) = blocks_for(f"{HERE}::{name}")
    work = tmp_path / "operator"
    (work / "pki").mkdir(parents=True)
    shutil.copy(pki.ca, work / "pki" / "ca.pem")
    shutil.copy(pki.crl, work / "pki" / "crl.pem")
    (work / "proof.json").write_text(json.dumps(bundle))
    commands = [line for line in block.text.splitlines() if line.startswith("dmr ")]
    assert commands
    for line in commands:
        argv = [sys.executable, "-m", "dmr_appliance", *shlex.split(line)[1:]]
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "2 of 2 receipt(s) verified" in done.stdout
