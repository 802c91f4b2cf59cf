"""docs/security.md names a test for every claim: each one it cites must exist, so the
threat model cannot drift from what the suite proves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"`(test_[a-z0-9_]+\.py)((?:::test_[a-z0-9_]+)?)(?:\[[^\]]*\])?`")
FOLLOW_ON = re.compile(r"`::(test_[a-z0-9_]+)`")


def functions_of(module: str) -> set[str]:
    [path] = list((ROOT / "tests").rglob(module))
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_the_threat_model_cites_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    cited, module = 0, None
    # In reading order: `file.py::name`, then `::other` names another test of that file.
    for token in re.findall(r"`([^`]+)`", text):
        if (match := CITED.fullmatch(f"`{token}`")) is not None:
            module, name = match.group(1), match.group(2).removeprefix("::")
        elif (match := FOLLOW_ON.fullmatch(f"`{token}`")) is not None:
            name = match.group(1)
        else:
            continue
        if name:
            assert module and name in functions_of(module), f"{module}::{name}"
            cited += 1
    assert cited >= 30
