"""The deployment PKI, checked against openssl as an independent verifier."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import stat
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dmr_appliance import pki
from dmr_appliance.cli import main
from dmr_appliance.errors import PkiError
from dmr_appliance.ids import PARTICIPANT_ID_RULE

ALL = [
    ("server", "router"),
    ("server", "home"),
    ("server", "recipient"),
    ("relay", "relay-1"),
    ("relay", "relay-2"),
    ("participant", "alice"),
    ("participant", "bob"),
    ("participant", "carol"),
    ("admin", "admin"),
]
# openssl's purpose names: what each kind must (and must not) be accepted for.
PURPOSES = {
    "server": ({"sslserver", "sslclient"}, set()),  # the router is a client of upstreams
    "router": ({"sslserver", "sslclient"}, set()),
    "relay": ({"sslserver", "sslclient"}, set()),
    "participant": ({"sslclient"}, {"sslserver"}),
    "admin": ({"sslclient"}, {"sslserver"}),
}


def openssl_verify(ca: Path, cert: Path, *, crl: Path | None = None, purpose: str | None = None):
    cmd = ["openssl", "verify", "-CAfile", str(ca)]
    if crl is not None:
        cmd += ["-crl_check", "-CRLfile", str(crl)]
    if purpose is not None:
        cmd += ["-purpose", purpose]
    return subprocess.run([*cmd, str(cert)], capture_output=True, text=True, check=False)


def load(path: Path) -> x509.Certificate:
    return pki.load_certificate(path.read_bytes())


def load_crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(path.read_bytes())


# --- issued certificates -------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_openssl_accepts_every_issued_certificate(pki_fixture, kind, name):
    result = openssl_verify(pki_fixture.ca, pki_fixture.cert(kind, name), crl=pki_fixture.crl)
    assert result.returncode == 0, result.stdout + result.stderr
    good, bad = PURPOSES[kind]
    for purpose in good:
        assert (
            openssl_verify(pki_fixture.ca, pki_fixture.cert(kind, name), purpose=purpose).returncode
            == 0
        ), purpose
    for purpose in bad:
        assert (
            openssl_verify(pki_fixture.ca, pki_fixture.cert(kind, name), purpose=purpose).returncode
            != 0
        ), purpose


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_kind_and_name_are_read_back_from_the_certificate(pki_fixture, kind, name):
    cert = load(pki_fixture.cert(kind, name))
    assert pki.certificate_kind(cert) == kind
    assert pki.certificate_name(cert) == name
    assert pki.verify_issued_by(cert, load(pki_fixture.ca))


def test_leaf_extensions(pki_fixture):
    ca = load(pki_fixture.ca)
    cert = load(pki_fixture.cert("relay", "relay-1"))
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_sans_come_from_dns_and_ip(pki_fixture):
    san = (
        load(pki_fixture.cert("server", "router"))
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_server_without_sans_gets_its_name(fresh_pki):
    issued = pki.issue(fresh_pki.dir, "server", "router.example", force=True)
    san = load(issued.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["router.example"]


def test_client_certificates_carry_no_sans(pki_fixture, fresh_pki):
    cert = load(pki_fixture.cert("participant", "alice"))
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    with pytest.raises(PkiError, match="server, router, relay certificates"):
        pki.issue(fresh_pki.dir, "participant", "dave", dns=["dave.example"])


@pytest.mark.parametrize(
    ("dns", "ips", "message"),
    [(["bad name"], [], "not a DNS name"), ([], ["300.1.1.1"], "not an IPv4 or IPv6")],
)
def test_bad_sans_are_refused(fresh_pki, dns, ips, message):
    with pytest.raises(PkiError, match=message):
        pki.issue(fresh_pki.dir, "server", "edge", dns=dns, ips=ips)
    assert not fresh_pki.key("server", "edge").exists()


@pytest.mark.parametrize("name", ["Alice", "-bob", "a/b", "x" * 65, ""])
def test_names_must_be_participant_ids(fresh_pki, name):
    with pytest.raises(PkiError) as info:
        pki.issue(fresh_pki.dir, "participant", name)
    assert PARTICIPANT_ID_RULE in info.value.detail


def test_validity_follows_days(fresh_pki):
    issued = pki.issue(fresh_pki.dir, "admin", "ops", days=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated datetime accessors on new cryptography
        not_after = pki.cert_not_after(load(issued.cert))
        not_before = pki.cert_not_before(load(issued.cert))
    now = dt.datetime.now(dt.UTC)
    assert abs(not_after - (now + dt.timedelta(days=10))) < dt.timedelta(minutes=1)
    assert not_before < now


def test_default_validity_is_a_year(fresh_pki):
    issued = pki.issue(fresh_pki.dir, "admin", "ops")
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    assert abs(pki.cert_not_after(load(issued.cert)) - expected) < dt.timedelta(minutes=1)
    record = next(r for r in pki.records(fresh_pki.dir) if r.name == "ops")
    assert record.not_after == pki.cert_not_after(load(issued.cert)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_leaf_never_outlives_the_ca(tmp_path):
    pki.init_ca(tmp_path, days=5)
    issued = pki.issue(tmp_path, "participant", "alice", days=825)
    assert pki.cert_not_after(load(issued.cert)) <= pki.cert_not_after(load(tmp_path / "ca.pem"))


# --- the router kind -------------------------------------------------------------------------


def test_router_certificate(fresh_pki):
    issued = pki.issue(
        fresh_pki.dir, "router", "edge", dns=["router.example", "localhost"], ips=["127.0.0.1"]
    )
    assert issued.cert == fresh_pki.dir / "router" / "edge.pem"
    cert = load(issued.cert)
    assert pki.certificate_kind(cert) == "router"
    assert pki.certificate_name(cert) == "edge"
    assert (
        cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "router"
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["router.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    for purpose in PURPOSES["router"][0]:
        result = openssl_verify(fresh_pki.ca, issued.cert, crl=fresh_pki.crl, purpose=purpose)
        assert result.returncode == 0, result.stderr


def test_router_without_sans_gets_its_name(fresh_pki):
    cert = load(pki.issue(fresh_pki.dir, "router", "router.example").cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["router.example"]


def test_a_server_certificate_is_not_a_router(pki_fixture):
    # The session PKI's "router" name is a server certificate: the name proves nothing.
    assert pki.certificate_kind(load(pki_fixture.cert("server", "router"))) == "server"


def forge(directory: Path, units: list[str]) -> x509.Certificate:
    """A certificate signed by the deployment CA whose subject has exactly these OUs."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca = load(directory / "ca.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in units]
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, "edge")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    "units",
    [
        ["router", "server"],
        ["server", "router"],
        ["router", "router"],
        ["Router"],
        ["ROUTER"],
        ["router "],
        ["routers"],
        ["router,server"],
        ["x-router"],
        [],
    ],
)
def test_only_one_exact_ou_states_a_kind(fresh_pki, units):
    forged = forge(fresh_pki.dir, units)
    assert pki.verify_issued_by(forged, load(fresh_pki.ca))  # signed, yet no kind
    assert pki.certificate_kind(forged) is None


@pytest.mark.parametrize("kind", pki.KINDS)
def test_every_kind_is_read_back_exactly(fresh_pki, kind):
    assert pki.certificate_kind(forge(fresh_pki.dir, [kind])) == kind


# --- renewal ---------------------------------------------------------------------------------

DAY = dt.timedelta(days=1)
TODAY = dt.datetime.now(dt.UTC)


def renewal_pki(directory: Path) -> Path:
    """Certificates with staggered lifetimes, one revoked."""
    pki.init_ca(directory)
    pki.issue(directory, "router", "edge", dns=["router.example"], ips=["10.0.0.1"], days=20)
    pki.issue(directory, "server", "home", dns=["home.example"])
    pki.issue(directory, "relay", "relay-1", dns=["relay-1.example"], days=100)
    pki.issue(directory, "participant", "alice", days=10)
    pki.issue(directory, "participant", "bob", days=5)
    pki.revoke(directory, "participant", "bob")
    return directory


def actions(results: list[pki.Renewal]) -> dict[tuple[str, str], str]:
    return {(r.kind, r.name): r.action for r in results}


def key_matches_cert(key_path: Path, cert_path: Path) -> bool:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*raw) == load(cert_path).public_key().public_bytes(*raw)


def test_renew_renews_exactly_what_expires_within_the_window(tmp_path):
    d = renewal_pki(tmp_path / "pki")
    p = pki.paths(d)
    before = {
        (k, n): p.cert(k, n).read_bytes() for k, n in [("router", "edge"), ("server", "home")]
    }
    old_key = p.key("router", "edge").read_bytes()

    results = pki.renew(d, within_days=30)
    assert actions(results) == {
        ("router", "edge"): "renewed",
        ("server", "home"): "valid",
        ("relay", "relay-1"): "valid",
        ("participant", "alice"): "renewed",
        ("participant", "bob"): "skipped",
    }
    assert next(r for r in results if r.name == "bob").detail == "revoked"
    assert p.cert("server", "home").read_bytes() == before[("server", "home")]

    edge = load(p.cert("router", "edge"))
    result = next(r for r in results if r.name == "edge")
    assert result.renewed and result.serial == edge.serial_number
    assert result.old_serial == pki.load_certificate(before[("router", "edge")]).serial_number
    assert pki.certificate_kind(edge) == "router" and pki.certificate_name(edge) == "edge"
    san = edge.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["router.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    renewed_until = dt.datetime.now(dt.UTC) + 365 * DAY  # now, not at import: suites run long
    assert abs(pki.cert_not_after(edge) - renewed_until) < dt.timedelta(minutes=5)
    assert p.key("router", "edge").read_bytes() != old_key
    assert key_matches_cert(p.key("router", "edge"), p.cert("router", "edge"))
    assert key_matches_cert(p.key("participant", "alice"), p.cert("participant", "alice"))
    assert stat.S_IMODE(p.key("router", "edge").stat().st_mode) == 0o600
    assert stat.S_IMODE(p.cert("router", "edge").stat().st_mode) == 0o644
    assert not list(d.rglob(".*.p*.*")), "temporary files left behind"
    check = openssl_verify(p.ca, p.cert("router", "edge"), crl=p.crl, purpose="sslserver")
    assert check.returncode == 0, check.stderr

    again = pki.renew(d, within_days=30)
    assert not [r for r in again if r.renewed]
    assert p.cert("router", "edge").read_bytes() == edge.public_bytes(serialization.Encoding.PEM)


def test_renew_with_a_future_clock(tmp_path):
    d = renewal_pki(tmp_path / "pki")
    later = TODAY + 80 * DAY
    first = pki.renew(d, within_days=30, now=later)
    # Already expired by then (edge, alice) counts as due; relay-1 expires day 100 < 110.
    assert actions(first) == {
        ("router", "edge"): "renewed",
        ("server", "home"): "valid",
        ("relay", "relay-1"): "renewed",
        ("participant", "alice"): "renewed",
        ("participant", "bob"): "skipped",
    }
    relay = load(pki.paths(d).cert("relay", "relay-1"))
    assert abs(pki.cert_not_before(relay) - later) < dt.timedelta(minutes=10)
    assert abs(pki.cert_not_after(relay) - (later + 365 * DAY)) < dt.timedelta(minutes=1)
    assert not [r for r in pki.renew(d, within_days=30, now=later) if r.renewed]

    much_later = TODAY + 340 * DAY  # home (day 365) is now inside the window, the rest not
    renewed = [(r.kind, r.name) for r in pki.renew(d, now=much_later) if r.renewed]
    assert renewed == [("server", "home")]


def test_renew_filters_by_kind_and_name(tmp_path):
    d = renewal_pki(tmp_path / "pki")
    assert actions(pki.renew(d, kinds=["router"], dry_run=True)) == {("router", "edge"): "due"}
    only_alice = pki.renew(d, names=["alice"])
    assert actions(only_alice) == {("participant", "alice"): "renewed"}
    with pytest.raises(PkiError, match="unknown kind"):
        pki.renew(d, kinds=["robot"])


def test_renew_dry_run_changes_nothing(tmp_path):
    d = renewal_pki(tmp_path / "pki")
    snapshot = {f: f.read_bytes() for f in d.rglob("*") if f.is_file()}
    results = pki.renew(d, dry_run=True)
    assert actions(results)[("router", "edge")] == "due"
    assert {f: f.read_bytes() for f in d.rglob("*") if f.is_file()} == snapshot


def test_renew_keeps_the_index_consistent(tmp_path):
    d = renewal_pki(tmp_path / "pki")
    old = load(pki.paths(d).cert("router", "edge")).serial_number
    new = next(r for r in pki.renew(d) if r.name == "edge").serial
    edge = [r for r in pki.records(d) if r.name == "edge"]
    assert [r.serial for r in edge] == [old, new]
    assert edge[0].superseded_by == new and edge[0].status() == "superseded"
    assert edge[1].superseded_by is None and edge[1].status() == "valid"
    # The superseded certificate is not revoked (hosts use it until they get the new one),
    # but a revocation of the name covers both.
    crl = load_crl(pki.paths(d).crl)
    assert crl.get_revoked_certificate_by_serial_number(old) is None
    pki.revoke(d, "router", "edge")
    crl = load_crl(pki.paths(d).crl)
    assert all(crl.get_revoked_certificate_by_serial_number(s) for s in (old, new))
    assert actions(pki.renew(d))[("router", "edge")] == "skipped"


def test_renew_skips_what_it_cannot_renew(tmp_path, pki_fixture):
    d = renewal_pki(tmp_path / "pki")
    pki.paths(d).cert("participant", "alice").unlink()
    pki.paths(d).cert("server", "home").write_text("garbage")
    # A certificate copied in from elsewhere is not ours to re-issue.
    pki.paths(d).cert("router", "edge").write_bytes(
        pki_fixture.cert("server", "router").read_bytes()
    )
    results = {r.name: r for r in pki.renew(d)}
    assert results["alice"].action == "skipped" and "no certificate" in results["alice"].detail
    assert results["edge"].action == "skipped" and "not in index.json" in results["edge"].detail
    assert results["home"].action == "skipped" and "not a PEM certificate" in results["home"].detail
    assert results["relay-1"].action == "valid"


def test_renew_will_not_loop_on_a_ca_that_expires_in_the_window(tmp_path):
    pki.init_ca(tmp_path, days=20)
    pki.issue(tmp_path, "participant", "alice")  # capped at the CA's 20 days
    (result,) = pki.renew(tmp_path)
    assert result.action == "skipped" and "replace the CA" in result.detail


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"within_days": 30, "days": 30}, "must exceed within"),
        ({"within_days": -1}, "at least 0"),
        ({"days": 0}, "at least 1"),
        ({"now": dt.datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
def test_renew_refusals(tmp_path, kwargs, message):
    pki.init_ca(tmp_path)
    with pytest.raises(PkiError, match=message):
        pki.renew(tmp_path, **kwargs)


# --- files -----------------------------------------------------------------------------------


def test_keys_are_private_and_certificates_readable(pki_fixture):
    assert stat.S_IMODE((pki_fixture.dir / "ca.key").stat().st_mode) == 0o600
    for kind, name in ALL:
        assert stat.S_IMODE(pki_fixture.key(kind, name).stat().st_mode) == 0o600
        assert stat.S_IMODE(pki_fixture.cert(kind, name).stat().st_mode) == 0o644
    assert not list(pki_fixture.dir.rglob(".*.pem.*")), "temporary files left behind"


def test_no_overwrite_without_force(fresh_pki):
    key_before = fresh_pki.key("participant", "alice").read_bytes()
    cert_before = fresh_pki.cert("participant", "alice").read_bytes()
    with pytest.raises(PkiError, match="--force"):
        pki.issue(fresh_pki.dir, "participant", "alice")
    assert fresh_pki.key("participant", "alice").read_bytes() == key_before
    assert fresh_pki.cert("participant", "alice").read_bytes() == cert_before

    issued = pki.issue(fresh_pki.dir, "participant", "alice", force=True)
    assert issued.key.read_bytes() != key_before
    assert load(issued.cert).serial_number == issued.serial
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600


def test_a_lone_key_file_also_blocks_issuing(fresh_pki):
    key = fresh_pki.key("participant", "erin")
    key.write_bytes(b"precious")
    with pytest.raises(PkiError, match="--force"):
        pki.issue(fresh_pki.dir, "participant", "erin")
    assert key.read_bytes() == b"precious"


def test_init_twice_is_a_no_op(fresh_pki):
    ca_before = fresh_pki.ca.read_bytes()
    assert pki.init_ca(fresh_pki.dir) is False
    assert fresh_pki.ca.read_bytes() == ca_before
    assert pki.init_ca(fresh_pki.dir, force=True) is True
    assert fresh_pki.ca.read_bytes() != ca_before


def test_half_a_ca_is_refused(tmp_path):
    pki.init_ca(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(PkiError, match="incomplete CA"):
        pki.init_ca(tmp_path)


def test_issue_needs_a_ca(tmp_path):
    with pytest.raises(PkiError, match="pki init"):
        pki.issue(tmp_path, "participant", "alice")


def test_index_records_every_certificate(pki_fixture):
    index = json.loads((pki_fixture.dir / "index.json").read_text())
    entries = {(e["kind"], e["name"]): e for e in index["certificates"]}
    assert set(ALL) <= set(entries)  # conftest may issue more (router certificates)
    assert all(pki_fixture.cert(kind, name).exists() for kind, name in entries)
    alice = entries[("participant", "alice")]
    assert alice["serial"] == load(pki_fixture.cert("participant", "alice")).serial_number
    assert alice["revoked_at"] is None and alice["reason"] is None
    assert alice["not_after"].endswith("Z")


# --- revocation and the CRL ------------------------------------------------------------------


def test_crl_exists_from_init_and_is_signed_by_the_ca(tmp_path):
    pki.init_ca(tmp_path)
    crl = load_crl(tmp_path / "crl.pem")
    assert crl.is_signature_valid(load(tmp_path / "ca.pem").public_key())
    assert len(crl) == 0
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    pki.write_crl(tmp_path, days=7)
    fresh = load_crl(tmp_path / "crl.pem")
    assert fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number


def test_revoked_certificate_is_refused_and_others_still_accepted(fresh_pki):
    bob = fresh_pki.cert("participant", "bob")
    serial = load(bob).serial_number
    pki.revoke(fresh_pki.dir, "participant", "bob", reason="key-compromise")

    entry = load_crl(fresh_pki.crl).get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise

    refused = openssl_verify(fresh_pki.ca, bob, crl=fresh_pki.crl)
    assert refused.returncode != 0
    assert "revoked" in (refused.stdout + refused.stderr)
    for kind, name in ALL:
        if (kind, name) != ("participant", "bob"):
            result = openssl_verify(fresh_pki.ca, fresh_pki.cert(kind, name), crl=fresh_pki.crl)
            assert result.returncode == 0, (kind, name, result.stderr)

    record = next(r for r in pki.records(fresh_pki.dir) if r.name == "bob")
    assert record.status() == "revoked" and record.reason == "key-compromise"


def test_revoke_covers_certificates_replaced_by_force(fresh_pki):
    old = pki.records(fresh_pki.dir)
    old_serial = next(r.serial for r in old if r.name == "carol")
    new_serial = pki.issue(fresh_pki.dir, "participant", "carol", force=True).serial
    pki.revoke(fresh_pki.dir, "participant", "carol")
    crl = load_crl(fresh_pki.crl)
    for serial in (old_serial, new_serial):
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        # "unspecified" is said by omitting the reason code (RFC 5280 5.3.1)
        with pytest.raises(x509.ExtensionNotFound):
            entry.extensions.get_extension_for_class(x509.CRLReason)


def test_revoke_refusals(fresh_pki):
    with pytest.raises(PkiError, match="no participant certificate named 'zoe'"):
        pki.revoke(fresh_pki.dir, "participant", "zoe")
    with pytest.raises(PkiError, match="unknown revocation reason"):
        pki.revoke(fresh_pki.dir, "participant", "bob", reason="boredom")


# --- helpers -------------------------------------------------------------------------------


def test_thumbprint_matches_a_hand_computation(pki_fixture):
    pem_path = pki_fixture.cert("participant", "alice")
    der = subprocess.run(
        ["openssl", "x509", "-in", str(pem_path), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    thumbprint = pki.cert_thumbprint(load(pem_path))
    assert thumbprint == expected
    assert len(thumbprint) == 43 and "=" not in thumbprint


def test_verify_issued_by_refuses_another_ca(pki_fixture, fresh_pki):
    foreign = load(fresh_pki.cert("participant", "alice"))
    assert not pki.verify_issued_by(foreign, load(pki_fixture.ca))
    assert pki.verify_issued_by(foreign, load(fresh_pki.ca))


def test_load_certificate_accepts_str_and_refuses_garbage(pki_fixture):
    text = pki_fixture.cert("admin", "admin").read_text()
    assert pki.certificate_kind(pki.load_certificate(text)) == "admin"
    with pytest.raises(PkiError):
        pki.load_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_certificate_without_kind(pki_fixture):
    assert pki.certificate_kind(load(pki_fixture.ca)) is None


# --- CLI -------------------------------------------------------------------------------------


def test_cli_round_trip(tmp_path, capsys):
    d = str(tmp_path / "pki")
    assert main(["pki", "init", "--dir", d]) == 0
    assert main(["pki", "init", "--dir", d]) == 0
    assert "already exists" in capsys.readouterr().out

    assert (
        main(
            [
                "pki",
                "issue",
                "--dir",
                d,
                "--kind",
                "server",
                "--name",
                "router",
                "--dns",
                "localhost",
                "--dns",
                "router.internal",
                "--ip",
                "127.0.0.1",
            ]
        )
        == 0
    )
    assert main(["pki", "issue", "--dir", d, "--kind", "participant", "--name", "alice"]) == 0
    router = pki.paths(d).cert("server", "router")
    san = load(router).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "router.internal"]
    assert openssl_verify(pki.paths(d).ca, router).returncode == 0
    capsys.readouterr()

    assert main(["pki", "issue", "--dir", d, "--kind", "participant", "--name", "alice"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err

    assert (
        main(
            [
                "pki",
                "revoke",
                "--dir",
                d,
                "--kind",
                "participant",
                "--name",
                "alice",
                "--reason",
                "superseded",
            ]
        )
        == 0
    )
    assert main(["pki", "crl", "--dir", d]) == 0
    capsys.readouterr()

    assert main(["pki", "list", "--dir", d, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["alice"]["status"] == "revoked"
    assert rows["router"]["status"] == "valid"

    assert main(["pki", "list", "--dir", d]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "SERIAL", "EXPIRES", "STATUS"]
    assert lines[1].split()[1] == "router" and lines[1].split()[-1] == "valid"
    assert lines[2].split()[-1] == "revoked"


def test_cli_list_marks_superseded(fresh_pki, capsys):
    pki.issue(fresh_pki.dir, "participant", "alice", force=True)
    assert main(["pki", "list", "--dir", str(fresh_pki.dir), "--json"]) == 0
    statuses = [r["status"] for r in json.loads(capsys.readouterr().out) if r["name"] == "alice"]
    assert statuses == ["superseded", "valid"]


@pytest.mark.parametrize(
    "argv",
    [
        ["pki", "issue", "--dir", "x", "--kind", "robot", "--name", "a"],
        ["pki", "issue", "--dir", "x", "--kind", "admin"],
        ["pki", "issue", "--dir", "x", "--kind", "admin", "--name", "a", "--days", "0"],
        ["pki", "revoke", "--dir", "x", "--kind", "admin", "--name", "a", "--reason", "meh"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_cli_refusal_without_ca_is_one_line(tmp_path, capsys):
    assert main(["pki", "issue", "--dir", str(tmp_path), "--kind", "admin", "--name", "a"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pki init" in err


def test_crl_help_warns_about_next_update(capsys):
    with pytest.raises(SystemExit):
        main(["pki", "crl", "--help"])
    assert "nextUpdate" in capsys.readouterr().out


@pytest.fixture
def pki_fixture(pki):
    """The session PKI under a name that does not shadow the module."""
    return pki
