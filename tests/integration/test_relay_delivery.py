"""Delivery against a real HTTPS recipient: outcomes, headers, TLS both ways, fan-out."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from dmr_appliance import config, envelope
from dmr_appliance import pki as pki_mod
from dmr_appliance.errors import Unavailable
from dmr_appliance.local.recipient import RecipientServer
from dmr_appliance.relay.delivery import Deliverer, Recipient
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED
from tests.support.processes import free_port
from tests.support.recipient import received, recipient_thread
from tests.support.relay_kit import HomeSigner, message, relay_config


@pytest.fixture(scope="module")
def signer() -> HomeSigner:
    return HomeSigner()


@pytest.fixture
def cfg(pki, tmp_path) -> config.RelayConfig:
    return relay_config(pki, tmp_path)


@pytest.fixture
def deliverer(cfg):
    d = Deliverer.from_config(cfg)
    yield d
    d.close()


@pytest.fixture
def log(tmp_path):
    return tmp_path / "received.jsonl"


def envelope_for(signer: HomeSigner, ids: list[str]) -> envelope.Envelope:
    cards = [signer.card(i, f"https://127.0.0.1:1/{i}") for i in ids]
    return envelope.parse_envelope(json.dumps(message(cards)).encode())


def test_delivers_with_headers_body_and_the_relay_certificate(pki, deliverer, signer, log):
    msg = envelope_for(signer, ["bob"])
    with recipient_thread(pki, log) as server:
        url = f"https://127.0.0.1:{server.port}/inbox/bob"
        [outcome] = deliverer.deliver(msg, [Recipient("bob", url)], "req-1")
    assert (outcome.to, outcome.outcome, outcome.status) == ("bob", DELIVERED, 200)
    [got] = received(log)
    assert got["id"] == msg.id and got["room"] == "ops" and got["from"] == "alice"
    assert got["to"] == ["bob"]  # the delivered body names the recipient, not its card
    assert got["request_id"] == "req-1" and got["path"] == "/inbox/bob"
    assert got["relay"] == "relay-1"  # the relay presented its own certificate


@pytest.mark.parametrize(("status", "outcome"), [(400, REJECTED), (429, FAILED), (500, FAILED)])
def test_the_recipients_answer_decides_the_outcome(pki, deliverer, signer, log, status, outcome):
    with recipient_thread(pki, log, status=status) as server:
        url = f"https://127.0.0.1:{server.port}/"
        [result] = deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
    assert (result.outcome, result.status) == (outcome, status)


def test_connection_refused_is_failed_without_status(deliverer, signer):
    url = f"https://127.0.0.1:{free_port()}/"
    [result] = deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
    assert (result.outcome, result.status) == (FAILED, None)
    assert result.error


def test_a_slow_recipient_times_out_as_failed(pki, cfg, signer, log):
    slow = dataclasses.replace(cfg, delivery=dataclasses.replace(cfg.delivery, read_timeout=0.3))
    deliverer = Deliverer.from_config(slow)
    with recipient_thread(pki, log, delay=1.0) as server:
        url = f"https://127.0.0.1:{server.port}/"
        [result] = deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
    assert (result.outcome, result.status) == (FAILED, None)
    assert result.ms < 900


def test_a_recipient_from_another_ca_is_not_trusted(pki, fresh_pki, deliverer, signer, log):
    # fresh_pki has its own CA: its "recipient" certificate does not chain to ours.
    with recipient_thread(fresh_pki, log) as server:
        url = f"https://127.0.0.1:{server.port}/"
        [result] = deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
    assert (result.outcome, result.status) == (FAILED, None)
    assert "SSL" in result.error or "certificate" in result.error.lower()
    assert received(log) == []


def test_fan_out_is_concurrent(pki, deliverer, signer, log):
    ids = [f"r{i}" for i in range(6)]
    with recipient_thread(pki, log, delay=0.5) as server:
        recipients = [Recipient(i, f"https://127.0.0.1:{server.port}/{i}") for i in ids]
        started = time.monotonic()
        outcomes = deliverer.deliver(envelope_for(signer, ids), recipients, "r")
        elapsed = time.monotonic() - started
    assert [o.outcome for o in outcomes] == [DELIVERED] * 6
    assert [o.to for o in outcomes] == ids
    assert all(o.ms >= 500 for o in outcomes)
    assert elapsed < 1.5, f"6 recipients x 0.5 s took {elapsed:.2f} s: not concurrent"


def test_a_full_queue_refuses_before_sending_anything(pki, cfg, signer, log):
    deliverer = Deliverer(Deliverer.from_config(cfg).pool, threads=2, capacity=2)
    with recipient_thread(pki, log, delay=1.0) as server:
        recipients = [Recipient(i, f"https://127.0.0.1:{server.port}/") for i in ("a", "b", "c")]
        busy = threading.Thread(
            target=deliverer.deliver, args=(envelope_for(signer, ["a", "b"]), recipients[:2], "r")
        )
        busy.start()
        deadline = time.monotonic() + 5
        while deliverer.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(Unavailable) as err:
            deliverer.deliver(envelope_for(signer, ["c"]), recipients[2:], "r")
        assert (err.value.code, err.value.status) == ("overloaded", 503)
        busy.join(5)
        # The refused message was never sent; the slots come back once delivered.
        assert deliverer.in_flight == 0
        assert len(received(log)) == 2


def test_an_idle_relay_takes_a_message_larger_than_its_capacity(pki, cfg, signer, log):
    deliverer = Deliverer(Deliverer.from_config(cfg).pool, threads=2, capacity=2)
    with recipient_thread(pki, log) as server:
        ids = ["a", "b", "c"]
        recipients = [Recipient(i, f"https://127.0.0.1:{server.port}/{i}") for i in ids]
        outcomes = deliverer.deliver(envelope_for(signer, ids), recipients, "r")
    assert [o.outcome for o in outcomes] == [DELIVERED] * 3
    assert deliverer.in_flight == 0


def test_connections_are_kept_alive(pki, deliverer, signer, log):
    with recipient_thread(pki, log) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for _ in range(3):
            deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
        assert (deliverer.pool.opened, deliverer.pool.idle(url)) == (1, 1)


def test_a_recipient_certificate_for_another_name_is_not_trusted(fresh_pki, tmp_path, signer, log):
    pki_mod.issue(fresh_pki.dir, "server", "elsewhere", dns=("elsewhere.example",))
    deliverer = Deliverer.from_config(relay_config(fresh_pki, tmp_path))
    server = RecipientServer(
        ("127.0.0.1", 0),
        cert=fresh_pki.cert("server", "elsewhere"),
        key=fresh_pki.key("server", "elsewhere"),
        log_path=log,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.port}/"
        [result] = deliverer.deliver(envelope_for(signer, ["bob"]), [Recipient("bob", url)], "r")
    finally:
        server.shutdown()
        server.server_close()
    assert (result.outcome, result.status) == (FAILED, None)
    assert "127.0.0.1" in result.error, result.error  # the name check, not the chain
    assert received(log) == []
