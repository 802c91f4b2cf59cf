"""The router in front of a real relay: the client-certificate header cannot be forged.

A real nginx (rendered template) before a real relay (`dmr relay serve`, gunicorn, holding
a sync document signed by a test home key) delivering to the real demo recipient. The
relay binds each access token to the client certificate nginx verified; if a header the
client sent reached it, a stolen token could be used with someone else's certificate.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests

from dmr_appliance import config, render
from dmr_appliance.local import recipient
from dmr_appliance.local.processes import NginxProcess
from tests.support import relay_kit
from tests.support.apps import App
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx]


def session(ca: Path, cert: Path, key: Path) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
    s.verify = str(ca)
    s.cert = (str(cert), str(key))
    return s


@pytest.fixture(scope="module")
def deployment(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router-relay")
    signer = relay_kit.HomeSigner()
    # The recipient: the real demo recipient, requiring a relay certificate of the CA.
    inbox = recipient.RecipientServer(
        ("127.0.0.1", 0),
        cert=pki.cert("server", "home"),
        key=pki.key("server", "home"),
        ca=pki.ca,
        log_path=tmp / "deliveries.jsonl",
    )
    threading.Thread(target=inbox.serve_forever, daemon=True).start()
    # The relay, with a saved sync document (home itself is not running: not needed).
    state = tmp / "relay-1"
    state.mkdir()
    (state / "sync.json").write_bytes(signer.document())
    relay_port = free_port()
    router_port = free_port()
    relay_cfg = relay_kit.relay_config(
        pki,
        state,
        bind=f"127.0.0.1:{relay_port}",
        workers=1,
        threads=4,
        home_url=f"https://127.0.0.1:{router_port}/v1/home",
    )
    (tmp / "relay.toml").write_text(config.to_toml(relay_cfg))
    relay = App("relay", tmp / "relay.toml", tmp).start()
    admin = session(pki.ca, pki.cert("admin", "admin"), pki.key("admin", "admin"))
    # The router.
    prefix = tmp / "router"
    prefix.mkdir()
    router_cfg = config.RouterConfig(
        listen=router_port,
        relays=[f"127.0.0.1:{relay_port}"],
        home=[f"127.0.0.1:{free_port()}"],
        prefix=prefix,
        pid_file=prefix / "nginx.pid",
        access_log=str(prefix / "access.log"),
        error_log=str(prefix / "error.log"),
        worker_processes="1",
        tls=config.RouterTls(
            ca=pki.ca,
            crl=pki.crl,
            cert=pki.cert("router", "router"),
            key=pki.key("router", "router"),
        ),
    )
    render.write(router_cfg, prefix / "nginx.conf")
    router = NginxProcess(prefix / "nginx.conf", prefix=prefix, pid_file=router_cfg.pid_file)
    try:
        relay.wait_ready(
            lambda: admin.get(f"https://127.0.0.1:{relay_port}/readyz", timeout=2).ok, timeout=60
        )
        router.start()
        yield {
            "signer": signer,
            "url": f"https://127.0.0.1:{router_port}/v1/messages",
            "endpoint": f"https://localhost:{inbox.port}/inbox/bob",
            "deliveries": tmp / "deliveries.jsonl",
        }
    finally:
        router.stop()
        relay.stop()
        inbox.shutdown()
        inbox.server_close()


def delivered_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def send(d, pki, *, tls_as: str, token_for: str, forged_header_of: str | None) -> requests.Response:
    signer = d["signer"]
    token = signer.token(token_for, pki.cert("participant", token_for))
    card = signer.card("bob", d["endpoint"])
    message = relay_kit.message([card], sender=token_for)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if forged_header_of:
        headers["X-DMR-Client-Cert"] = urllib.parse.quote(pki.pem("participant", forged_header_of))
    s = session(pki.ca, pki.cert("participant", tls_as), pki.key("participant", tls_as))
    resp = s.post(d["url"], data=json.dumps(message), headers=headers, timeout=30)
    resp.message_id = message["id"]  # type: ignore[attr-defined]
    return resp


def test_the_relay_sees_the_certificate_nginx_verified_not_the_clients_header(deployment, pki):
    # alice's connection, alice's token, a header claiming bob: delivered as alice.
    resp = send(deployment, pki, tls_as="alice", token_for="alice", forged_header_of="bob")
    assert resp.status_code == 200, resp.text
    assert resp.message_id in delivered_ids(deployment["deliveries"])


def test_a_forged_header_cannot_borrow_someone_elses_token(deployment, pki):
    # alice's connection with bob's token and a header claiming bob's certificate:
    # the relay checks the token's binding against alice's certificate and refuses.
    resp = send(deployment, pki, tls_as="alice", token_for="bob", forged_header_of="bob")
    assert resp.status_code in (401, 403), resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["type"].startswith("urn:dmr:problem:token-")
    assert resp.message_id not in delivered_ids(deployment["deliveries"])
    # Without the forgery bob's own connection would have been accepted: the refusal is
    # about the certificate, not about the token.
    ok = send(deployment, pki, tls_as="bob", token_for="bob", forged_header_of=None)
    assert ok.status_code == 200, ok.text
