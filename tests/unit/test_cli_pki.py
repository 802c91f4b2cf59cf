"""``dmr pki`` output: router certificates, renewal lines, the CRL publish hint."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509

from dmr_appliance import pki
from dmr_appliance.cli import main

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["pki", *argv])
    return code, capsys.readouterr().out.splitlines()


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A router due for renewal, a server that is not, a revoked participant."""
    d = tmp_path / "pki"
    pki.init_ca(d)
    pki.issue(d, "router", "edge", dns=["router.example"], days=10)
    pki.issue(d, "server", "home")
    pki.issue(d, "participant", "bob", days=5)
    pki.revoke(d, "participant", "bob")
    return d


def test_issue_router_with_the_default_validity(tmp_path, capsys):
    d = str(tmp_path / "pki")
    assert main(["pki", "init", "--dir", d]) == 0
    code, out = run(capsys, "issue", "--dir", d, "--kind", "router", "--name", "edge")
    assert code == 0 and out[0].startswith("issued router 'edge' serial ")
    cert = pki.load_certificate(pki.paths(d).cert("router", "edge").read_bytes())
    assert pki.certificate_kind(cert) == "router"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge"]
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    assert abs(pki.cert_not_after(cert) - expected) < dt.timedelta(minutes=1)


def test_issue_help_explains_the_router_kind(capsys):
    with pytest.raises(SystemExit):
        main(["pki", "issue", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{server,router,relay,participant,admin}" in text
    assert "router: the router (relays and home believe forwarded client" in text
    assert "(default 365)" in text


def test_renew_prints_one_line_per_certificate(directory, capsys):
    home_until = pki.cert_not_after(
        pki.load_certificate(pki.paths(directory).cert("server", "home").read_bytes())
    ).strftime(STAMP)
    code, out = run(capsys, "renew", "--dir", str(directory))
    assert code == 0
    edge = pki.load_certificate(pki.paths(directory).cert("router", "edge").read_bytes())
    until = pki.cert_not_after(edge).strftime(STAMP)
    assert out == [
        f"router 'edge': renewed, serial {edge.serial_number:x} valid until {until}",
        f"server 'home': still valid until {home_until}",
        "participant 'bob': skipped (revoked)",
        "1 renewed, 1 still valid, 1 skipped",
        "deploy the renewed keys and certificates to their hosts",
    ]

    code, out = run(capsys, "renew", "--dir", str(directory))
    assert code == 0
    assert out[0] == f"router 'edge': still valid until {until}"
    assert out[-1] == "0 renewed, 2 still valid, 1 skipped"


def test_renew_dry_run_and_filters(directory, capsys):
    before = pki.paths(directory).cert("router", "edge").read_bytes()
    code, out = run(capsys, "renew", "--dir", str(directory), "--dry-run", "--kind", "router")
    assert code == 0 and len(out) == 2
    assert out[0].startswith("router 'edge': would be renewed (expires ")
    assert out[1] == "1 would be renewed, 0 still valid, 0 skipped"
    assert pki.paths(directory).cert("router", "edge").read_bytes() == before

    argv = ["--name", "home", "--within", "400", "--days", "500"]
    code, out = run(capsys, "renew", "--dir", str(directory), *argv)
    assert code == 0 and out[0].startswith("server 'home': renewed, serial ")
    assert pki.paths(directory).cert("router", "edge").read_bytes() == before


def test_list_after_renew_shows_the_old_certificate_superseded(directory, capsys):
    assert run(capsys, "renew", "--dir", str(directory))[0] == 0
    _, out = run(capsys, "list", "--dir", str(directory), "--json")
    rows = [r for r in json.loads("\n".join(out)) if r["name"] == "edge"]
    assert [r["status"] for r in rows] == ["superseded", "valid"]
    assert rows[0]["superseded_by"] == rows[1]["serial"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--within", "-1"], 2, "must be at least 0"),
        (["--days", "0"], 2, "must be at least 1"),
        (["--within", "30", "--days", "20"], 1, "must exceed within"),
    ],
)
def test_renew_refusals_are_one_line(directory, capsys, argv, code, message):
    if code == 2:
        with pytest.raises(SystemExit) as info:
            main(["pki", "renew", "--dir", str(directory), *argv])
        assert info.value.code == 2
    else:
        assert main(["pki", "renew", "--dir", str(directory), *argv]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def assert_publish_hint(lines: list[str], directory: Path) -> None:
    publish, expiry = lines[-2:]
    assert publish.startswith(f"publish: copy {directory / 'crl.pem'} to ")
    assert "/etc/dmr-appliance/pki/crl.pem on every router, relay and home host" in publish
    assert "dmr_pki" in publish and "--tags pki" in publish
    assert "within seconds, no restart" in publish and "(dmr up) picks it up" in publish
    next_update = pki.crl_next_update(directory).strftime(STAMP)
    assert expiry.startswith(f"the CRL's next update is {next_update}: ")
    assert "nginx refuses every client" in expiry and "'dmr pki crl' renews it" in expiry


def test_revoke_ends_with_how_to_publish_the_crl(directory, capsys):
    code, out = run(capsys, "revoke", "--dir", str(directory), "--kind", "router", "--name", "edge")
    assert code == 0 and len(out) == 3
    assert out[0].startswith("revoked router 'edge' (serial ") and "CRL rewritten" in out[0]
    assert_publish_hint(out, directory)

    code, out = run(capsys, "revoke", "--dir", str(directory), "--kind", "router", "--name", "edge")
    assert code == 0 and out[0] == "router 'edge' was already revoked; CRL rewritten"
    assert_publish_hint(out, directory)


def test_crl_ends_with_how_to_publish_it(directory, capsys):
    code, out = run(capsys, "crl", "--dir", str(directory), "--days", "7")
    assert code == 0 and out[0] == f"wrote {directory / 'crl.pem'}, valid for 7 days"
    assert_publish_hint(out, directory)
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    assert abs(pki.crl_next_update(directory) - expected) < dt.timedelta(minutes=1)
