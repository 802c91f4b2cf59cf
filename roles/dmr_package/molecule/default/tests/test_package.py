"""dmr_package on a plain host: the package and nginx installed from the local .deb,
Debian's nginx.service stopped and disabled (not a router), check mode clean, bad input
refused at the start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

testinfra_hosts = ["ansible://all"]


def test_package_installed(host):
    assert host.package("dmr-appliance").is_installed
    assert host.package("nginx-light").is_installed
    assert host.run("dmr --version").stdout.startswith("dmr ")


def test_service_user_and_pki_folder(host):
    assert host.user("dmr").shell == "/usr/sbin/nologin"
    pki = host.file("/etc/dmr-appliance/pki")
    assert (pki.user, pki.group, pki.mode) == ("root", "dmr", 0o750)


def test_packaged_configs_valid(host):
    for kind in ("home", "relay", "router"):
        result = host.run(f"dmr config check {kind} /etc/dmr-appliance/{kind}.toml")
        assert result.rc == 0, result.stderr


def test_debian_nginx_service_off_on_a_non_router(host):
    nginx = host.service("nginx")
    assert not nginx.is_running
    assert not nginx.is_enabled
    assert not host.socket("tcp://0.0.0.0:80").is_listening


def test_units_installed_and_enabled(host):
    for unit in ("dmr-home", "dmr-relay", "dmr-home-gate", "dmr-relay-gate"):
        assert host.service(unit).is_enabled


def test_check_mode_reports_no_change():
    helpers.assert_check_mode_clean()


def test_a_given_deb_wins_over_source_apt():
    """upgrade.yml -e dmr_package_deb=NEW.deb on an inventory that says apt (the example's):
    the .deb is installed, no repository is needed or added."""
    proc = helpers.playbook(extra_vars={"dmr_package_source": "apt"})
    assert proc.returncode == 0, helpers.tail(proc)
    assert "Install the .deb" in proc.stdout
    assert helpers.recap(proc)["package-1"]["changed"] == 0, helpers.tail(proc)


def test_missing_deb_path_fails_at_the_start():
    proc = helpers.playbook(extra_vars={"dmr_package_deb": ""})
    helpers.assert_fails(proc, "dmr_package_deb")
    assert "Install the .deb" not in proc.stdout


def test_wrong_type_fails_at_the_start():
    proc = helpers.playbook(extra_vars={"dmr_package_cache_valid_time": "soon"})
    helpers.assert_fails(proc, "dmr_package_cache_valid_time")
    assert "Look for apt package lists" not in proc.stdout


def test_unknown_source_fails_at_the_start():
    proc = helpers.playbook(extra_vars={"dmr_package_source": "pip"})
    helpers.assert_fails(proc, "dmr_package_source", "apt, deb")
