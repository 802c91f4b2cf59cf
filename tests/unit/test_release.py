"""A release (issue 27, item 7), read from the files: one version, dmr_appliance.__version__,
names the wheel (setup.cfg reads it), the .deb (packaging/build-deb.sh writes its
changelog from it), the Ansible collection (galaxy.yml), the image (k8s/base's tags) and
CHANGELOG.md's newest release; the changelog keeps Keep a Changelog's form; one licence,
Apache-2.0, everywhere it is stated. scripts/release.sh checks the same before it builds
(tests/integration/test_release_run.py runs it)."""

from __future__ import annotations

import configparser
import datetime
import re
from pathlib import Path

import yaml

import dmr_appliance

ROOT = Path(__file__).resolve().parents[2]
VERSION = dmr_appliance.__version__
RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\S+))?\s*$", re.M)


def galaxy() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


def releases() -> list[tuple[str, str | None]]:
    """CHANGELOG.md's sections, newest first: (version or 'Unreleased', date)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    return [(m["version"], m["date"]) for m in RELEASE.finditer(text)]


def versions() -> dict[str, set[str]]:
    """Every place that names the release's version, with what it says."""
    images = set()
    for path in (ROOT / "k8s/base").rglob("*.yaml"):
        images |= set(re.findall(r"image: *dmr-appliance:(\S+)", path.read_text()))
    newest = next(v for v, _ in releases() if v != "Unreleased")
    return {
        "galaxy.yml": {str(galaxy()["version"])},
        "k8s/base image tags": images,
        "CHANGELOG.md newest release": {newest},
    }


def test_one_version_names_every_artifact():
    wrong = {where: found for where, found in versions().items() if found != {VERSION}}
    assert wrong == {}, f"dmr_appliance.__version__ is {VERSION}"


def test_the_wheel_and_the_deb_take_the_version_from_the_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: dmr_appliance.__version__"
    # No Debian changelog of its own: build-deb.sh writes it from __version__.
    assert not (ROOT / "packaging/debian/changelog").exists()
    build_deb = (ROOT / "packaging/build-deb.sh").read_text()
    assert "dmr_appliance/__init__.py" in build_deb and "dmr-appliance ($version)" in build_deb


def test_the_changelog_keeps_a_changelog_form():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "keepachangelog.com/en/1.1.0" in text
    sections = releases()
    assert sections[0] == ("Unreleased", None), "the first section is ## [Unreleased]"
    dated = sections[1:]
    assert dated, "at least one release"
    dates = [datetime.date.fromisoformat(d) for _, d in dated]  # YYYY-MM-DD, each one
    assert dates == sorted(dates, reverse=True), "newest first"
    for version, _ in sections:
        assert re.search(rf"^\[{re.escape(version)}\]: \S+$", text, re.M), f"a link for {version}"
    for heading in re.findall(r"^### (.+)$", text, re.M):
        assert heading in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_one_licence_stated_everywhere():
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["license"] == "Apache-2.0"
    assert galaxy()["license"] == ["Apache-2.0"]
    copyright_ = (ROOT / "packaging/debian/copyright").read_text()
    assert set(re.findall(r"^License: (.+)$", copyright_, re.M)) == {"Apache-2.0"}
    for meta in sorted((ROOT / "roles").glob("*/meta/main.yml")):
        assert yaml.safe_load(meta.read_text())["galaxy_info"]["license"] == "Apache-2.0", meta
    containerfile = (ROOT / "packaging/Containerfile").read_text()
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in containerfile


def test_the_collection_is_dmr_appliance_with_its_runtime():
    meta = galaxy()
    assert (meta["namespace"], meta["name"]) == ("dmr", "appliance")
    assert (ROOT / meta["readme"]).is_file()
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())
    # playbooks in collections need 2.11; the roles' floor is Debian 12's ansible-core
    floors = {
        yaml.safe_load(p.read_text())["galaxy_info"]["min_ansible_version"]
        for p in (ROOT / "roles").glob("*/meta/main.yml")
    }
    assert floors == {"2.14"} and runtime["requires_ansible"] == ">=2.14.0"
    assert (ROOT / "playbooks/site.yml").is_file() and (ROOT / "playbooks/upgrade.yml").is_file()


def test_dist_is_git_ignored():
    assert "/dist/" in (ROOT / ".gitignore").read_text().splitlines()
