"""The whole site from the Ansible collection on one fresh Debian 13 systemd container,
the way an operator runs it on a single VM without a clone (README, "Deploy to VMs"):
Debian's own ansible-core on the host itself installs the collection from its tarball
(`ansible-galaxy collection install dmr-appliance-X.tar.gz`), copies the collection's
one-host inventory and runs `ansible-playbook -i site/hosts.yml dmr.appliance.site`, every
tier on loopback. Then the run is repeated (no change), the operator's clients are issued
with `dmr pki`, and a message sent through the router reaches a recipient. (The clone's
playbooks/site.yml runs in the seven-host scenario, molecule/site.)

Not collected by the project's pytest run (the file name); scripts/molecule.sh runs it,
with the collection it built (DMR_MOLECULE_COLLECTION; this test builds one with
scripts/build-collection.sh when it is unset):
    DMR_MOLECULE_DEB=dist/dmr-appliance_X_all.deb pytest tests/molecule/site_local.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import SYSTEMD_FLAGS

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("DMR_TEST_IMAGE", "dmr-test/trixie-systemd")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
REPO = "/root/dmr-appliance"  # for tests/system/deliver.py; the site runs from the collection
SITE = "/root/site"  # the operator's inventory, copied from the installed collection
PKI = f"{SITE}/pki"  # the control node's CA: this same host
COLLECTIONS = "/root/.ansible/collections/ansible_collections"  # ansible-galaxy's default
RECAP = re.compile(
    r"^localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def sh(
    name: str, script: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [DOCKER, "exec", name, "bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script}\nexit {proc.returncode}\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """The collection's tarball: scripts/molecule.sh's, or one built now."""
    given = os.environ.get("DMR_MOLECULE_COLLECTION")
    if given:
        assert Path(given).is_file(), f"DMR_MOLECULE_COLLECTION={given}: no such file"
        return Path(given)
    out = tmp_path_factory.mktemp("collection")
    built = subprocess.run(
        ["bash", str(ROOT / "scripts/build-collection.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def box(collection: Path) -> Iterator[str]:
    deb = os.environ.get("DMR_MOLECULE_DEB")
    if not deb or not Path(deb).is_file():
        pytest.fail("DMR_MOLECULE_DEB must name the .deb (packaging/build-deb.sh --deb-only)")
    name = f"dmr-site-local-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            DOCKER,
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            "dmr-site",
            *SYSTEMD_FLAGS,
            IMAGE,
            "/lib/systemd/systemd",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        for _ in range(60):
            state = sh(name, "timeout 20 systemctl is-system-running --wait || true", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                break
            time.sleep(0.5)
        # The repository as a clone gives it (tracked and new files), and the package.
        files = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
        paths = [p for p in files.decode().split("\0") if p and (ROOT / p).is_file()]
        tar = subprocess.run(
            ["tar", "-C", str(ROOT), "-cf", "-", *paths], capture_output=True, check=True
        ).stdout
        sh(name, f"mkdir -p {REPO}")
        subprocess.run(
            [DOCKER, "exec", "-i", name, "tar", "-C", REPO, "-xf", "-"],
            input=tar,
            check=True,
            capture_output=True,
            timeout=120,
        )
        for artifact in (deb, collection):
            subprocess.run(
                [DOCKER, "cp", str(artifact), f"{name}:/root/{Path(artifact).name}"],
                check=True,
                timeout=120,
            )
        # The operator's tool: Debian's own ansible-core (2.19 on Debian 13), from its mirror.
        sh(
            name,
            "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive"
            " apt-get -q -y install --no-install-recommends ansible-core >/dev/null",
            timeout=600,
        )
        # The operator's steps: the collection from its tarball, its one-host inventory.
        sh(
            name,
            f"cd /root && ansible-galaxy collection install {collection.name}"
            f" && cp -r {COLLECTIONS}/dmr/appliance/inventories/local {SITE}",
            timeout=120,
        )
        yield name
    finally:
        subprocess.run([DOCKER, "rm", "-f", "-v", name], capture_output=True, timeout=120)


def site(box: str) -> tuple[int, str]:
    deb = Path(os.environ["DMR_MOLECULE_DEB"]).name
    proc = sh(
        box,
        f"cd /root && ANSIBLE_FORCE_COLOR=0 ansible-playbook -i {SITE}/hosts.yml"
        f" dmr.appliance.site -e dmr_package_deb=/root/{deb}",
        check=False,
        timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_site_converges_then_changes_nothing(box: str) -> None:
    rc, out = site(box)
    assert rc == 0, out[-6000:]
    # the collection's roles ran, under their full names
    for role in ("dmr_firewall", "dmr_package", "dmr_pki", "dmr_home", "dmr_relay", "dmr_router"):
        assert f"dmr.appliance.{role} : " in out, role
    rc, out = site(box)
    assert rc == 0, out[-6000:]
    counts = RECAP.findall(out)
    assert counts and all(c == ("0", "0", "0") for c in counts), out[-6000:]


def test_message_through_the_router_is_delivered(box: str) -> None:
    local = "--dns localhost --ip 127.0.0.1"
    sh(
        box,
        " && ".join(
            [
                f"dmr pki issue --dir {PKI} --kind admin --name admin",
                f"dmr pki issue --dir {PKI} --kind participant --name alice",
                f"dmr pki issue --dir {PKI} --kind participant --name bob",
                f"dmr pki issue --dir {PKI} --kind server --name recipient {local}",
                "mkdir -p /var/lib/dmr-test-recipient",
                "systemd-run --unit dmr-test-recipient --property Type=exec dmr recipient"
                f" --bind 127.0.0.1:9443 --cert {PKI}/server/recipient.pem"
                f" --key {PKI}/server/recipient.key"
                f" --ca {PKI}/ca.pem --log /var/lib/dmr-test-recipient/received.jsonl",
                "for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9443) 2>/dev/null"
                " && break; sleep 0.2; done",
            ]
        ),
    )
    sent = sh(
        box, f"python3 {REPO}/tests/system/deliver.py https://localhost:8443 {PKI}", timeout=120
    )
    message_id = json.loads(sent.stdout.strip().splitlines()[-1])["message_id"]
    received = sh(box, "cat /var/lib/dmr-test-recipient/received.jsonl").stdout
    assert message_id in received
