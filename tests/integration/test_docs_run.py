"""The operator's commands as the docs write them (issue 23): each test reads the shell
blocks whose marker names it (``<!-- run: tests/integration/test_docs_run.py::NAME
-->``) from the docs and runs them with bash -eu, so a changed doc runs changed. Only what
cannot exist here is replaced (a host name by the local stack's address), each replaced
text must still be in the block, and skipped commands must be named in the marker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dmr_appliance.local import layout as local_layout
from dmr_appliance.local.stack import Stack
from tests.support.doc_blocks import ROOT, Block, blocks_for

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx, pytest.mark.once]
HERE = "tests/integration/test_docs_run.py"
BIN = str(Path(sys.executable).parent)  # this venv's dmr, as an operator's PATH has it


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined (a loop's lines stay apart)."""
    out: list[str] = []
    for line in text.splitlines():
        if out and out[-1].endswith("\\"):
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def script(block: Block, replace: dict[str, str], skip: tuple[str, ...] = ()) -> str:
    """The block with ``replace`` applied and the commands starting with ``skip`` left out;
    both must match the doc, and each skipped command must be named in the marker."""
    text = block.text
    for old, new in replace.items():
        assert old in text, f"{block.where}: the test replaces {old!r}, no longer in the block"
        text = text.replace(old, new)
    kept = []
    for line in logical_lines(text):
        if line.lstrip().startswith(skip):
            continue
        kept.append(line)
    for word in skip:
        assert any(li.lstrip().startswith(word) for li in logical_lines(text)), (block.where, word)
        assert word in block.note, f"{block.where}: its marker must say that {word} is not run"
    return "\n".join(kept) + "\n"


def run(block: Block, code: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(cwd),
        "XDG_STATE_HOME": str(cwd / ".state"),
    }
    done = subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{block.where} failed as written:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def only_block(name: str) -> Block:
    found = blocks_for(f"{HERE}::{name}")
    assert len(found) == 1, f"one doc block should name {name}: {[b.where for b in found]}"
    return found[0]


def test_readme_first_message(tmp_path, monkeypatch):
    """README's "first message" after site.yml, against a local stack in the role of the
    site: its PKI holds the CA and the admin (as site.yml with the example inventory leaves
    inventories/prod/pki), no participant; home and a relay behind the router."""
    block = only_block("test_readme_first_message")
    monkeypatch.setattr(local_layout, "PARTICIPANTS", ())  # the site run issues none
    with Stack(tmp_path / "state", relays=1, port=0) as stack:
        inbox = f"https://localhost:{stack.ports['recipient']}/inbox"
        code = script(
            block,
            {
                "PKI=inventories/prod/pki ROUTER=https://router-1:8443": (
                    f"PKI={stack.pki_dir} ROUTER={stack.router_url}"
                ),
                "https://inbox.example.org:9443/inbox": inbox,
            },
        )
        out = run(block, code, tmp_path)
        sent = json.loads(out.strip().splitlines()[-1])
        delivered = [json.loads(line) for line in stack.recipient_log.read_text().splitlines()]
    assert sent["ok"], sent
    assert sent["id"] in {d.get("id") for d in delivered}, (sent, delivered)
    assert (stack.pki_dir / "server" / "inbox.pem").exists()


def test_readme_kubernetes_rendering(tmp_path):
    """README's Kubernetes steps that need no cluster, in a copy of k8s/: the secrets'
    files and the site's nginx.conf; the result is what the example overlay ships."""
    block = only_block("test_readme_kubernetes_rendering")
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s", ignore=shutil.ignore_patterns("pki"))
    code = script(block, {}, skip=("packaging/build-image.sh", "docker", "kubectl"))
    run(block, code, tmp_path)
    kustomization = (tmp_path / "k8s/secrets/kustomization.yaml").read_text()
    for file in re.findall(r"=(pki/[\w/.-]+)", kustomization):
        assert (tmp_path / "k8s/secrets" / file).is_file(), file
    rendered = (tmp_path / "k8s/overlays/prod/nginx.conf").read_text()
    assert rendered == (ROOT / "k8s/overlays/example/nginx.conf").read_text()
