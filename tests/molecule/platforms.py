"""The roles run on the Debian releases they are tested on and stop at once anywhere else
(issue 27, item 3): dmr_package's check (roles/dmr_package/tasks/platform.yml), which
dmr_firewall and dmr_logging include, against real containers reached with Ansible's
docker connection. Debian 12 and 13 are the project's images (tests/system/image.sh); the
others are the Debian 13 image with the os-release (and debian_version) of Debian 11 and
of Ubuntu 24.04, which is all Ansible reads to tell a release. On those, the whole
playbooks/site.yml ends at its first task on the host with one line naming the supported
releases, and nothing on the host changed.

Not collected by the project's pytest run (the file name); scripts/molecule.sh runs it
with .venv-ansible's ansible-playbook:
    pytest tests/molecule/platforms.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
SUPPORTED = yaml.safe_load((ROOT / "roles/dmr_package/vars/main.yml").read_text())[
    "dmr_package_supported_releases"
]
MESSAGE = "dmr-appliance supports Debian 12 (bookworm) and Debian 13 (trixie) only"
OTHERS = {
    "debian11": (
        'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="11"\nVERSION="11 (bullseye)"\nVERSION_CODENAME=bullseye\nID=debian\n',
        "11.11\n",
        "Debian 11.11",
    ),
    "ubuntu2404": (
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
        'VERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\n'
        "ID_LIKE=debian\nUBUNTU_CODENAME=noble\n",
        "trixie/sid\n",
        "Ubuntu 24.04",
    ),
}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture
def host(request) -> Iterator[str]:
    """A container of the given image, up and idle (Ansible needs only its python3)."""
    image, os_release, debian_version = request.param
    name = f"dmr-platform-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, image, "sleep", "infinity")
    try:
        if os_release:
            for path, text in (
                ("/etc/os-release", os_release),
                ("/etc/debian_version", debian_version),
            ):
                docker("exec", name, "rm", "-f", path)  # os-release is a symlink to /usr/lib
                docker("exec", name, "sh", "-c", f"printf '%s' '{text}' > {path}")
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def inventory(tmp_path: Path, name: str, group: str) -> Path:
    path = tmp_path / "hosts.yml"
    hosts = {name: {"ansible_connection": "community.docker.docker"}}
    path.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}))
    return path


def play(tmp_path: Path, inv: Path, playbook: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_FORCE_COLOR": "false",
        "PYTHONWARNINGS": "ignore:DSA is deprecated",
    }
    return subprocess.run(
        [str(PLAYBOOK), "-i", str(inv), str(playbook)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_only(tmp_path: Path) -> Path:
    path = tmp_path / "check.yml"
    path.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: dmr_package\n"
        "        tasks_from: platform.yml\n"
    )
    return path


def test_the_supported_list_is_what_the_meta_files_say() -> None:
    assert SUPPORTED == {"12": "bookworm", "13": "trixie"}
    for meta in sorted(ROOT.glob("roles/*/meta/main.yml")):
        platforms = yaml.safe_load(meta.read_text())["galaxy_info"]["platforms"]
        assert platforms == [{"name": "Debian", "versions": list(SUPPORTED.values())}], meta


@pytest.mark.parametrize(
    "host",
    [(f"dmr-test/{codename}-systemd", "", "") for codename in SUPPORTED.values()],
    ids=list(SUPPORTED.values()),
    indirect=True,
)
def test_a_supported_release_passes_the_check(host: str, tmp_path: Path) -> None:
    run = play(tmp_path, inventory(tmp_path, host, "relays"), check_only(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "The host runs a supported Debian release" in run.stdout


@pytest.mark.parametrize(
    "host",
    [("dmr-test/trixie-systemd", text, version) for text, version, _ in OTHERS.values()],
    ids=list(OTHERS),
    indirect=True,
)
def test_anything_else_stops_the_site_at_once(host: str, tmp_path: Path, request) -> None:
    shown = OTHERS[request.node.callspec.id][2]
    docker("exec", host, "touch", "/tmp/before-the-run")
    run = play(tmp_path, inventory(tmp_path, host, "relays"), ROOT / "playbooks/site.yml")
    print(run.stdout[-3000:])
    assert run.returncode != 0
    assert f"{host} runs {shown}" in run.stdout and MESSAGE in run.stdout, run.stdout[-3000:]
    line = next(x for x in run.stdout.splitlines() if MESSAGE in x)
    assert line.strip().endswith(MESSAGE), line  # the message itself is one line
    recap = {m[0]: (int(m[2]), int(m[3])) for m in RECAP.findall(run.stdout)}
    changed, failed = recap[host]
    assert (changed, failed) == (0, 1), run.stdout[-3000:]
    changed_files = docker(
        "exec", host, "find", "/etc", "/usr", "/var", "-newer", "/tmp/before-the-run"
    )
    assert changed_files.stdout == ""
