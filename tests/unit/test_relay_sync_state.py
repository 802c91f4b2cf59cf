"""The relay's sync state: sync document snapshots, reloads, verdict caches."""

from __future__ import annotations

import os
import time

import pytest
from cryptography.hazmat.primitives import serialization

from dmr_appliance import pki as pki_mod
from dmr_appliance import sync_signature, tokens
from dmr_appliance.errors import AuthError, TokenError, Unavailable
from dmr_appliance.files import write_atomic
from dmr_appliance.relay import home_peer, sync_state
from dmr_appliance.relay.sync_state import Snapshot, SyncDocumentError, SyncState, VerdictCache
from tests.support.relay_kit import ISSUER, HomeSigner, thumbprint


@pytest.fixture
def signer() -> HomeSigner:
    return HomeSigner()


@pytest.fixture
def state(tmp_path, monkeypatch) -> SyncState:
    monkeypatch.setattr(sync_state, "RELOAD_INTERVAL", 0.0)  # every look stats the file
    return SyncState.in_dir(tmp_path, issuer=ISSUER, leeway=0)


def test_snapshot_reads_homes_document(signer):
    snap = Snapshot.parse(
        signer.document(revoked=("mallory",), suspended=("eve",), revoked_jtis=("j1",))
    )
    assert snap.version == 1
    assert snap.keys.kids == {signer.key.kid}
    assert snap.revoked == {"mallory"} and snap.suspended == {"eve"}
    assert snap.revoked_tokens == {"j1"}


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        b'{"version": "1", "jwks": {"keys": []}}',
        b'{"version": true, "jwks": {"keys": []}}',
        b'{"version": 1}',
        b'{"version": 1, "jwks": {"keys": []}, "revoked_participants": "bob"}',
        b'{"version": 1, "jwks": {"keys": []}, "revoked_tokens": ["jti"]}',
    ],
)
def test_snapshot_refuses_what_is_not_a_sync_document(doc):
    with pytest.raises(SyncDocumentError):
        Snapshot.parse(doc)


@pytest.mark.parametrize(
    ("names", "code"),
    [
        ({"revoked": ("bob",)}, "recipient-revoked"),
        ({"suspended": ("bob",)}, "recipient-suspended"),
    ],
)
def test_check_active_names_the_state(signer, names, code):
    snap = Snapshot.parse(signer.document(**names))
    with pytest.raises(AuthError) as err:
        snap.check_active("bob", "recipient")
    assert (err.value.code, err.value.status) == (code, 403)
    snap.check_active("alice", "recipient")


def test_not_ready_without_a_document(state):
    assert state.snapshot is None
    with pytest.raises(Unavailable) as err:
        state.current()
    assert (err.value.code, err.value.status) == ("not-ready", 503)


def test_a_new_file_replaces_the_snapshot_and_a_broken_one_does_not(state, signer):
    write_atomic(state.path, signer.document())
    assert state.current().version == 1
    signer.version = 2
    write_atomic(state.path, signer.document(revoked=("alice",)))
    assert state.current().version == 2
    assert state.current().revoked == {"alice"}
    write_atomic(state.path, b"{broken")
    assert state.current().version == 2  # the last good document stays in use


def test_the_file_is_looked_at_only_every_reload_interval(tmp_path, signer, monkeypatch):
    monkeypatch.setattr(sync_state, "RELOAD_INTERVAL", 60.0)
    state = SyncState.in_dir(tmp_path, issuer=ISSUER, leeway=0)
    write_atomic(state.path, signer.document())
    assert state.current().version == 1
    signer.version = 2
    write_atomic(state.path, signer.document())
    assert state.current().version == 1  # within RELOAD_INTERVAL of the last look
    state.refresh(force=True)
    assert state.current().version == 2


def test_access_tokens_are_verified_once_per_sync_version(state, signer, pki, monkeypatch):
    cert = pki.cert("participant", "alice")
    write_atomic(state.path, signer.document())
    snap = state.current()
    token = signer.token("alice", cert)
    calls = []
    real = tokens.verify_access_token
    monkeypatch.setattr(
        tokens, "verify_access_token", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    for _ in range(3):
        assert state.access_token(token, snap, thumbprint(cert)).subject == "alice"
    assert len(calls) == 1
    signer.version = 2
    write_atomic(state.path, signer.document())
    state.access_token(token, state.current(), thumbprint(cert))
    assert len(calls) == 2  # a new document starts from a clean cache


def test_a_cached_token_still_checks_the_certificate(state, signer, pki):
    write_atomic(state.path, signer.document())
    snap = state.current()
    token = signer.token("alice", pki.cert("participant", "alice"))
    state.access_token(token, snap, thumbprint(pki.cert("participant", "alice")))
    with pytest.raises(TokenError) as err:
        state.access_token(token, snap, thumbprint(pki.cert("participant", "bob")))
    assert err.value.code == "token-cnf-mismatch"


def test_a_revoked_jti_is_refused(state, signer, pki):
    cert = pki.cert("participant", "alice")
    token = signer.token("alice", cert, jti="stolen")
    write_atomic(state.path, signer.document(revoked_jtis=("stolen",)))
    with pytest.raises(TokenError) as err:
        state.access_token(token, state.current(), thumbprint(cert))
    assert (err.value.code, err.value.status) == ("token-revoked", 401)


def test_a_cached_verdict_is_never_used_past_exp(tmp_path, signer, pki):
    clock = [time.time()]
    state = SyncState.in_dir(tmp_path, issuer=ISSUER, leeway=0, clock=lambda: clock[0])
    write_atomic(state.path, signer.document())
    cert = pki.cert("participant", "alice")
    token = signer.token("alice", cert, lifetime=60, now=int(clock[0]))
    state.access_token(token, state.current(), thumbprint(cert))
    clock[0] += 61
    with pytest.raises(TokenError) as err:
        state.access_token(token, state.current(), thumbprint(cert))
    assert err.value.code == "token-expired"


def test_the_cache_is_bounded_and_drops_the_oldest():
    cache: VerdictCache = VerdictCache(max_size=3)
    far = type("V", (), {"expires_at": time.time() + 600})()
    for name in "abcd":
        cache.put(name, 1, far)
    assert len(cache) == 3
    assert cache.get("a", 1, time.time()) is None
    assert cache.get("d", 1, time.time()) is far


def test_a_missing_file_keeps_the_snapshot(state, signer):
    write_atomic(state.path, signer.document())
    assert state.current().version == 1
    os.unlink(state.path)
    assert state.current().version == 1


def test_an_older_file_is_never_installed(state, signer):
    signer.version = 5
    write_atomic(state.path, signer.document())
    assert state.current().version == 5
    signer.version = 3  # the agent never writes one; whoever did is not believed
    write_atomic(state.path, signer.document(revoked=("alice",)))
    assert state.current().version == 5 and state.current().revoked == frozenset()


def test_sync_signature_verifies_only_under_a_trusted_key(signer):
    body, other = signer.document(), tokens.SigningKey.generate()
    trusted = tokens.KeySet.from_signing_keys([signer.key])
    signed = sync_signature.sign(body, [other, signer.key])
    assert sync_signature.verify(body, signed, trusted) == signer.key.kid
    cases = {
        None: "unsigned",
        sync_signature.sign(body, [other]): "signer-unknown",
        sync_signature.sign(body + b" ", [signer.key]): "bad-signature",
        # home's kid over another key's signature
        f"{signer.key.kid}:{sync_signature.sign(body, [other]).split(':')[1]}": "bad-signature",
        f"{signer.key.kid}:***": "malformed-signature",
        ", ".join([signed] * 9): "malformed-signature",  # more than MAX_SIGNATURES
    }
    for header, reason in cases.items():
        with pytest.raises(sync_signature.SignatureError) as caught:
            sync_signature.verify(body, header, trusted)
        assert caught.value.reason == reason, header


@pytest.mark.parametrize(
    ("kind", "name", "accepted"),
    [
        ("router", "router", True),
        ("router", "router-2", True),
        ("server", "home", True),
        ("server", "recipient", False),
        ("server", "router", False),
        ("relay", "relay-2", False),
        ("participant", "alice", False),
        ("admin", "admin", False),
    ],
)
def test_home_is_a_router_or_homes_own_certificate(pki, kind, name, accepted):
    der = pki_mod.load_certificate(pki.cert(kind, name).read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    if accepted:
        assert home_peer.check_peer(der, ["home"]) == f"{kind}/{name}"
    else:
        with pytest.raises(home_peer.Refused, match="neither a router's nor home's"):
            home_peer.check_peer(der, ["home"])
    with pytest.raises(home_peer.Refused, match="no certificate"):
        home_peer.check_peer(None, ["home"])
