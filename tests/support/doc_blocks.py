"""The shell blocks of the operator's docs and the marker on the line before each (issue
23): ``<!-- run: tests/PATH.py::TEST[; note] -->`` (that test reads the block from the doc
and runs it) or ``<!-- not run: REASON -->``. Shared by the unit test, which requires a
marker on every block, and the integration test, which runs the ``run:`` ones."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_TAGS = {"sh", "bash", "console", "shell", "shell-session", "zsh"}
FENCE = re.compile(r"^\s*```\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*(not run|run):\s*(.*?)\s*-->\s*$")
# An untagged block is a command block when a line starts like a command (not a diagram,
# a file layout or a config line).
COMMAND = re.compile(
    r"^\s*(\$ )?(dmr|bash|sh|sudo|apt|apt-get|dpkg|ansible[\w-]*|kubectl|docker|cp|mv|rm|"
    r"mkdir|python3?|pip3?|systemctl|journalctl|molecule|curl|git|make|openssl|"
    r"[\w./-]*\.venv[\w-]*/bin/\S+|\.{0,2}/?[\w.-]+/[\w./-]*\.(sh|py))(\s|$)"
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: str  # relative to ROOT
    line: int  # the opening fence's, 1-based
    tag: str
    text: str
    marker: str | None  # "run", "not run" or None
    note: str  # a run marker's target and note; a not-run marker's reason

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def target(self) -> str:
        """A run marker's test, tests/PATH.py::NAME."""
        return self.note.split(";", 1)[0].strip()


def doc_files(root: Path = ROOT) -> list[Path]:
    """The docs an operator reads: README.md, docs/, every README under roles/, k8s/,
    monitoring/ and benchmarks/."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for folder in ("roles", "k8s", "monitoring", "benchmarks"):
        files += sorted((root / folder).rglob("README.md"))
    return [f for f in files if f.is_file()]


def is_shell(tag: str, text: str) -> bool:
    if tag:
        return tag in SHELL_TAGS
    return any(COMMAND.match(line) for line in text.splitlines())


def blocks_in(path: Path, root: Path = ROOT) -> list[Block]:
    """Every shell block of one Markdown file with the marker just before its fence."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines)
        )
        text = "\n".join(lines[i + 1 : end]) + "\n"
        if is_shell(fence.group(1), text):
            marker = MARKER.match(lines[i - 1]) if i else None
            found.append(
                Block(
                    str(path.relative_to(root)),
                    i + 1,
                    fence.group(1),
                    text,
                    marker.group(1) if marker else None,
                    marker.group(2) if marker else "",
                )
            )
        i = end + 1
    return found


def all_blocks(root: Path = ROOT) -> list[Block]:
    return [b for path in doc_files(root) for b in blocks_in(path, root)]


def blocks_for(test: str) -> list[Block]:
    """The blocks whose run marker names ``test`` (tests/PATH.py::NAME)."""
    return [b for b in all_blocks() if b.marker == "run" and b.target == test]
