"""Commands and names the docs give an operator, as written (issue 23): every documented
`dmr pki issue` runs, no doc installs dmr-appliance from PyPI (it is not there), and every
unit an alert tells the operator to look at exists."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from dmr_appliance import pki
from dmr_appliance.cli import main
from tests.support.ansible_files import ROLES, ROOT, module, task_files, tasks_of

PROMETHEUS = ROOT / "monitoring" / "prometheus"
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROLES.glob("*/README.md")),
    *sorted(PROMETHEUS.glob("*.yml")),
]
ISSUE = re.compile(r"dmr pki issue\b[^`\n;]*")
SPAN = re.compile(r"`(dmr pki issue\b[^`]*)`")  # inline code, which may wrap a line


def documented_issue_commands() -> list[tuple[str, str]]:
    """Each `dmr pki issue` with arguments in the docs: inline code, then code and comment
    lines (a bare `dmr pki issue` names the command in prose)."""
    found = []
    for path in DOCS:
        text = path.read_text()
        commands = [" ".join(m.group(1).split()) for m in SPAN.finditer(text)]
        commands += [m.group(0).strip() for m in ISSUE.finditer(SPAN.sub("", text))]
        found += [(path.name, c) for c in commands if c != "dmr pki issue"]
    return found


def test_the_docs_give_pki_issue_commands():
    names = {name for name, _ in documented_issue_commands()}
    assert {"operations.md", "prometheus.example.yml", "README.md"} <= names


@pytest.mark.parametrize("doc,command", documented_issue_commands())
def test_every_documented_pki_issue_command_runs(doc, command, tmp_path, capsys):
    pki.init_ca(tmp_path)
    words = shlex.split(command.replace("$PKI", str(tmp_path)).replace("$who", "alice"))
    if "--dir" not in words:
        words += ["--dir", str(tmp_path)]
    try:
        code = main(words[1:])
    except SystemExit as exc:  # argparse refuses the command line
        code = exc.code
    assert code == 0, f"{doc}: {command}\n{capsys.readouterr().err}"


def text_files() -> list[Path]:
    """The project's text files (not the tests, which quote the wrong command)."""
    skip = {"tests", "build", "dist", "node_modules"}
    suffixes = {".md", ".yml", ".yaml", ".sh", ".toml", ".cfg", ".txt", ".j2", ".py"}
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d for d in dirs if not (d.startswith(".") or d in skip or d.endswith(".egg-info"))
        ]
        found += [Path(folder, f) for f in files if Path(f).suffix in suffixes]
    return found


def test_no_doc_installs_dmr_appliance_from_pypi():
    wrong = re.compile(r"pip3? install\s+(-U\s+)?dmr-appliance\b")
    found = [
        str(p.relative_to(ROOT))
        for p in text_files()
        if p.exists() and wrong.search(p.read_text(errors="replace"))
    ]
    assert found == []


def alert_units() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "dmr-alerts.yml").read_text())
    text = " ".join(str(r.get("annotations", {})) for g in rules["groups"] for r in g["rules"])
    return {
        u.removesuffix(".service")
        for cmd in re.findall(r"systemctl \w+ ([^`]+)`", text)
        for u in cmd.split()
    }


def known_units() -> set[str]:
    """The package's units, those the roles manage and the control node's (scripts/systemd)."""
    units = {
        p.name.split(".")[1]
        for p in (ROOT / "packaging/debian").glob("dmr-appliance.*.*")
        if p.suffix in (".service", ".timer", ".path")
    }
    units |= {
        p.name.removesuffix(".service")
        for p in (ROOT / "scripts/systemd").glob("*.*")
        if p.suffix in (".service", ".timer")
    }
    for path in task_files():
        for task in tasks_of(path):
            name, args = module(task)
            if name.endswith(("systemd", "service")) and isinstance(args, dict):
                units.add(str(args.get("name", "")).removesuffix(".service"))
    return units


def test_every_unit_an_alert_names_exists():
    named = alert_units()
    assert {"dmr-relay", "nginx"} <= named
    assert named - known_units() == set()
