"""`dmr recipient` as its own process: records what relays deliver, answers a repeat
as a duplicate."""

from __future__ import annotations

import json
import threading

import urllib3

from dmr_appliance.relay.outbound import tls_context
from tests.support.recipient import received, recipient_process, recipient_thread
from tests.support.relay_kit import relay_config


def test_recipient_process_records_and_deduplicates(pki, tmp_path):
    log = tmp_path / "got.jsonl"
    http = urllib3.PoolManager(ssl_context=tls_context(relay_config(pki, tmp_path).tls))
    with recipient_process(pki, log) as port:
        body = json.dumps({"id": "m-1", "expires_at": "2999-01-01T00:00:00Z"}).encode()
        answers = [
            http.request(
                "POST",
                f"https://127.0.0.1:{port}/inbox/bob",
                body=body,
                headers={"X-DMR-Message-Id": "m-1"},
            )
            for _ in range(2)
        ]
    assert [a.status for a in answers] == [200, 200]
    assert [json.loads(a.data)["duplicate"] for a in answers] == [False, True]
    assert [(r["id"], r["duplicate"], r["relay"]) for r in received(log)] == [
        ("m-1", False, "relay-1"),
        ("m-1", True, "relay-1"),
    ]


def test_a_stop_waits_for_the_delivery_being_marked_and_recorded(pki, tmp_path):
    """Else a SIGTERM between the two would leave the id seen but nothing recorded, and the
    relay's retry would be answered as a duplicate of a delivery nobody processed."""
    log = tmp_path / "got.jsonl"
    http = urllib3.PoolManager(ssl_context=tls_context(relay_config(pki, tmp_path).tls))
    recording, go_on = threading.Event(), threading.Event()
    with recipient_thread(pki, log) as server:
        write = server.record

        def slow_record(entry: dict) -> None:
            recording.set()
            go_on.wait(5)
            write(entry)

        server.record = slow_record  # type: ignore[method-assign]
        body = json.dumps({"id": "m-1", "expires_at": "2999-01-01T00:00:00Z"}).encode()
        post = threading.Thread(
            target=http.request,
            args=("POST", f"https://127.0.0.1:{server.port}/inbox/bob"),
            kwargs={"body": body},
        )
        post.start()
        assert recording.wait(5)
        closing = threading.Thread(target=server.server_close)
        closing.start()
        closing.join(0.3)
        assert closing.is_alive()  # the marked delivery is not recorded yet: close waits
        go_on.set()
        closing.join(5)
        post.join(5)
        assert not closing.is_alive()
    assert [(r["id"], r["duplicate"]) for r in received(log)] == [("m-1", False)]


def test_an_id_another_sender_used_is_not_a_duplicate_of_yours(pki, tmp_path):
    """Hostile: bob's X fails while hank is down (503); alice, a co-recipient who saw X,
    sends her own X to hank; bob's retry of X must still be processed."""
    log = tmp_path / "got.jsonl"
    http = urllib3.PoolManager(ssl_context=tls_context(relay_config(pki, tmp_path).tls))
    body = json.dumps({"id": "X", "expires_at": "2999-01-01T00:00:00Z"}).encode()

    def deliver(port: int, sender: str) -> dict:
        answer = http.request(
            "POST",
            f"https://127.0.0.1:{port}/inbox/hank",
            body=body,
            headers={"X-DMR-Message-Id": "X", "X-DMR-From": sender},
        )
        return {"status": answer.status, **json.loads(answer.data)}

    seen, down_log = tmp_path / "seen.sqlite", tmp_path / "down.jsonl"
    with recipient_process(pki, down_log, "--seen", str(seen), "--status", "503") as port:
        assert deliver(port, "bob")["status"] == 503  # hank is down
    with recipient_process(pki, log, "--seen", str(seen)) as port:  # back, same store
        alice = deliver(port, "alice")
        bob = deliver(port, "bob")
        bob_again = deliver(port, "bob")
    assert (alice["status"], alice["duplicate"]) == (200, False)
    assert (bob["status"], bob["duplicate"]) == (200, False)  # processed, not alice's copy
    assert bob_again["duplicate"] is True  # a real repeat of bob's is still one
    assert [
        (r["from"], r["status"], r["duplicate"]) for r in received(down_log) + received(log)
    ] == [("bob", 503, False), ("alice", 200, False), ("bob", 200, False), ("bob", 200, True)]
