"""docs/architecture.md's module map names every module of the package, each in the entry
of its own package, so that a newcomer finds every file there (issue 24)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dmr_appliance"


def module_map() -> dict[str, str]:
    """Entry (``home/``, or ``""`` for the top level) -> its text in the map."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("## Module map and import direction", 1)[1].split("```")[1]
    entries: dict[str, str] = {"": ""}
    current = ""
    for line in block.splitlines()[2:]:  # after "dmr_appliance/"
        head = re.match(r"  (\w+)/ ", line)
        if head:
            current = head.group(1)
        elif re.match(r"  \S", line):
            current = ""
        entries[current] = entries.get(current, "") + line + "\n"
    return entries


def test_every_module_is_in_its_packages_entry() -> None:
    entries = module_map()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        package = path.relative_to(PACKAGE).parts[0] if path.parent != PACKAGE else ""
        text = entries.get(package, "")
        if not re.search(rf"(?<![\w.]){re.escape(path.stem)}(\.py)?\b", text):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == [], f"not in docs/architecture.md's module map: {missing}"
