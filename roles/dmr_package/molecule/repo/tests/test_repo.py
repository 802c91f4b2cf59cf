"""dmr_package's apt path against the project's own repository (issue 23): repo-client
installed dmr-appliance from the signed flat repository that build-repo.sh built and
repo-server serves over HTTPS (a certificate of the deployment CA, trusted by apt for that
host only); a second converge changed nothing (Molecule's idempotence step), check mode is
clean, and a wrong key or URL fails saying which setting to check."""

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

testinfra_hosts = ["ansible://clients"]
# Every test takes `host`, so that pytest keeps this file's order (it groups tests by the
# module-scoped host parameter): the bad-input runs, which leave no sources entry, go last.
URL = "https://repo-server/dmr-appliance"
DEB = Path(os.environ["DMR_MOLECULE_DEB"])


def installed_origins(policy: str) -> tuple[str, list[str]]:
    """(installed version, the sources apt lists for it) from `apt-cache policy`."""
    lines = policy.splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"\s*\*\*\* (\S+) \d+$", line)
        if found:
            origins = []
            for after in lines[i + 1 :]:
                if not re.match(r"\s+-?\d+ ", after):
                    break
                origins.append(after.split(None, 1)[1])
            return found[1], origins
    raise AssertionError(f"no installed version in:\n{policy}")


def test_installed_from_the_repository(host):
    version, origins = installed_origins(host.check_output("apt-cache policy dmr-appliance"))
    assert version == DEB.name.split("_")[1]
    assert f"{URL} ./ Packages" in origins, origins
    assert not host.file("/var/cache/dmr-appliance").exists  # no local .deb copied
    assert host.run("dmr --version").stdout.startswith("dmr ")


def test_the_sources_entry_is_build_repo_shs_flat_line(host):
    lines = [
        line
        for line in host.file(
            "/etc/apt/sources.list.d/dmr-appliance.list"
        ).content_string.splitlines()
        if not line.startswith("#")
    ]
    keyring = "/usr/share/keyrings/dmr-appliance-archive-keyring.gpg"
    assert lines == [f"deb [signed-by={keyring}] {URL} ./"]
    assert host.file(keyring).mode == 0o644


def test_the_deployment_ca_is_trusted_for_the_repository_host_only(host):
    conf = host.file("/etc/apt/apt.conf.d/60dmr-appliance-repository").content_string
    assert 'Acquire::https::repo-server::CaInfo "/etc/apt/dmr-appliance-repository-ca.pem";' in conf
    assert host.file("/etc/apt/dmr-appliance-repository-ca.pem").contains("BEGIN CERTIFICATE")
    # not in the system's store: curl (ca-certificates) refuses the repository's host
    assert host.run(f"curl -sS -o /dev/null {URL}/Release").rc != 0


def test_apt_reads_the_signed_repository_without_a_warning(host):
    update = host.run("apt-get update")
    assert update.rc == 0, update.stderr
    about_repo = [
        line
        for line in (update.stdout + update.stderr).splitlines()
        if "repo-server" in line and line.startswith(("W:", "E:", "Err"))
    ]
    assert about_repo == []


def test_check_mode_reports_no_change(host):
    helpers.assert_check_mode_clean()


def test_a_wrong_key_fails_saying_what_to_check(host):
    """Debian's archive key instead of the repository's, on a host that has not read the
    repository yet (apt does not check again lists it already holds): apt refuses them."""
    host.run("rm -f /var/lib/apt/lists/repo-server_*")
    proc = helpers.playbook(
        extra_vars={
            "dmr_package_apt_key": "/usr/share/keyrings/debian-archive-bookworm-stable.gpg",
            "dmr_package_apt_update_retries": 1,
        }
    )
    helpers.assert_fails(proc, "cannot read the dmr-appliance repository", "dmr_package_apt_key")
    # apt's own reason: gpgv's on Debian 12, sqv's on Debian 13
    said = proc.stdout + proc.stderr
    assert "NO_PUBKEY" in said or "Missing key" in said, helpers.tail(proc)
    assert "Install dmr-appliance from the repository" not in proc.stdout


def test_a_wrong_url_fails_saying_what_to_check(host):
    proc = helpers.playbook(
        extra_vars={
            "dmr_package_apt_url": "https://repo-server/nowhere",
            "dmr_package_apt_update_retries": 1,
        }
    )
    helpers.assert_fails(proc, "cannot read the dmr-appliance repository", "dmr_package_apt_url")
    # the entry apt cannot read is gone: the host's own apt keeps working
    assert not host.file("/etc/apt/sources.list.d/dmr-appliance.list").exists
    assert host.run("apt-get update").rc == 0


def test_a_missing_key_file_fails_at_the_start(host):
    proc = helpers.playbook(extra_vars={"dmr_package_apt_key": "/nonexistent/keyring.gpg"})
    helpers.assert_fails(proc, "dmr_package_apt_key", "build-repo.sh")
    assert "Install the repository's keyring" not in proc.stdout
