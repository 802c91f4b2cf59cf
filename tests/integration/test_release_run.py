"""scripts/release.sh as a release manager runs it (issue 27, item 7), without the .deb
and the image (the system tests and scripts/k8s.sh build those): the wheel, the sdist and
the Ansible collection land in the output folder with SHA256SUMS, one printed line each;
the wheel alone gives the control node `dmr pki` (docs/packaging.md); the collection holds
only what it should and, installed from its tarball, runs as `ansible-playbook
dmr.appliance.site` (and `.upgrade`) with its own roles, in a folder with no clone and no
ansible.cfg. It refuses, in one line, a tree whose versions disagree or that has
uncommitted files. (tests/molecule/site_local.py converges a host with the collection.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import dmr_appliance

ROOT = Path(__file__).resolve().parents[2]
VERSION = dmr_appliance.__version__
ANSIBLE_BIN = ROOT / ".venv-ansible/bin"
GALAXY = ANSIBLE_BIN / "ansible-galaxy"
# The collection's tools: .venv-ansible's (scripts/molecule.sh makes it, after the pytest
# runs of scripts/test.sh on a fresh machine) or Debian's ansible-core.
HAS_GALAXY = GALAXY.exists() or shutil.which("ansible-galaxy") is not None
HAS_BUILD = subprocess.run(["/usr/bin/python3", "-c", "import build"], check=False).returncode == 0
pytestmark = pytest.mark.once  # builds and Ansible: nothing of the pinned sets (setup.cfg)
needs_tools = pytest.mark.skipif(
    not (HAS_GALAXY and HAS_BUILD) and os.environ.get("DMR_NEEDS_ANSIBLE") != "1",
    reason="needs ansible-galaxy (.venv-ansible or ansible-core) and python3-build",
)
COLLECTION_TOP = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "meta",
    "roles",
    "playbooks",
    "inventories",
    "docs",
}


def release(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(cwd / "scripts/release.sh"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore:DSA is deprecated"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    done = release("--no-deb", "--allow-dirty", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


@needs_tools
def test_release_writes_the_artifacts_and_their_sums(dist):
    out, printed = dist
    wheel = f"dmr_appliance-{VERSION}-py3-none-any.whl"
    sdist = f"dmr_appliance-{VERSION}.tar.gz"
    collection = f"dmr-appliance-{VERSION}.tar.gz"
    files = {p.name for p in out.iterdir()}
    assert files == {wheel, sdist, collection, "SHA256SUMS"}
    sums = dict(
        reversed(line.split("  ", 1)) for line in (out / "SHA256SUMS").read_text().splitlines()
    )
    assert set(sums) == files - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
        assert f"{digest}  {name}" in printed.splitlines()  # one printed line per artifact
    with zipfile.ZipFile(out / wheel) as whl:
        metadata = whl.read(f"dmr_appliance-{VERSION}.dist-info/METADATA").decode()
    assert f"Version: {VERSION}\n" in metadata and "License: Apache-2.0\n" in metadata


@needs_tools
def test_the_wheel_alone_gives_the_control_node_dmr_pki(dist, tmp_path):
    """docs/packaging.md: `dmr` for `dmr pki` from the release's wheel, no clone. Its
    dependencies are this virtualenv's (pip would take them from PyPI)."""
    out, _ = dist
    wheel = out / f"dmr_appliance-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        entry_points = whl.read(f"dmr_appliance-{VERSION}.dist-info/entry_points.txt").decode()
    assert "dmr = dmr_appliance.cli:main" in entry_points
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        timeout=120,
    )
    dmr = (
        "import sys, dmr_appliance, dmr_appliance.cli as cli;"
        f"assert dmr_appliance.__file__.startswith({str(target)!r}), dmr_appliance.__file__;"
        "sys.argv[0] = 'dmr'; sys.exit(cli.main())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    for argv in (
        ["pki", "init", "--dir", "pki"],
        ["pki", "issue", "--dir", "pki", "--kind", "participant", "--name", "alice"],
    ):
        done = subprocess.run(
            [sys.executable, "-c", dmr, *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "pki/ca.pem").is_file()
    assert (tmp_path / "pki/participant/alice.pem").is_file()


@needs_tools
def test_the_collection_holds_the_roles_playbooks_and_inventories_only(dist):
    out, _ = dist
    with tarfile.open(out / f"dmr-appliance-{VERSION}.tar.gz") as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("dmr", "appliance", VERSION)
    assert info["license"] == ["Apache-2.0"]
    assert {n.split("/")[0] for n in names} == COLLECTION_TOP
    assert "playbooks/site.yml" in names and "playbooks/upgrade.yml" in names
    assert "roles/dmr_relay/tasks/main.yml" in names
    assert "inventories/example/hosts.yml" in names and "inventories/local/hosts.yml" in names
    assert not [n for n in names if "/molecule" in n or n.endswith((".pem", ".key", ".pyc"))]


@needs_tools
def test_a_build_from_the_root_holds_the_same_files(dist, tmp_path):
    """What Molecule's prerun does before each scenario (ansible-compat installs the
    collection from the repository's root): galaxy.yml's build_ignore leaves the same files
    as scripts/build-collection.sh's copy of what git tracks, never a virtualenv or a key."""
    out, _ = dist
    galaxy = str(GALAXY) if GALAXY.exists() else "ansible-galaxy"
    subprocess.run(
        [galaxy, "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
        env={**os.environ, "PYTHONWARNINGS": "ignore:DSA is deprecated"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    names = {}
    for where in (out, tmp_path):
        with tarfile.open(where / f"dmr-appliance-{VERSION}.tar.gz") as tar:
            names[where] = {m.name for m in tar.getmembers() if m.isfile()}
    untracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # a file not yet committed may be in the root's build: git's view is the staged copy's
    assert names[tmp_path] - set(untracked) == names[out] - set(untracked)


@needs_tools
@pytest.mark.parametrize("playbook", ["site", "upgrade"])
def test_the_installed_collection_runs_its_playbooks_with_its_own_roles(dist, tmp_path, playbook):
    out, _ = dist
    galaxy = str(GALAXY) if GALAXY.exists() else "ansible-galaxy"
    playbook_bin = str(ANSIBLE_BIN / "ansible-playbook") if GALAXY.exists() else "ansible-playbook"
    collections = tmp_path / "collections"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),  # never the clone's roles/
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONWARNINGS": "ignore:DSA is deprecated",
    }

    def run(*argv: str) -> str:
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(galaxy, "collection", "install", "-p", str(collections), str(next(out.glob("dmr-*"))))
    installed = collections / "ansible_collections/dmr/appliance"
    shutil.copytree(installed / "inventories/example", tmp_path / "prod")
    inventory = str(tmp_path / "prod/hosts.yml")
    run(playbook_bin, "-i", inventory, f"dmr.appliance.{playbook}", "--syntax-check")
    tasks = run(playbook_bin, "-i", inventory, f"dmr.appliance.{playbook}", "--list-tasks")
    assert str(installed / f"playbooks/{playbook}.yml") in tasks
    expected = {
        "site": ["dmr_firewall", "dmr_package", "dmr_pki", "dmr_home", "dmr_relay", "dmr_router"],
        "upgrade": ["dmr_package", "dmr_router", "dmr_home"],
    }[playbook]
    for role in expected:
        assert f"dmr.appliance.{role} : " in tasks, role


def refusing_copy(tmp_path: Path) -> Path:
    """The files release.sh checks before building anything, in a committed git tree."""
    copy = tmp_path / "repo"
    for name in ("scripts/release.sh", "dmr_appliance/__init__.py", "galaxy.yml", "CHANGELOG.md"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "k8s/base", copy / "k8s/base", ignore=shutil.ignore_patterns("pki"))
    git = ["git", "-C", str(copy), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True)
    return copy


def assert_refused(done: subprocess.CompletedProcess, words: str, out: Path) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("release.sh: ") and words in done.stderr, done.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("path", "old", "new", "words"),
    [
        ("galaxy.yml", f"version: {VERSION}", "version: 9.9.9", "galaxy.yml says '9.9.9'"),
        ("CHANGELOG.md", f"## [{VERSION}]", "## [9.9.9]", "CHANGELOG.md says '9.9.9'"),
        ("k8s/base/relay.yaml", f"dmr-appliance:{VERSION}", "dmr-appliance:9.9.9", "k8s/base"),
    ],
)
def test_release_refuses_versions_that_disagree(tmp_path, path, old, new, words):
    copy = refusing_copy(tmp_path)
    file = copy / path
    assert old in file.read_text()
    file.write_text(file.read_text().replace(old, new, 1))
    out = tmp_path / "out"
    assert_refused(release("--allow-dirty", "--out", str(out), cwd=copy), words, out)


def test_release_refuses_a_dirty_tree_unless_allowed(tmp_path):
    copy = refusing_copy(tmp_path)
    (copy / "new-file").write_text("not committed\n")
    out = tmp_path / "out"
    assert_refused(release("--no-deb", "--out", str(out), cwd=copy), "git status", out)
