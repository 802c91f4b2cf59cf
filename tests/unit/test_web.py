"""web.py on a tiny Falcon app: request ids, access log, problem+json, client identity."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import falcon
import falcon.testing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dmr_appliance import identity, logs, web
from dmr_appliance import pki as pki_mod
from dmr_appliance.crl import CrlFile
from dmr_appliance.errors import AuthError, DmrError, EnvelopeError

# --- the app under test --------------------------------------------------------------


class Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        logs.log_event(logs.get_logger("test.app"), "handled")
        resp.media = {"request_id": req.context.request_id, "ctx": logs.current_request_id()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"body": web.json_body(req, max_bytes=64)}


class Refuse:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise EnvelopeError("room 'Ops!' is not a room name", code="room-invalid", field="room")


class Boom:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("secret-db-password=hunter2")


class FalconMedia:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = req.get_media()  # Falcon's own parser: raises its own 400


class WhoAmI:
    def __init__(self, verifier: identity.Verifier) -> None:
        self.verifier = verifier

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = self.verifier.caller(req)
        resp.media = caller and {
            "kind": caller.kind,
            "name": caller.name,
            "thumbprint": caller.thumbprint,
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity.require(self.verifier.caller(req), "admin")
        resp.status = falcon.HTTP_204


def make_app(verifier: identity.Verifier) -> falcon.App:
    app = falcon.App(middleware=[web.RequestContext()])
    web.install_error_handlers(app)
    app.add_route("/echo", Echo())
    app.add_route("/refuse", Refuse())
    app.add_route("/boom", Boom())
    app.add_route("/media", FalconMedia())
    app.add_route("/whoami", WhoAmI(verifier))
    return app


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self, event: str | None = None) -> list[dict]:
        found = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in found if event is None or line["event"] == event]


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    cap = Captured()
    logs.configure("info", instance="test-1", stream=cap.stream)
    yield cap
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def load(path: Path) -> x509.Certificate:
    return pki_mod.load_certificate(path.read_bytes())


@pytest.fixture
def client(pki) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(make_app(identity.Verifier.from_files(pki.ca, pki.crl)))


def escaped(pem: str | bytes) -> str:
    """What nginx's $ssl_client_escaped_cert holds: the URL-encoded PEM."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    return urllib.parse.quote(text, safe="")


def assert_problem(result: falcon.testing.Result, status: int, code: str) -> dict:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    doc = result.json
    assert doc["type"] == f"urn:dmr:problem:{code}"
    assert doc["status"] == status
    assert doc["title"] and doc["detail"]
    return doc


# --- request ids and the access log ----------------------------------------------------


def test_well_formed_request_id_is_kept_and_echoed(client, captured) -> None:
    rid = "0123456789abcdef0123456789abcdef"
    result = client.simulate_get("/echo", headers={"X-Request-Id": rid})
    assert result.headers["X-Request-Id"] == rid
    assert result.json == {"request_id": rid, "ctx": rid}
    [handled] = captured.lines("handled")
    assert handled["request_id"] == rid  # picked up from the context, not passed
    assert logs.current_request_id() is None  # reset after the request


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 65, "a/b", "é"])
def test_missing_or_malformed_request_id_is_replaced(client, incoming) -> None:
    headers = {} if incoming is None else {"X-Request-Id": incoming}
    result = client.simulate_get("/echo", headers=headers)
    rid = result.headers["X-Request-Id"]
    assert rid != incoming
    assert len(rid) == 32
    int(rid, 16)
    assert result.json["request_id"] == rid


def test_access_log_has_one_response_line_per_request(client, captured) -> None:
    client.simulate_get("/echo", headers={"X-Request-Id": "req-1"}, remote_addr="10.9.8.7")
    client.simulate_get("/nowhere", query_string="token=secret")
    ok, missing = captured.lines("response")
    assert ok["method"] == "GET"
    assert ok["path"] == "/echo"
    assert ok["status"] == 200
    assert ok["request_id"] == "req-1"
    assert ok["remote_addr"] == "10.9.8.7"
    assert ok["instance"] == "test-1"
    assert isinstance(ok["ms"], int | float) and ok["ms"] >= 0
    assert missing["status"] == 404
    assert "secret" not in json.dumps(missing)


# --- problem+json ----------------------------------------------------------------------


def test_dmr_error_becomes_its_problem(client, captured) -> None:
    result = client.simulate_get("/refuse")
    doc = assert_problem(result, 400, "room-invalid")
    assert doc["instance"] == "/refuse"
    assert doc["field"] == "room"
    assert doc["title"] == "Invalid message envelope"
    assert result.headers["X-Request-Id"]
    [refused] = captured.lines("refused")
    assert refused["code"] == "room-invalid"


def test_unknown_route_is_a_not_found_problem(client) -> None:
    result = client.simulate_get("/no/such/thing")
    doc = assert_problem(result, 404, "not-found")
    assert doc["instance"] == "/no/such/thing"
    assert result.headers["X-Request-Id"]


def test_wrong_method_is_a_problem_and_keeps_allow(client) -> None:
    result = client.simulate_put("/echo")
    assert_problem(result, 405, "method-not-allowed")
    allowed = {m.strip() for m in result.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed


def test_falcon_media_error_is_a_bad_request_problem(client) -> None:
    result = client.simulate_post(
        "/media", body="{nope", headers={"Content-Type": "application/json"}
    )
    assert_problem(result, 400, "bad-request")


def test_unexpected_exception_is_a_500_without_internals(client, captured) -> None:
    result = client.simulate_get("/boom", headers={"X-Request-Id": "support-me"})
    doc = assert_problem(result, 500, "internal-error")
    assert "hunter2" not in result.text
    assert "Traceback" not in result.text
    assert "RuntimeError" not in result.text
    assert "support-me" in doc["detail"]
    assert doc["request_id"] == "support-me"
    [error] = captured.lines("internal-error")
    assert error["level"] == "error"
    assert error["request_id"] == "support-me"
    assert "Traceback" in error["exc"]
    assert "RuntimeError: secret-db-password=hunter2" in error["exc"]
    [response] = captured.lines("response")
    assert response["status"] == 500


# --- JSON bodies ---------------------------------------------------------------------


def test_json_body_is_parsed(client) -> None:
    result = client.simulate_post(
        "/echo", body='{"a": [1, 2]}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert result.status_code == 200
    assert result.json == {"body": {"a": [1, 2]}}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"a": 1}', "text/plain", 415, "unsupported-media-type"),
        ('{"a": 1}', None, 415, "unsupported-media-type"),
        ('{"a": "' + "x" * 64 + '"}', "application/json", 413, "too-large"),
        ("{nope", "application/json", 400, "malformed-json"),
        ("", "application/json", 400, "malformed-json"),
        ('{"a": NaN}', "application/json", 400, "malformed-json"),
    ],
)
def test_json_body_refusals(client, body, content_type, status, code) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = client.simulate_post("/echo", body=body, headers=headers)
    assert_problem(result, status, code)


def chunked_req(body: str) -> falcon.Request:
    req = falcon.testing.create_req(
        method="POST", body=body, headers={"Content-Type": "application/json"}
    )
    del req.env["CONTENT_LENGTH"]  # as with a chunked request body
    return req


def test_json_body_without_content_length_is_read() -> None:
    assert web.json_body(chunked_req('{"chunked": true}'), max_bytes=64) == {"chunked": True}


def test_json_body_without_content_length_is_still_capped() -> None:
    with pytest.raises(DmrError) as caught:
        web.json_body(chunked_req("[" + "1," * 100 + "1]"), max_bytes=64)
    assert caught.value.code == "too-large"


# --- client identity -------------------------------------------------------------------
# The gate sets X-DMR-Peer-Cert to whoever proved a key at the handshake; only a router
# peer may name someone else in X-DMR-Client-Cert.


def peer(pem: str) -> dict[str, str]:
    return {identity.PEER_CERT_HEADER: escaped(pem)}


def via_router(pki, pem: str) -> dict[str, str]:
    return {**peer(pki.pem("router", "router")), identity.CLIENT_CERT_HEADER: escaped(pem)}


def test_identity_forwarded_by_a_router_peer(client, pki) -> None:
    pem = pki.pem("participant", "alice")
    result = client.simulate_get("/whoami", headers=via_router(pki, pem))
    assert result.status_code == 200
    assert result.json == {
        "kind": "participant",
        "name": "alice",
        "thumbprint": pki_mod.cert_thumbprint(pki_mod.load_certificate(pem)),
    }


def test_a_peer_without_a_forwarded_header_is_itself(client, pki) -> None:
    for kind, name in [
        ("relay", "relay-1"),
        ("admin", "admin"),
        ("participant", "bob"),
        ("router", "router"),
    ]:
        result = client.simulate_get("/whoami", headers=peer(pki.pem(kind, name)))
        assert (result.json["kind"], result.json["name"]) == (kind, name)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("participant", "alice"),
        ("relay", "relay-1"),
        ("admin", "admin"),
        ("server", "router"),
        ("server", "home"),
    ],
)
def test_forged_header_from_a_non_router_peer_is_ignored(client, pki, captured, kind, name) -> None:
    # The reproduction of the trust-boundary issue: alice (or a relay, or a server
    # certificate named "router") claims to be the admin. She stays herself.
    headers = {
        **peer(pki.pem(kind, name)),
        identity.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin")),
    }
    result = client.simulate_get("/whoami", headers=headers)
    assert (result.json["kind"], result.json["name"]) == (kind, name)
    [warning] = captured.lines("client-cert-ignored")
    assert (warning["peer_kind"], warning["peer"]) == (kind, name)
    result = client.simulate_delete("/whoami", headers=headers)
    if kind != "admin":
        assert_problem(result, 403, "forbidden")


def test_forwarded_header_without_a_peer_is_no_identity(client, pki) -> None:
    # Only the gate sets the peer header: without it nothing is believed.
    header = {identity.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin"))}
    assert client.simulate_get("/whoami", headers=header).json is None
    assert_problem(client.simulate_delete("/whoami", headers=header), 403, "no-client-identity")


def test_no_header_means_no_identity(client) -> None:
    assert client.simulate_get("/whoami").json is None
    assert client.simulate_get("/whoami", headers={identity.PEER_CERT_HEADER: ""}).json is None


def test_require_checks_the_kind(client, pki) -> None:
    admin = via_router(pki, pki.pem("admin", "admin"))
    alice = via_router(pki, pki.pem("participant", "alice"))
    assert client.simulate_delete("/whoami", headers=admin).status_code == 204
    assert_problem(client.simulate_delete("/whoami", headers=alice), 403, "forbidden")


def test_require_returns_the_identity(pki) -> None:
    cert = load(pki.cert("relay", "relay-2"))
    caller = identity.Caller("relay", "relay-2", pki_mod.cert_thumbprint(cert), cert)
    assert identity.require(caller, "relay", "admin") is caller
    with pytest.raises(AuthError) as caught:
        identity.require(None, "relay")
    assert caught.value.code == "no-client-identity"
    assert caught.value.status == 403


def test_certificate_of_another_ca_is_refused(client, pki, tmp_path) -> None:
    other = _other_pki(tmp_path)
    pem = pki_mod.paths(other).cert("participant", "alice").read_text()
    assert_problem(
        client.simulate_get("/whoami", headers=via_router(pki, pem)), 403, "client-cert-invalid"
    )
    # A router certificate of another CA vouches for nobody either.
    router = pki_mod.paths(other).cert("router", "router").read_text()
    headers = {**peer(router), identity.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin"))}
    assert_problem(client.simulate_get("/whoami", headers=headers), 403, "client-cert-invalid")


def _other_pki(tmp_path: Path) -> Path:
    """A second CA that issues the same names: what an attacker's own CA would do."""
    directory = tmp_path / "other-pki"
    pki_mod.init_ca(directory)
    pki_mod.issue(directory, "participant", "alice")
    pki_mod.issue(directory, "router", "router")
    return directory


def test_cached_verdict_is_not_reused_for_another_ca(pki, tmp_path) -> None:
    other = _other_pki(tmp_path)
    req = falcon.testing.create_req(headers=via_router(pki, pki.pem("participant", "bob")))
    ours, theirs = load(pki.ca), load(pki_mod.paths(other).ca)
    first = identity.Verifier(ours).caller(req)
    assert identity.Verifier(ours).caller(req) is first  # cache hit
    with pytest.raises(AuthError):
        identity.Verifier(theirs).caller(req)


def test_a_cached_verdict_still_checks_the_dates_on_every_request(pki, monkeypatch) -> None:
    """The cache (bounded, keyed by the certificate's bytes) keeps what does not change;
    the clock and the CRL (test_revoked_certificates_...) are asked every time."""
    verifier = identity.Verifier(load(pki.ca))
    req = falcon.testing.create_req(headers=peer(pki.pem("participant", "carol")))
    hits = identity._from_header.cache_info().hits
    assert verifier.caller(req).name == "carol"
    assert verifier.caller(req).name == "carol"
    assert identity._from_header.cache_info().hits >= hits + 1
    assert identity._from_header.cache_info().maxsize == 1024
    not_after = pki_mod.cert_not_after(load(pki.cert("participant", "carol"))).timestamp()
    monkeypatch.setattr(identity.time, "time", lambda: not_after + 1)
    with pytest.raises(AuthError) as refused:
        verifier.caller(req)
    assert refused.value.code == "client-cert-invalid" and "validity" in refused.value.detail


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        escaped("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "%FF%FE",
        "\u00e9t\u00e9",
    ],
)
def test_garbage_header_from_router_is_refused(client, pki, value) -> None:
    headers = {**peer(pki.pem("router", "router")), identity.CLIENT_CERT_HEADER: value}
    assert_problem(client.simulate_get("/whoami", headers=headers), 403, "client-cert-invalid")
    assert_problem(
        client.simulate_get("/whoami", headers={identity.PEER_CERT_HEADER: value}),
        403,
        "client-cert-invalid",
    )


def _sign_leaf(pki_dir: Path, subject: list[x509.NameAttribute], days: tuple[int, int]) -> str:
    """A certificate from the real CA that pki_mod.issue() would never make."""
    paths = pki_mod.paths(pki_dir)
    ca_cert = load(paths.ca)
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("subject", "days"),
    [
        ([("participant", "alice")], (-10, -1)),  # expired
        ([("participant", "alice")], (1, 10)),  # not yet valid
        ([(None, "alice")], (-1, 10)),  # no kind
        ([("wizard", "alice")], (-1, 10)),  # unknown kind
        ([("participant", None)], (-1, 10)),  # no name
        ([("router", "router")], (-10, -1)),  # an expired router vouches for nobody
    ],
)
def test_unacceptable_certificate_from_our_ca_is_refused(client, pki, subject, days) -> None:
    [(ou, cn)] = subject
    attrs = []
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    pem = _sign_leaf(pki.dir, attrs, days)
    assert_problem(
        client.simulate_get("/whoami", headers=via_router(pki, pem)), 403, "client-cert-invalid"
    )
    assert_problem(client.simulate_get("/whoami", headers=peer(pem)), 403, "client-cert-invalid")


# --- revocation (the deployment's CRL) ------------------------------------------------------


def test_revoked_certificates_are_refused_as_peer_and_as_forwarded(fresh_pki) -> None:
    client = falcon.testing.TestClient(
        make_app(
            identity.Verifier(
                load(fresh_pki.ca), CrlFile(fresh_pki.crl, load(fresh_pki.ca), interval=0)
            )
        )
    )
    alice = via_router(fresh_pki, fresh_pki.pem("participant", "alice"))
    assert client.simulate_get("/whoami", headers=alice).json["name"] == "alice"
    pki_mod.revoke(fresh_pki.dir, "participant", "alice")
    assert_problem(client.simulate_get("/whoami", headers=alice), 403, "client-cert-revoked")
    assert_problem(
        client.simulate_get("/whoami", headers=peer(fresh_pki.pem("participant", "alice"))),
        403,
        "client-cert-revoked",
    )
    # A revoked router vouches for nobody.
    pki_mod.revoke(fresh_pki.dir, "router", "router")
    bob = via_router(fresh_pki, fresh_pki.pem("participant", "bob"))
    assert_problem(client.simulate_get("/whoami", headers=bob), 403, "client-cert-revoked")


def test_a_crl_not_signed_by_the_ca_is_ignored_and_the_last_good_one_stays(
    fresh_pki, tmp_path, captured
) -> None:
    pki_mod.revoke(fresh_pki.dir, "participant", "alice")
    revoked = CrlFile(fresh_pki.crl, load(fresh_pki.ca), interval=0)
    alice = load(fresh_pki.cert("participant", "alice"))
    assert alice in revoked
    other = _other_pki(tmp_path)
    fresh_pki.crl.write_bytes(pki_mod.paths(other).crl.read_bytes())
    assert alice in revoked
    assert captured.lines("crl-invalid")
    fresh_pki.crl.write_text("not a CRL")
    assert alice in revoked
    assert load(fresh_pki.cert("participant", "bob")) not in revoked


def test_dmr_error_headers_reach_the_response() -> None:
    import falcon
    import falcon.testing

    from dmr_appliance.errors import Unavailable
    from dmr_appliance.web import install_error_handlers

    class Busy:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise Unavailable("try later", code="overloaded", headers={"Retry-After": "2"})

    app = falcon.App()
    install_error_handlers(app)
    app.add_route("/busy", Busy())
    result = falcon.testing.TestClient(app).simulate_get("/busy")
    assert result.status_code == 503
    assert result.headers["Retry-After"] == "2"
    assert result.json["type"] == "urn:dmr:problem:overloaded"
