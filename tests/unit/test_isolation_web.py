"""What the apps answer a certificate nginx let through without a full handshake (a
resumed TLS session after a revocation), and the status page's response headers.

nginx checks the CRL at full handshakes only; the apps check the certificate the gate
passes (``identity.CheckCaller``) on every route, identity-free ones too. The real resumption,
against nginx, is in tests/integration/test_isolation_tls.py.
"""

from __future__ import annotations

import re

import falcon.testing
import pytest

from dmr_appliance import identity, web
from dmr_appliance import pki as pki_mod
from dmr_appliance.relay.app import create_app
from dmr_appliance.relay.delivery import Deliverer
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SyncState
from tests.support.home import home_under_test
from tests.support.identity import direct_headers
from tests.support.relay_kit import relay_config

OPEN_ROUTES = ("/metrics", "/openapi.json", "/healthz", "/readyz")


@pytest.fixture
def revoked_pki(fresh_pki):
    pki_mod.revoke(fresh_pki.dir, "participant", "carol")
    return fresh_pki


@pytest.fixture
def home(tmp_path, revoked_pki):
    return home_under_test(tmp_path, revoked_pki)


@pytest.fixture
def relay(tmp_path, revoked_pki):
    cfg = relay_config(revoked_pki, tmp_path)
    meters = RelayMetrics()
    deliverer = Deliverer.from_config(cfg, meters)
    trust = SyncState.in_dir(tmp_path, issuer="dmr-home", leeway=5)
    yield falcon.testing.TestClient(create_app(cfg, trust, deliverer, meters))
    deliverer.close()


def refused(result: falcon.testing.Result) -> bool:
    return (
        result.status_code == 403 and result.json["type"] == "urn:dmr:problem:client-cert-revoked"
    )


def test_home_answers_a_revoked_certificate_on_no_route(home):
    carol_direct = direct_headers(home.pki, "participant", "carol")
    for path in (*OPEN_ROUTES, "/", "/.well-known/jwks.json", "/nowhere"):
        assert refused(home.caller("participant", "carol").get(path)), path  # via a router
        assert refused(home.caller(None).get(path, headers=carol_direct)), path
    for path in ("/metrics", "/openapi.json", "/healthz"):
        assert home.caller("participant", "bob").get(path).status_code == 200, path


def test_the_relay_answers_a_revoked_certificate_on_no_route(relay, revoked_pki):
    carol = direct_headers(revoked_pki, "participant", "carol")
    for path in (*OPEN_ROUTES, "/nowhere"):
        assert refused(relay.simulate_get(path, headers=carol)), path
    bob = direct_headers(revoked_pki, "participant", "bob")
    for path in ("/metrics", "/openapi.json", "/healthz"):
        assert relay.simulate_get(path, headers=bob).status_code == 200, path


def test_probes_without_a_peer_certificate_still_answer(home, relay):
    # The gate's health port passes no certificate (and only /healthz and /readyz).
    assert home.caller(None).get("/healthz").status_code == 200
    assert relay.simulate_get("/healthz").status_code == 200


def test_check_caller_skips_only_the_paths_it_is_told(revoked_pki):
    verifier = identity.Verifier.from_files(revoked_pki.ca, revoked_pki.crl)
    app = falcon.App(
        middleware=[web.RequestContext(), identity.CheckCaller(verifier, skip=frozenset({"/own"}))]
    )
    web.install_error_handlers(app)

    class Ok:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"ok": True}

    app.add_route("/own", Ok())
    app.add_route("/open", Ok())
    client = falcon.testing.TestClient(app)
    carol = direct_headers(revoked_pki, "participant", "carol")
    assert client.simulate_get("/own", headers=carol).status_code == 200
    assert refused(client.simulate_get("/open", headers=carol))


# --- the status page's headers --------------------------------------------------------------


def test_the_status_page_forbids_scripts_framing_sniffing_referrers_and_caching(home):
    resp = home.admin.get("/")
    assert resp.status_code == 200
    csp = dict(
        part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";")
    )
    assert csp["default-src"] == "'none'" and "script-src" not in csp  # no script at all
    assert csp["style-src"] == "'unsafe-inline'"  # its <style> and style attributes
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert csp["form-action"] == "'none'"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    # What the policy allows is all the page needs: no script, no event handler attribute.
    assert "<script" not in resp.text.lower()
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", resp.text, re.IGNORECASE)
