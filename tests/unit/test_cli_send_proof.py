"""`dmr send` signs by default, says per recipient whether a receipt verified, keeps a
proof bundle with --proof; --no-sign sends as before (issue 26). Run in process, its
Sender made through tests/support/sender_kit.py (the real home, a programmable router)."""

from __future__ import annotations

import json

import pytest

from dmr_appliance.cli import main
from dmr_appliance.proof import signature
from tests.support.sender_kit import ROUTER, Recipient, cli_sender, sender_kit


@pytest.fixture
def send(tmp_path, pki, monkeypatch, capsys):
    kit = sender_kit(tmp_path / "home", pki)
    made = cli_sender(kit, monkeypatch)

    def run(*argv: str, code: int = 0):
        capsys.readouterr()
        common = ["send", "--pki", str(pki.dir), "--as", "alice", "--router", ROUTER]
        assert main([*common, "--room", "ops", *argv]) == code
        out = capsys.readouterr()
        return out.out, out.err

    run.kit, run.made = kit, made
    return run


def test_signed_by_default_with_receipts_shown_and_kept(send, pki, tmp_path):
    proof = tmp_path / "proof.json"
    out, err = send("--to", "bob", "--to", "carol", "--data", '{"n": 1}', "--proof", str(proof))
    assert send.made[0]["sign"] is True and send.made[0]["crl"] == pki.crl  # PKI's own CRL
    assert out.count("receipt verified (recipient)") == 2
    assert f"proof in {proof} (2 receipt(s))" in err
    bundle = json.loads(proof.read_text())
    assert bundle["message"]["to"] == ["bob", "carol"]  # ids, not cards
    assert bundle["message"]["signature"] == send.kit.router.posted[0]["signature"]
    assert len(bundle["receipts"]) == 2
    assert not list(tmp_path.glob(".proof.json.*"))  # written atomically: no temp left


def test_json_shows_each_receipt_and_the_digest(send):
    out, _ = send("--to", "bob", "--data", "1", "--json")
    doc = json.loads(out)
    assert doc["signed"] is True
    assert doc["digest"] == signature.signed_digest({**send.kit.router.posted[0], "to": ["bob"]})
    assert doc["outcomes"][0]["receipt"]["digest"] == doc["digest"]


def test_no_receipt_is_said_and_fails_with_require_receipts(send):
    send.kit.router.recipients["bob"] = lambda tries: Recipient(receipt=False)
    out, _ = send("--to", "bob", "--data", "1")
    assert "delivered" in out and "no receipt" in out
    out, _ = send("--to", "bob", "--data", "1", "--require-receipts", code=1)
    assert "failed" in out and "no receipt from the recipient" in out
    assert send.made[-1]["require_receipts"] is True


def test_a_refused_receipt_is_a_failure_on_its_line(send):
    send.kit.router.recipients["bob"] = lambda tries: Recipient(signer=("relay", "relay-1"))
    out, _ = send("--to", "bob", "--data", "1", code=1)
    assert "receipt refused: receipt-cert-kind" in out and "failure reported to home" in out


def test_no_sign_sends_unsigned_as_before(send):
    out, _ = send("--to", "bob", "--data", "1", "--no-sign")
    assert "signature" not in send.kit.router.posted[0] and send.made[0]["sign"] is False
    assert "receipt" not in out  # the v1 output, unchanged
    out, _ = send("--to", "bob", "--data", "1", "--no-sign", "--json")
    assert json.loads(out)["signed"] is False


def test_an_unsignable_payload_is_refused_with_the_fix(send):
    out, _ = send("--to", "bob", "--data", str(2**60), code=1)
    assert "envelope-unsignable" in out and "--no-sign" in out
    assert send.kit.router.posted == []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--to", "bob", "--data", "1", "--no-sign", "--proof", "p.json"], "drop --no-sign"),
        (["--to", "bob", "--data", "1", "--no-sign", "--require-receipts"], "drop --no-sign"),
        (["--batch", "-", "--proof", "p.json"], "not with --batch"),
        (["--to", "bob", "--data", "1", "--crl", "/nonexistent/crl.pem"], "crl.pem does not"),
    ],
)
def test_proof_options_that_do_not_go_together_are_usage_errors(send, argv, said):
    _, err = send(*argv, code=2)
    assert said in err and len(err.strip().splitlines()) == 1
