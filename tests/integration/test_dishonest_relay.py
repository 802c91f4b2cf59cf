"""A dishonest relay cannot pass off what it did: every misbehaviour is detected.

The local stack (home, router, one relay, the demo recipient) with two changes: the
relay's gunicorn serves ``tests/support/dishonest_relay.py`` (the real relay app in a
wrapper that misbehaves as ``control/mode`` says, re-read per request), behind the
relay's real gate; the demo recipient is ``dmr recipient --require-signatures`` (the
recipient library: signatures verified, receipts signed). Messages are real sends of the
Sender (signing, checking receipts). Per misbehaviour, either the recipient refuses the
delivery (422 with the signature code; recorded as refused, never processed) or the
sender marks the outcome failed with ``receipt refused`` and reports it to home.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_appliance import config, metrics, serving
from dmr_appliance import pki as pki_mod
from dmr_appliance.client.result import SendResult
from dmr_appliance.local.stack import Stack
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED
from dmr_appliance.wire.retry import RetryPolicy
from tests.support.dishonest_relay import CONTROL
from tests.support.processes import Process, free_port
from tests.support.recipient import received
from tests.support.stack_kit import ensure_participant, failure_at_home, sender

ROOM = "ops"
ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=1, rooms={ROOM: ("alice", "bob", "carol")}),
]


@dataclass
class Rig:
    stack: Stack
    control: Path
    log: Path  # the recipient's records

    def mode(self, mode: str) -> None:
        (self.control / "mode").write_text(mode)

    def send(self, to: list[str], payload: object = None, policy: RetryPolicy = FAST) -> SendResult:
        crl = pki_mod.paths(self.stack.pki_dir).crl
        with sender(self.stack, policy=policy, crl=crl) as s:
            return s.send(ROOM, to, payload if payload is not None else {"n": 1})

    def records(self, message_id: str) -> list[dict]:
        return [r for r in received(self.log) if r["id"] == message_id]

    def replayed(self) -> list[dict]:
        path = self.control / "replayed.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@contextmanager
def dishonest_relay(stack: Stack, control: Path, logs: Path) -> Iterator[None]:
    """The stack's relay's gunicorn replaced by one serving the dishonest wrapper: same
    config, socket, gunicorn settings and gate; only the WSGI app differs."""
    name = stack.relay_names[0]
    conf = stack.config_dir / f"{name}.toml"
    cfg = config.load(config.RelayConfig, conf)
    stack.stop_service(name)
    argv = serving.gunicorn_argv(
        "tests.support.dishonest_relay:app",
        socket=cfg.gate.socket,
        workers=1,
        threads=cfg.threads,
        name=f"dmr-relay-dishonest-{name}",
        conf_module=serving.APP_SERVICES["relay"].conf,
    )
    env = {
        **metrics.prepare_directory(metrics.directory(cfg.gate.socket)),
        "DMR_CONFIG": str(conf),
        CONTROL: str(control),
        "PYTHONPATH": str(ROOT),
    }
    process = Process(argv, env=env, log_path=logs / "dishonest-relay.log", cwd=ROOT).start()
    try:
        with stack.session() as session:
            url = stack.relay_url(name) + "/readyz"
            process.wait_ready(lambda: session.get(url, timeout=2).ok, timeout=60)
        yield
    finally:
        process.stop()


@contextmanager
def strict_recipient(stack: Stack, log: Path, logs: Path) -> Iterator[None]:
    """The stack's demo recipient, on its port, requiring signatures."""
    stack.stop_service("recipient")
    cert, key = stack.cert("server", "recipient")
    argv = [sys.executable, "-m", "dmr_appliance", "recipient",
            "--bind", f"127.0.0.1:{stack.ports['recipient']}", "--cert", str(cert),
            "--key", str(key), "--ca", str(stack.ca),
            "--crl", str(pki_mod.paths(stack.pki_dir).crl), "--log", str(log),
            "--require-signatures"]  # fmt: skip
    process = Process(argv, log_path=logs / "recipient.out").start()
    try:
        process.wait_ready(lambda: bool(process.logs().strip()), timeout=20)
        yield
    finally:
        process.stop()


@pytest.fixture(scope="module")
def rig(stack: Stack, tmp_path_factory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("dishonest")
    control = tmp / "control"
    control.mkdir()
    # dave's endpoint: nothing listens there, every delivery to dave fails
    ensure_participant(stack, "dave", f"https://localhost:{free_port()}/inbox/dave", [ROOM])
    with dishonest_relay(stack, control, tmp), strict_recipient(stack, tmp / "log.jsonl", tmp):
        yield Rig(stack, control, tmp / "log.jsonl")


@pytest.fixture
def relay(rig: Rig) -> Iterator[Rig]:
    rig.mode("honest")
    yield rig
    rig.mode("honest")


def assert_refused(rig: Rig, message_id: str, code: str, path: str = "/inbox/bob") -> None:
    """The recipient refused every copy with ``code`` and processed none."""
    records = rig.records(message_id)
    assert records, f"the recipient never saw {message_id}"
    for record in records:
        assert (record["status"], record["code"]) == (422, code), record
        assert record["signature"] == "refused" and not record["receipt"]
        assert record["path"] == path


def test_an_honest_relay_delivers_with_a_receipt(relay):
    result = relay.send(["bob"])
    assert result.ok and result.signed, result.to_json()
    assert result.recipients["bob"].receipt is not None  # verified by the sender
    [record] = relay.records(result.message_id)
    assert (record["status"], record["signature"], record["receipt"]) == (200, "verified", True)


def test_an_altered_payload_is_refused_by_the_recipient(relay):
    relay.mode("alter-payload")
    result = relay.send(["bob"], {"pay": 10})
    assert result.recipients["bob"].outcome == REJECTED
    assert result.recipients["bob"].status == 422
    assert_refused(relay, result.message_id, "signature-invalid")


def test_a_swapped_recipient_refuses_what_was_not_signed_for_it(relay):
    seeded = relay.send(["carol"])  # the relay captures carol's card
    assert seeded.ok
    relay.mode("swap-recipient")
    result = relay.send(["bob"])
    assert "bob" not in result.delivered, result.to_json()
    # delivered to carol instead: she refuses a message signed for bob only
    assert_refused(relay, result.message_id, "signature-recipient", path="/inbox/carol")


def test_a_replay_under_a_new_id_is_refused(relay):
    first = relay.send(["bob"])
    assert first.ok
    relay.mode("replay")
    second = relay.send(["bob"])
    assert second.ok  # the genuine message still goes through
    replayed = relay.replayed()[-1]
    assert replayed["id"] not in (first.message_id, second.message_id)
    assert replayed["signature"] == first.envelope["signature"]
    assert_refused(relay, replayed["id"], "signature-invalid")
    assert len(relay.records(first.message_id)) == 1  # processed once, when genuine


def test_a_dropped_signature_is_refused_by_a_recipient_requiring_one(relay):
    relay.mode("drop-signature")
    result = relay.send(["bob"])
    assert result.recipients["bob"].outcome == REJECTED
    records = relay.records(result.message_id)
    assert records and all(r["code"] == "signature-missing" for r in records), records
    assert all(r["status"] == 422 and not r["signed"] for r in records)


def test_a_dropped_signature_in_a_signed_room_is_refused_by_the_relay(relay):
    admin = relay.stack.admin_client()
    admin.set_room_signed(ROOM, True)
    try:
        relay.mode("drop-signature")
        result = relay.send(["bob"])  # a new Sender: a new token, which says the room is signed
    finally:
        admin.set_room_signed(ROOM, False)
    assert result.recipients["bob"].outcome != DELIVERED
    assert result.recipients["bob"].status == 403, result.to_json()
    assert "signature-required" in json.dumps(result.to_json())
    assert relay.records(result.message_id) == []  # refused before any delivery


@pytest.mark.parametrize(
    ("mode", "code"),
    [("forge-receipt", "receipt-cert-kind"), ("forge-receipt-digest", "receipt-invalid")],
)
def test_a_forged_receipt_fails_the_delivery_at_the_sender(relay, mode, code):
    relay.mode(mode)
    result = relay.send(["bob"])
    bob = result.recipients["bob"]
    assert bob.outcome == FAILED and bob.receipt is None
    assert bob.reason.startswith(f"receipt refused: {code}"), bob.reason
    assert result.reported and failure_at_home(relay.stack, result.message_id) is not None


def test_a_failed_delivery_passed_off_as_delivered_is_caught(relay):
    relay.mode("forge-delivered")
    # one try: the relay has bob's genuine receipt of the same message to pass off
    result = relay.send(["bob", "dave"], policy=RetryPolicy(attempts=1))
    assert result.recipients["bob"].outcome == DELIVERED  # bob's own receipt
    dave = result.recipients["dave"]
    # the relay said delivered (200) with bob's receipt: it names another recipient
    assert dave.outcome == FAILED and dave.status == 200, result.to_json()
    assert dave.reason.startswith("receipt refused: receipt-mismatch"), dave.reason
    report = failure_at_home(relay.stack, result.message_id)
    assert report is not None and "dave" in json.dumps(report)


def test_a_failed_delivery_with_a_receipt_the_relay_signed_is_caught(relay):
    relay.mode("forge-delivered")
    result = relay.send(["dave"], policy=RetryPolicy(attempts=1))
    dave = result.recipients["dave"]
    assert dave.outcome == FAILED and dave.status == 200, result.to_json()
    assert dave.reason.startswith("receipt refused: receipt-cert-kind"), dave.reason
    assert result.reported
