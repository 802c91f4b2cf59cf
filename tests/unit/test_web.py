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

from dmr_appliance import logs, web
from dmr_appliance import pki as pki_mod
from dmr_appliance.errors import AuthError, ConfigError, DmrError, EnvelopeError

TRUSTED = web.TrustedProxies(["127.0.0.1/32", "::1"])
ROUTER = "127.0.0.1"
STRANGER = "203.0.113.7"


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
    def __init__(self, ca_cert: x509.Certificate) -> None:
        self.ca_cert = ca_cert

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = web.client_identity(req, trusted=TRUSTED, ca_cert=self.ca_cert)
        resp.media = identity and {
            "kind": identity.kind,
            "name": identity.name,
            "thumbprint": identity.thumbprint,
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = web.client_identity(req, trusted=TRUSTED, ca_cert=self.ca_cert)
        web.require(identity, "admin")
        resp.status = falcon.HTTP_204


def make_app(ca_cert: x509.Certificate) -> falcon.App:
    app = falcon.App(middleware=[web.RequestContext()])
    web.install_error_handlers(app)
    app.add_route("/echo", Echo())
    app.add_route("/refuse", Refuse())
    app.add_route("/boom", Boom())
    app.add_route("/media", FalconMedia())
    app.add_route("/whoami", WhoAmI(ca_cert))
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
    return falcon.testing.TestClient(make_app(load(pki.ca)))


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


def test_identity_from_trusted_router(client, pki) -> None:
    pem = pki.pem("participant", "alice")
    result = client.simulate_get(
        "/whoami", headers={web.CLIENT_CERT_HEADER: escaped(pem)}, remote_addr=ROUTER
    )
    assert result.status_code == 200
    assert result.json == {
        "kind": "participant",
        "name": "alice",
        "thumbprint": pki_mod.cert_thumbprint(pki_mod.load_certificate(pem)),
    }


def test_identity_from_ipv6_loopback_and_mapped_ipv4(client, pki) -> None:
    header = {web.CLIENT_CERT_HEADER: escaped(pki.pem("relay", "relay-1"))}
    for addr in ("::1", "::ffff:127.0.0.1"):
        result = client.simulate_get("/whoami", headers=header, remote_addr=addr)
        assert result.json["kind"] == "relay", addr


def test_forged_header_from_untrusted_peer_is_ignored(client, pki, captured) -> None:
    header = {web.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin"))}
    result = client.simulate_get("/whoami", headers=header, remote_addr=STRANGER)
    assert result.status_code == 200
    assert result.json is None
    [warning] = captured.lines("client-cert-ignored")
    assert warning["remote_addr"] == STRANGER
    # ...and it grants nothing: the admin-only route refuses the caller.
    result = client.simulate_delete("/whoami", headers=header, remote_addr=STRANGER)
    assert_problem(result, 403, "no-client-identity")


def test_header_ignored_when_peer_address_is_unknown(pki) -> None:
    req = falcon.testing.create_req(
        headers={web.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin"))}
    )
    req.env.pop("REMOTE_ADDR", None)
    assert req.remote_addr == "127.0.0.1"  # Falcon's fallback, which web must not trust
    assert web.client_identity(req, trusted=TRUSTED, ca_cert=load(pki.ca)) is None


def test_no_header_means_no_identity(client) -> None:
    result = client.simulate_get("/whoami", remote_addr=ROUTER)
    assert result.json is None
    result = client.simulate_get(
        "/whoami", headers={web.CLIENT_CERT_HEADER: ""}, remote_addr=ROUTER
    )
    assert result.json is None


def test_require_checks_the_kind(client, pki) -> None:
    admin = {web.CLIENT_CERT_HEADER: escaped(pki.pem("admin", "admin"))}
    alice = {web.CLIENT_CERT_HEADER: escaped(pki.pem("participant", "alice"))}
    assert client.simulate_delete("/whoami", headers=admin, remote_addr=ROUTER).status_code == 204
    result = client.simulate_delete("/whoami", headers=alice, remote_addr=ROUTER)
    assert_problem(result, 403, "forbidden")


def test_require_returns_the_identity(pki) -> None:
    cert = load(pki.cert("relay", "relay-2"))
    identity = web.ClientIdentity("relay", "relay-2", pki_mod.cert_thumbprint(cert), cert)
    assert web.require(identity, "relay", "admin") is identity
    with pytest.raises(AuthError) as caught:
        web.require(None, "relay")
    assert caught.value.code == "no-client-identity"
    assert caught.value.status == 403


def test_certificate_of_another_ca_is_refused(client, pki, tmp_path) -> None:
    other = _other_pki(tmp_path)
    pem = pki_mod.paths(other).cert("participant", "alice").read_text()
    header = {web.CLIENT_CERT_HEADER: escaped(pem)}
    result = client.simulate_get("/whoami", headers=header, remote_addr=ROUTER)
    assert_problem(result, 403, "client-cert-invalid")


def _other_pki(tmp_path: Path) -> Path:
    """A second CA that issues the same names: what an attacker's own CA would do."""
    directory = tmp_path / "other-pki"
    pki_mod.init_ca(directory)
    pki_mod.issue(directory, "participant", "alice")
    return directory


def test_cached_verdict_is_not_reused_for_another_ca(pki, tmp_path) -> None:
    other = _other_pki(tmp_path)
    req = falcon.testing.create_req(
        headers={web.CLIENT_CERT_HEADER: escaped(pki.pem("participant", "bob"))},
        remote_addr=ROUTER,
    )
    ours, theirs = load(pki.ca), load(pki_mod.paths(other).ca)
    first = web.client_identity(req, trusted=TRUSTED, ca_cert=ours)
    assert web.client_identity(req, trusted=TRUSTED, ca_cert=ours) is first  # cache hit
    with pytest.raises(AuthError):
        web.client_identity(req, trusted=TRUSTED, ca_cert=theirs)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        escaped("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "%FF%FE",
        "\u00e9t\u00e9",
    ],
)
def test_garbage_header_from_router_is_refused(client, value) -> None:
    result = client.simulate_get(
        "/whoami", headers={web.CLIENT_CERT_HEADER: value}, remote_addr=ROUTER
    )
    assert_problem(result, 403, "client-cert-invalid")


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
    result = client.simulate_get(
        "/whoami", headers={web.CLIENT_CERT_HEADER: escaped(pem)}, remote_addr=ROUTER
    )
    assert_problem(result, 403, "client-cert-invalid")


# --- trusted proxies -------------------------------------------------------------------


def test_trusted_proxies_membership() -> None:
    trusted = web.TrustedProxies(["127.0.0.1/32", "::1", "10.0.0.0/8", " 192.168.1.5 "])
    for addr in ("127.0.0.1", "::1", "10.200.3.4", "192.168.1.5", "::ffff:10.0.0.1"):
        assert addr in trusted, addr
    for addr in ("127.0.0.2", "11.0.0.1", "::2", "192.168.1.6", "", "not-an-ip", None):
        assert addr not in trusted, addr


def test_trusted_proxies_refuse_bad_entries() -> None:
    with pytest.raises(ConfigError, match=r"10\.0\.0\.300"):
        web.TrustedProxies(["10.0.0.300"])


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
