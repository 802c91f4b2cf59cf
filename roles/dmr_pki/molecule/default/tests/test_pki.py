"""dmr_pki on a host in every tier's group: the CA made and every certificate issued on
the control node by `dmr pki`, copied with the right owners and modes; a second run
issues nothing; a renewal window re-issues and deploys, once; check mode clean; the
operator's own CA checked (kind) and copied; bad input refused at the start."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

testinfra_hosts = ["ansible://all"]
PKI = "/etc/dmr-appliance/pki"
CA_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "pki"
KEYS = {  # host path: (owner, mode)
    f"{PKI}/server/home.key": ("dmr", 0o600),
    f"{PKI}/relay/pki-1.key": ("dmr", 0o600),
    f"{PKI}/router/router.key": ("root", 0o600),
}


def subject(host, path):
    return host.run(f"openssl x509 -noout -subject -nameopt RFC2253 -in {path}").stdout


def test_ca_and_crl(host):
    for name in ("ca.pem", "crl.pem"):
        f = host.file(f"{PKI}/{name}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert not host.file(f"{PKI}/ca.key").exists, "the CA key never leaves the control node"
    assert (CA_DIR / "ca.key").exists()


def test_the_crl_watch_is_on(host):
    """dmr-crl.path, which reloads the gates and nginx on a new CRL: this role's alone."""
    watch = host.service("dmr-crl.path")
    assert watch.is_running and watch.is_enabled


def test_keys_owned_and_private(host):
    for path, (owner, mode) in KEYS.items():
        f = host.file(path)
        assert (f.user, f.mode) == (owner, mode), path


def test_certificates_state_their_kind_and_verify(host):
    for kind, path in (
        ("server", "server/home"),
        ("relay", "relay/pki-1"),
        ("router", "router/router"),
    ):
        assert f"OU={kind}" in subject(host, f"{PKI}/{path}.pem")
        assert host.run(f"openssl verify -CAfile {PKI}/ca.pem {PKI}/{path}.pem").rc == 0
        key = host.run(f"openssl pkey -in {PKI}/{path}.key -pubout").stdout
        cert = host.run(f"openssl x509 -in {PKI}/{path}.pem -noout -pubkey").stdout
        assert key == cert, f"{path}: key and certificate do not match"


def test_tls_names_in_certificates(host):
    text = host.run(f"openssl x509 -noout -ext subjectAltName -in {PKI}/relay/pki-1.pem").stdout
    assert "DNS:relay.dmr.internal" in text and "DNS:pki-1" in text
    text = host.run(f"openssl x509 -noout -ext subjectAltName -in {PKI}/server/home.pem").stdout
    assert "DNS:home.dmr.internal" in text


def test_check_mode_reports_no_change():
    helpers.assert_check_mode_clean()


def test_own_ca_is_checked_and_copied():
    proc = helpers.playbook("--tags", "dmr_pki", extra_vars={"dmr_pki_manage_ca": False})
    assert proc.returncode == 0, helpers.tail(proc)
    assert helpers.recap(proc)["pki-1"]["changed"] == 0, helpers.tail(proc)


def test_own_ca_with_a_certificate_of_the_wrong_kind_fails(tmp_path):
    own = tmp_path / "own"
    shutil.copytree(CA_DIR, own)
    for ext in ("pem", "key"):  # a relay's pair where the router's should be
        shutil.copy(own / "relay" / f"pki-1.{ext}", own / "router" / f"pki-1.{ext}")
    proc = helpers.playbook(
        "--tags", "dmr_pki", extra_vars={"dmr_pki_manage_ca": False, "dmr_pki_ca_dir": str(own)}
    )
    helpers.assert_fails(proc, "router/pki-1.pem: expected OU=router")
    assert "Copy the keys" not in proc.stdout


def test_renewal_within_the_window_then_nothing(host):
    before = host.run(f"openssl x509 -noout -serial -in {PKI}/relay/pki-1.pem").stdout
    window = {"dmr_pki_renew_days": 400, "dmr_pki_days": 800}
    proc = helpers.playbook("--tags", "dmr_pki", extra_vars=window)
    assert proc.returncode == 0, helpers.tail(proc)
    assert "Renew the certificates" in proc.stdout
    after = host.run(f"openssl x509 -noout -serial -in {PKI}/relay/pki-1.pem").stdout
    assert after != before, "the relay certificate was not renewed on the host"
    for path, (owner, mode) in KEYS.items():
        f = host.file(path)
        assert (f.user, f.mode) == (owner, mode), path
    again = helpers.playbook("--tags", "dmr_pki", extra_vars=window)
    assert again.returncode == 0 and helpers.recap(again)["pki-1"]["changed"] == 0, helpers.tail(
        again
    )
    listing = subprocess.run(
        ["dmr", "pki", "list", "--dir", str(CA_DIR)], capture_output=True, text=True, check=True
    ).stdout
    assert "superseded" in listing


def test_wrong_type_fails_at_the_start():
    proc = helpers.playbook(extra_vars={"dmr_pki_renew_days": "a month"})
    helpers.assert_fails(proc, "dmr_pki_renew_days")
    assert "Create the deployment CA" not in proc.stdout


def test_extra_certificates_not_a_list_fails():
    proc = helpers.playbook(
        extra_vars={"dmr_pki_extra_certificates": json.dumps({"kind": "admin"})}
    )
    helpers.assert_fails(proc, "dmr_pki_extra_certificates")
