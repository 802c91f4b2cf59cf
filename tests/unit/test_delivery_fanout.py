"""relay/delivery.py and relay/fanout.py on loopback TLS: a message to several recipients
is delivered on the caller's thread, each recipient with its own outcome, in order, when
others are slow, dead, malformed or refused; 50 recipients at once; connections made
concurrently and kept; no log line per recipient (the message's line lists them)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time

import pytest

from dmr_appliance import envelope
from dmr_appliance import pki as pki_mod
from dmr_appliance.relay import fanout
from dmr_appliance.relay.delivery import Deliverer, Recipient
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED
from tests.support.recipient import received, recipient_thread
from tests.support.relay_kit import HomeSigner, message, relay_config
from tests.unit.tls_peers import OK, answer, free_url, silent_peer, tls_peer


@pytest.fixture(scope="module")
def signer() -> HomeSigner:
    return HomeSigner()


def deliverer_for(pki, tmp_path, **delivery) -> Deliverer:
    cfg = relay_config(pki, tmp_path)
    return Deliverer.from_config(
        dataclasses.replace(cfg, delivery=dataclasses.replace(cfg.delivery, **delivery))
    )


@pytest.fixture
def deliverer(pki, tmp_path):
    made = deliverer_for(pki, tmp_path, connect_timeout=0.5, read_timeout=0.5)
    yield made
    made.close()


def envelope_for(signer: HomeSigner, ids: list[str]) -> envelope.Envelope:
    cards = [signer.card(i, f"https://127.0.0.1:1/{i}") for i in ids]
    return envelope.parse_envelope(json.dumps(message(cards)).encode())


def deliver(deliverer: Deliverer, signer: HomeSigner, urls: dict[str, str]) -> list:
    recipients = [Recipient(i, url) for i, url in urls.items()]
    return deliverer.deliver(envelope_for(signer, list(urls)), recipients, "req-1")


def test_each_recipient_has_its_own_outcome_in_order(pki, deliverer, signer):
    def trickle(conn, request):  # a byte every 0.1 s: past the 1 s deadline
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 30:
            conn.sendall(bytes([byte]))
            time.sleep(0.1)
        return True

    refusing = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    with (
        tls_peer(pki, answer(OK)) as fine,
        tls_peer(pki, trickle) as slow,
        tls_peer(pki, trickle) as slow_too,
        tls_peer(pki, answer(b"HTTP/1.1 2OO OK\r\n\r\n")) as garbled,
        tls_peer(pki, answer(refusing)) as refuses,
        silent_peer() as silent,
        silent_peer() as silent_too,
    ):
        urls = {
            "a": f"{fine.url}/a",
            "slow": f"{slow.url}/slow",
            "dead": f"{free_url()}/dead",
            "garbled": f"{garbled.url}/g",
            "silent": f"{silent}/s",
            "refuses": f"{refuses.url}/r",
            "slow-too": f"{slow_too.url}/slow",
            "silent-too": f"{silent_too}/s",
            "b": f"{fine.url}/b",
        }
        started = time.monotonic()
        outcomes = deliver(deliverer, signer, urls)
        elapsed = time.monotonic() - started
    assert [o.to for o in outcomes] == list(urls)
    got = {o.to: (o.outcome, o.status) for o in outcomes}
    assert got == {
        "a": (DELIVERED, 200),
        "slow": (FAILED, None),
        "dead": (FAILED, None),
        "garbled": (FAILED, None),
        "silent": (FAILED, None),
        "refuses": (REJECTED, 400),
        "slow-too": (FAILED, None),
        "silent-too": (FAILED, None),
        "b": (DELIVERED, 200),
    }
    errors = {o.to: o.error for o in outcomes}
    assert errors["slow"].startswith("TimeoutError") and "answer" in errors["slow"]
    assert errors["silent"].startswith("TimeoutError") and "connecting" in errors["silent"]
    assert errors["dead"].startswith("ConnectionRefusedError"), errors["dead"]
    assert errors["garbled"].startswith("BadAnswer: malformed status line")
    assert errors["a"] is errors["b"] is errors["refuses"] is None
    assert errors["slow-too"] == errors["slow"] and errors["silent-too"] == errors["silent"]
    # One after another, the two trickles (1 s each) and silences (0.5 s) take 3 s.
    assert elapsed < 2.2, f"{elapsed:.2f} s: the timeouts did not run side by side"
    assert next(o for o in outcomes if o.to == "a").ms < 500  # not held up by the slow
    assert deliverer.in_flight == 0


def test_fan_out_to_50_recipients_opens_and_keeps_connections(pki, tmp_path, signer):
    def later(conn, request):  # after every request of the fan-out was written
        time.sleep(0.1)
        conn.sendall(OK)
        return False

    deliverer = deliverer_for(pki, tmp_path, per_host_connections=32)
    with tls_peer(pki, later) as peer:
        urls = {f"r{i}": f"{peer.url}/inbox/r{i}" for i in range(50)}
        first = deliver(deliverer, signer, urls)
        assert (deliverer.pool.opened, deliverer.pool.idle(peer.url)) == (50, 32)
        started = time.monotonic()
        second = deliver(deliverer, signer, urls)
        elapsed = time.monotonic() - started
        assert (deliverer.pool.opened, deliverer.pool.idle(peer.url)) == (68, 32)
    deliverer.close()
    assert [o.to for o in first] == [o.to for o in second] == list(urls)
    assert all(o.outcome == DELIVERED for o in first + second), first + second
    assert elapsed < 1.0, f"50 answers 0.1 s each took {elapsed:.2f} s"
    paths = sorted(r.path for r in peer.requests)
    assert paths == sorted([f"/inbox/r{i}" for i in range(50)] * 2)


def test_fan_out_writes_each_recipients_own_body(pki, deliverer, signer, tmp_path):
    log = tmp_path / "received.jsonl"
    with recipient_thread(pki, log) as server:
        urls = {i: f"https://127.0.0.1:{server.port}/inbox/{i}" for i in ("bob", "carol")}
        outcomes = deliver(deliverer, signer, urls)
    assert [(o.outcome, o.status) for o in outcomes] == [(DELIVERED, 200)] * 2
    assert sorted((r["path"], r["to"], r["request_id"]) for r in received(log)) == [
        ("/inbox/bob", ["bob"], "req-1"),
        ("/inbox/carol", ["carol"], "req-1"),
    ]


def test_new_connections_are_made_side_by_side(pki, deliverer, signer):
    # Each handshake waits 0.3 s at the peer: ten in turn would take 3 s.
    with tls_peer(pki, answer(OK), handshake_delay=0.3) as peer:
        started = time.monotonic()
        outcomes = deliver(deliverer, signer, {f"r{i}": f"{peer.url}/r{i}" for i in range(10)})
        elapsed = time.monotonic() - started
    assert [o.outcome for o in outcomes] == [DELIVERED] * 10
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_a_name_with_two_addresses_is_tried_in_turn(pki, deliverer, signer):
    # "localhost" may resolve to ::1 first; the peer listens on 127.0.0.1 only.
    with tls_peer(pki, answer(OK)) as peer:
        port = peer.url.rsplit(":", 1)[1]
        urls = {i: f"https://localhost:{port}/{i}" for i in ("a", "b")}
        outcomes = deliver(deliverer, signer, urls)
    assert [o.outcome for o in outcomes] == [DELIVERED] * 2, outcomes


def test_a_certificate_for_another_name_fails_only_its_recipient(fresh_pki, tmp_path, signer):
    pki_mod.issue(fresh_pki.dir, "server", "elsewhere", dns=("elsewhere.example",))
    deliverer = deliverer_for(fresh_pki, tmp_path)
    with (
        tls_peer(fresh_pki, answer(OK), name="elsewhere") as wrong,
        tls_peer(fresh_pki, answer(OK)) as right,
    ):
        outcomes = deliver(deliverer, signer, {"x": f"{wrong.url}/x", "y": f"{right.url}/y"})
    deliverer.close()
    assert [(o.outcome, o.status) for o in outcomes] == [(FAILED, None), (DELIVERED, 200)]
    assert "127.0.0.1" in outcomes[0].error and wrong.requests == []


def test_a_bug_for_one_recipient_loses_no_other_outcome(pki, deliverer, signer, monkeypatch):
    real = fanout._Exchange.start

    def start(self):
        if self.url.endswith("/bug"):
            raise RuntimeError("a bug")
        return real(self)

    monkeypatch.setattr(fanout._Exchange, "start", start)
    with tls_peer(pki, answer(OK)) as peer:
        outcomes = deliver(deliverer, signer, {"a": f"{peer.url}/a", "bug": f"{peer.url}/bug"})
    assert [o.outcome for o in outcomes] == [DELIVERED, FAILED]
    assert outcomes[1].error == "internal error: RuntimeError('a bug')"


def test_kept_connections_are_reused_by_fan_out_and_single_delivery(pki, deliverer, signer):
    with tls_peer(pki, answer(OK)) as peer:
        urls = {"a": f"{peer.url}/a", "b": f"{peer.url}/b"}
        for _ in range(3):
            deliver(deliverer, signer, urls)
            deliver(deliverer, signer, {"a": urls["a"]})
        assert (peer.connections, deliverer.pool.opened, deliverer.pool.idle(peer.url)) == (
            2,
            2,
            2,
        )


def test_admission_counts_every_recipient_until_the_fan_out_ends(pki, tmp_path, signer):
    deliverer = Deliverer(deliverer_for(pki, tmp_path).pool, threads=2, capacity=3)
    seen: list[int] = []

    def slow(conn, request):
        seen.append(deliverer.in_flight)
        time.sleep(0.2)
        conn.sendall(OK)
        return False

    with tls_peer(pki, slow) as peer:
        urls = {i: f"{peer.url}/{i}" for i in ("a", "b", "c")}
        busy = threading.Thread(target=deliver, args=(deliverer, signer, urls))
        busy.start()
        busy.join(5)
    assert seen == [3, 3, 3] and deliverer.in_flight == 0
    assert deliverer.meters.in_flight._value.get() == 0


def test_no_log_line_per_recipient(pki, deliverer, signer, caplog):
    caplog.set_level(logging.DEBUG)
    with tls_peer(pki, answer(OK)) as peer:
        deliver(deliverer, signer, {"a": f"{peer.url}/a", "b": f"{peer.url}/b"})
        deliver(deliverer, signer, {"a": f"{peer.url}/a"})
    assert [r for r in caplog.records if r.name.startswith("dmr.relay")] == []


def test_a_header_that_would_break_the_request_fails_every_recipient(pki, deliverer, signer):
    with tls_peer(pki, answer(OK)) as peer:
        recipients = [Recipient(i, f"{peer.url}/{i}") for i in ("a", "b")]
        outcomes = deliverer.deliver(envelope_for(signer, ["a", "b"]), recipients, "r\r\nX: 1")
    refused = (FAILED, "ValueError: invalid header 'X-Request-Id'")
    assert [(o.outcome, o.error) for o in outcomes] == [refused] * 2
    assert peer.connections == 0 and deliverer.in_flight == 0


def test_fan_outs_on_many_threads_share_the_pool(pki, tmp_path, signer):
    deliverer = deliverer_for(pki, tmp_path, per_host_connections=64, pool_size=16)
    failures: list = []
    with tls_peer(pki, answer(OK)) as peer:
        urls = {f"r{i}": f"{peer.url}/r{i}" for i in range(5)}

        def sender() -> None:
            for _ in range(20):
                outcomes = deliver(deliverer, signer, urls)
                failures.extend(o for o in outcomes if o.outcome != DELIVERED)

        threads = [threading.Thread(target=sender) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(peer.requests) == 8 * 20 * 5
    deliverer.close()
    assert failures == [] and deliverer.in_flight == 0
    assert deliverer.pool.opened <= 8 * 5  # every connection reused after its first
