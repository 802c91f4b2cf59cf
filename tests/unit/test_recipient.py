"""`dmr recipient` as its own process: records what relays deliver, answers a repeat
as a duplicate."""

from __future__ import annotations

import json

import urllib3

from dmr_appliance.relay.delivery import tls_context
from tests.support.recipient import received, recipient_process
from tests.support.relay_kit import relay_config


def test_recipient_process_records_and_deduplicates(pki, tmp_path):
    log = tmp_path / "got.jsonl"
    http = urllib3.PoolManager(ssl_context=tls_context(relay_config(pki, tmp_path).tls))
    with recipient_process(pki, log) as port:
        body = json.dumps({"id": "m-1", "expires_at": "2999-01-01T00:00:00Z"}).encode()
        answers = [http.request("POST", f"https://127.0.0.1:{port}/inbox/bob", body=body,
                                headers={"X-DMR-Message-Id": "m-1"}) for _ in range(2)]
    assert [a.status for a in answers] == [200, 200]
    assert [json.loads(a.data)["duplicate"] for a in answers] == [False, True]
    assert [(r["id"], r["duplicate"], r["relay"]) for r in received(log)] == [
        ("m-1", False, "relay-1"), ("m-1", True, "relay-1")]
