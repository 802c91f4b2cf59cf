"""The trust boundary, tried as an attacker on the local stack would (real processes: home,
a relay, their gates, the router, the recipient, with the stack's own PKI).

Every reproduction of the trust-boundary issue must fail: a certificate of the deployment
that reaches a relay's or home's port directly is exactly itself, whatever header it
sends; a CRL-revoked certificate is refused at the router, the relay and home, and gets no
token, within seconds of being published and with no good request failing meanwhile; and
every TLS endpoint refuses old protocols, CBC suites and certificates of another CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
import warnings
from pathlib import Path

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dmr_appliance import envelope, pki
from dmr_appliance.local.stack import Stack
from tests.support.https import mtls_session
from tests.support.problems import assert_problem

ROOM = "ops"
# mallory and eve: certificates this module may revoke
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(
        relays=1, certificates=("mallory", "eve"), rooms={ROOM: ("alice", "bob", "mallory", "eve")}
    ),
]


def as_(stack: Stack, kind: str, name: str, **headers: str) -> requests.Session:
    return mtls_session(stack.ca, *stack.cert(kind, name), headers)


def forged(stack: Stack, kind: str, name: str) -> dict[str, str]:
    """The header a router would add, naming ``kind``/``name`` (a certificate is public)."""
    pem = stack.cert(kind, name)[0].read_text()
    return {"X-DMR-Client-Cert": urllib.parse.quote(pem, safe="")}


def home_direct(stack: Stack) -> str:
    return f"https://127.0.0.1:{stack.ports['home']}"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def thumbprint(stack: Stack, kind: str, name: str) -> str:
    return pki.cert_thumbprint(pki.load_certificate(stack.cert(kind, name)[0].read_bytes()))


# --- the issue's reproductions, each now refused ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"), [("participant", "alice"), ("relay", "relay-1"), ("server", "recipient")]
)
def test_a_forged_admin_header_direct_to_home_is_the_callers_own_certificate(stack, kind, name):
    session = as_(stack, kind, name, **forged(stack, "admin", "admin"))
    for path in ("/v1/participants", "/v1/keys"):
        assert_problem(session.get(home_direct(stack) + path, timeout=10), 403, "forbidden")


def test_alice_cannot_get_a_token_bound_to_bobs_certificate(stack):
    session = as_(stack, "participant", "alice", **forged(stack, "participant", "bob"))
    resp = session.post(home_direct(stack) + "/v1/tokens", timeout=10)
    assert resp.status_code == 201, resp.text
    token = claims(resp.json()["access_token"])
    # What she gets is hers: her name, bound to her certificate.
    assert token["sub"] == "alice"
    assert token["cnf"]["x5t#S256"] == thumbprint(stack, "participant", "alice")


def test_from_bob_straight_to_a_relay_is_refused(stack):
    alice = as_(stack, "participant", "alice")
    token = alice.post(stack.home_url + "/tokens", timeout=10).json()["access_token"]
    card = alice.get(stack.home_url + "/cards/bob", timeout=10).json()["card"]
    relay = stack.relay_url("relay-1") + "/v1/messages"
    doc = envelope.build_envelope(room=ROOM, sender="bob", cards=[card], payload={"x": 1})
    headers = {"Authorization": f"Bearer {token}", **forged(stack, "participant", "bob")}
    resp = alice.post(relay, json=doc, headers=headers, timeout=10)
    assert_problem(resp, 403, "sender-mismatch")
    # A token lifted from bob is worthless on alice's connection, header or not.
    bob_token = (
        as_(stack, "participant", "bob")
        .post(stack.home_url + "/tokens", timeout=10)
        .json()["access_token"]
    )
    headers["Authorization"] = f"Bearer {bob_token}"
    assert_problem(
        alice.post(relay, json=doc, headers=headers, timeout=10), 401, "token-cnf-mismatch"
    )
    delivered = stack.recipient_log.read_text() if stack.recipient_log.exists() else ""
    assert doc["id"] not in delivered


def test_an_admin_with_a_forged_header_is_still_the_admin(stack):
    # Treated as itself, not as the header's participant: an admin must name whom a token
    # is for, so an empty request is refused instead of issuing alice's token.
    admin = as_(stack, "admin", "admin", **forged(stack, "participant", "alice"))
    assert_problem(
        admin.post(home_direct(stack) + "/v1/tokens", timeout=10), 422, "invalid-request"
    )


def test_only_a_router_certificate_vouches_for_another(stack):
    # The router's own certificate at home's gate, naming the admin: believed.
    router = as_(stack, "router", "router", **forged(stack, "admin", "admin"))
    assert router.get(home_direct(stack) + "/v1/participants", timeout=10).status_code == 200


# --- TLS at every endpoint ---------------------------------------------------------------------


def endpoints(stack: Stack) -> dict[str, int]:
    return {
        "router": stack.ports["router"],
        "home": stack.ports["home"],
        "relay": stack.ports["relay-1"],
    }


def handshake(stack: Stack, port: int, *, version: ssl.TLSVersion, ciphers: str) -> str:
    """The protocol agreed with alice's certificate, or the server's refusal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.0 on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ctx.maximum_version = version
    ctx.load_verify_locations(stack.ca)
    ctx.load_cert_chain(*stack.cert("participant", "alice"))
    ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), 5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return str(tls.version())
    except ssl.SSLError as exc:
        return exc.reason or str(exc)


@pytest.mark.parametrize(
    ("version", "ciphers", "refusal"),
    [
        (ssl.TLSVersion.TLSv1, "ALL", "TLSV1_ALERT_PROTOCOL_VERSION"),
        (ssl.TLSVersion.TLSv1_1, "ALL", "TLSV1_ALERT_PROTOCOL_VERSION"),
        (
            ssl.TLSVersion.TLSv1_2,
            "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:"
            "ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA",
            "SSLV3_ALERT_HANDSHAKE_FAILURE",
        ),
    ],
)
def test_old_protocols_and_cbc_suites_are_refused_everywhere(stack, version, ciphers, refusal):
    for name, port in endpoints(stack).items():
        assert handshake(stack, port, version=version, ciphers=ciphers) == refusal, name


def test_the_intermediate_profile_is_served_everywhere(stack):
    for name, port in endpoints(stack).items():
        assert (
            handshake(
                stack, port, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"
            )
            == "TLSv1.2"
        ), name
        assert handshake(stack, port, version=ssl.TLSVersion.TLSv1_3, ciphers="ALL") == "TLSv1.3", (
            name
        )


def test_a_certificate_of_another_ca_is_refused_everywhere(stack, tmp_path):
    other = tmp_path / "other-ca"
    pki.init_ca(other)
    issued = pki.issue(other, "router", "router")  # even one that claims to be a router
    session = mtls_session(stack.ca, issued.cert, issued.key, forged(stack, "admin", "admin"))
    for name, port in endpoints(stack).items():
        resp = session.get(f"https://127.0.0.1:{port}/healthz", timeout=10)
        assert_problem(resp, 400, "client-certificate-invalid")
        assert name


# --- revocation, published while the stack runs ------------------------------------------------


class GoodTraffic:
    """bob keeps asking the router and both gates directly while the CRL changes."""

    def __init__(self, stack: Stack) -> None:
        self.urls = [
            stack.home_url + "/cards/alice",
            f"{home_direct(stack)}/readyz",
            stack.relay_url("relay-1") + "/readyz",
        ]
        self.session = as_(stack, "participant", "bob")
        # A reload closes idle kept-alive connections; a GET sent on one just then is lost
        # unanswered, and any HTTP client sends it again once (RFC 9112, 9.3.1). Refusals
        # and errors nginx or the apps answer are still failures.
        once = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=["GET"])
        self.session.mount("https://", HTTPAdapter(max_retries=once))
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    resp = self.session.get(url, timeout=10)
                    if resp.ok:
                        self.ok += 1
                    else:
                        self.failed.append(f"{url}: {resp.status_code} {resp.text[:100]}")
                except requests.RequestException as exc:
                    self.failed.append(f"{url}: {exc}")
            time.sleep(0.1)  # under the router's home rate limit (20 r/s)

    def __enter__(self) -> GoodTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def refused_everywhere(stack: Stack, name: str) -> bool:
    session = as_(stack, "participant", name)
    urls = [
        stack.home_url + "/tokens",
        home_direct(stack) + "/v1/tokens",
        stack.relay_url("relay-1") + "/v1/messages",
    ]
    try:
        answers = [session.post(url, timeout=5) for url in urls]
    except requests.RequestException:
        return False
    return all(a.status_code == 400 and "client-certificate-invalid" in a.text for a in answers)


def test_a_crl_published_while_running_is_in_force_everywhere_within_seconds(stack):
    mallory = as_(stack, "participant", "mallory")
    assert mallory.post(stack.home_url + "/tokens", timeout=10).status_code == 201
    with GoodTraffic(stack) as good:
        time.sleep(0.5)
        revoked_at = time.monotonic()
        pki.revoke(stack.pki_dir, "participant", "mallory")
        while not refused_everywhere(stack, "mallory"):
            assert time.monotonic() - revoked_at < 10, "the new CRL is not in force"
            time.sleep(0.1)
        in_force = time.monotonic() - revoked_at
        time.sleep(1.0)
    print(
        f"CRL in force at router, home and relay after {in_force * 1000:.0f} ms; "
        f"{good.ok} good requests meanwhile, {len(good.failed)} failed"
    )
    assert good.ok > 20 and good.failed == []


def test_home_gives_no_token_for_a_revoked_certificate(stack):
    pki.revoke(stack.pki_dir, "participant", "eve")
    pem = stack.cert("participant", "eve")[0].read_text()
    admin = stack.session()
    deadline = time.monotonic() + 10
    while True:
        try:
            resp = admin.post(
                stack.home_url + "/tokens",
                json={"participant": "eve", "certificate": pem},
                timeout=10,
            )
        except requests.ConnectionError:
            # The gate reloads for the new CRL: an old worker closes the session's idle
            # kept-alive connection (as refused_everywhere allows): not an answer yet.
            resp = None
        if (resp is not None and resp.status_code != 201) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp is not None, "home's gate answered nothing for 10 s"
    assert_problem(resp, 403, "client-cert-revoked")


def test_the_stack_logged_every_reload(stack):
    logs = Path(stack.logs_dir)
    errors = "".join(p.read_text(errors="replace") for p in logs.glob("*gate-error.log"))
    assert "[emerg]" not in errors, errors
    lines = [
        json.loads(line)
        for line in (logs / "home.log").read_text().splitlines()
        if '"crl-loaded"' in line
    ]
    assert lines and lines[-1]["revoked"] >= 1
