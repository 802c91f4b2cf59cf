"""Sender signatures and receipts (issue 26): the Sender against the real home in process
and a router whose recipients answer as told (tests/support/sender_kit.py)."""

from __future__ import annotations

import json

import pytest

from dmr_appliance.client import resend
from dmr_appliance.errors import EnvelopeError
from dmr_appliance.proof import signature
from dmr_appliance.proof.trust import Trust
from tests.support.sender_kit import ENDPOINTS, Recipient, card_claims, sender_kit


@pytest.fixture
def kit(tmp_path, pki):
    return sender_kit(tmp_path, pki)


def test_a_signed_message_is_posted_and_its_receipts_kept(kit, pki):
    with kit.sender() as sender:
        result = sender.send("ops", ["bob", "carol"], {"text": "hi", "n": 1.5})
    assert result.ok and result.signed
    (posted,) = kit.router.posted
    assert [card_claims(c)["sub"] for c in posted["to"]] == ["bob", "carol"]
    # The posted copy verifies as each recipient gets it, and names what the result says.
    mine = {**posted, "to": ["bob", "carol"]}
    verdict = signature.verify(mine, "bob", Trust.from_files(pki.ca))
    assert verdict.signed and verdict.digest == result.digest == signature.signed_digest(mine)
    for pid in ("bob", "carol"):
        kept = result.recipients[pid].receipt
        assert kept is not None and kept.recipient == pid and kept.endpoint == ENDPOINTS[pid]
        assert kept.digest == result.digest and kept.signer == "recipient"
    doc = result.to_json()
    assert doc["signed"] is True and doc["digest"] == result.digest
    assert doc["outcomes"][0]["receipt"]["to"] == "bob"
    assert result.envelope["signature"] == posted["signature"]


@pytest.mark.parametrize(
    ("forgery", "code"),
    [
        (Recipient(signer=("relay", "relay-1")), "receipt-cert-kind"),
        (Recipient(digest="sha-256:" + "A" * 43), "receipt-mismatch"),
        (Recipient(signer=("participant", "carol")), "receipt-cert-kind"),
        (Recipient(endpoint="https://localhost:9443/inbox/carol"), "receipt-mismatch"),
    ],
)
def test_a_forged_receipt_fails_the_delivery_and_is_retried(kit, forgery, code):
    # The relay forges bob's first receipt; the second try gets the real one.
    kit.router.recipients["bob"] = lambda tries: forgery if tries == 1 else Recipient()
    with kit.sender() as sender:
        result = sender.send("ops", ["bob", "carol"], {"n": 1})
    assert result.ok and result.recipients["bob"].attempts == 2
    assert result.recipients["carol"].attempts == 1  # delivered with its receipt at once
    first = result.attempts[0]
    assert first.outcome == "failed" and f"bob: receipt refused: {code}" in first.detail
    assert [card_claims(c)["sub"] for c in kit.router.posted[1]["to"]] == ["bob"]
    assert kit.router.posted[1]["signature"] == kit.router.posted[0]["signature"]


def test_a_receipt_refused_every_time_is_a_reported_failure(kit):
    kit.router.recipients["bob"] = lambda tries: Recipient(signer=("relay", "relay-1"))
    with kit.sender() as sender:
        result = sender.send("ops", ["bob"], {"n": 1})
    bob = result.recipients["bob"]
    assert result.failed == ["bob"] and bob.receipt is None and bob.attempts == 2
    assert bob.reason.startswith("receipt refused: receipt-cert-kind: ")
    assert result.reported
    listed = kit.home_client.get_failure(result.message_id)
    assert listed["envelope"]["signature"] == result.envelope["signature"]  # home took it


def test_a_receipt_by_a_server_not_at_the_cards_endpoint_is_refused(kit):
    # dave's card names dave.example; the receipt's certificate names localhost only.
    with kit.sender() as sender:
        result = sender.send("ops", ["dave"], {"n": 1})
    dave = result.recipients["dave"]
    assert result.failed == ["dave"] and dave.attempts == 2
    assert dave.reason.startswith("receipt refused: receipt-endpoint-host: ")
    assert "dave.example" in dave.reason


@pytest.mark.parametrize("required", [False, True])
def test_a_missing_receipt_fails_only_when_required(kit, required):
    kit.router.recipients["bob"] = lambda tries: Recipient(receipt=False)
    with kit.sender(require_receipts=required) as sender:
        result = sender.send("ops", ["bob", "carol"], {"n": 1})
    bob = result.recipients["bob"]
    assert bob.receipt is None and result.recipients["carol"].receipt is not None
    if required:
        assert bob.outcome == "failed" and bob.reason == "no receipt from the recipient"
        assert bob.attempts == 2 and result.reported
    else:
        assert result.ok and bob.attempts == 1


def test_sign_false_posts_an_unsigned_v1_message(kit):
    with kit.sender(sign=False) as sender:
        result = sender.send("ops", ["bob"], {"n": 1})
    (posted,) = kit.router.posted
    assert "signature" not in posted and result.ok
    assert not result.signed and result.digest is None and result.envelope is None
    assert result.recipients["bob"].receipt is None
    doc = result.to_json()
    assert doc["signed"] is False and doc["outcomes"][0]["receipt"] is None


def test_a_payload_with_no_canonical_form_is_refused_before_sending(kit):
    with kit.sender() as sender:
        with pytest.raises(EnvelopeError) as caught:
            sender.send("ops", ["bob"], {"n": 2**60})
        assert caught.value.code == "envelope-unsignable" and caught.value.status == 422
        assert "as strings" in caught.value.detail and "sign=False" in caught.value.detail
        assert kit.router.posted == []
        with kit.sender(sign=False) as unsigned:  # unsigned, it goes as before
            assert unsigned.send("ops", ["bob"], {"n": 2**60}).ok


def test_retry_failed_resends_a_signed_failure_signed_again(kit):
    kit.router.recipients["bob"] = lambda tries: Recipient(status=503)
    with kit.sender() as sender:
        first = sender.send("ops", ["bob"], {"n": 1})
        assert first.failed == ["bob"] and first.reported
        kit.router.recipients.clear()
        (again,) = resend.retry_failed(sender)
    assert again.ok and again.resolved and again.message_id == first.message_id
    assert again.recipients["bob"].receipt is not None
    assert json.loads(json.dumps(again.to_json()))["resent"] is True
