"""Every shell block the docs give an operator is run by a test or says why not (issue 23):
the line before its fence is ``<!-- run: tests/PATH.py::TEST[; note] -->`` (that test
reads the block from the doc and runs it: tests/integration/test_docs_run.py) or
``<!-- not run: REASON -->``. A block added without either fails here."""

from __future__ import annotations

import ast
import importlib
import re

from tests.support.doc_blocks import ROOT, all_blocks, blocks_in, doc_files


def test_the_docs_and_their_blocks_are_found():
    names = {str(p.relative_to(ROOT)) for p in doc_files()}
    assert {"README.md", "docs/operations.md", "roles/dmr_pki/README.md"} <= names
    found = all_blocks()
    assert sum(b.path == "README.md" for b in found) >= 4
    assert any(b.path == "docs/packaging.md" and not b.tag for b in found)  # untagged commands


def test_every_shell_block_is_run_or_says_why_not():
    unmarked = [b.where for b in all_blocks() if b.marker is None]
    assert unmarked == [], (
        "add <!-- run: tests/PATH.py::TEST --> or <!-- not run: REASON -->"
        f" on the line before each fence: {unmarked}"
    )
    no_reason = [b.where for b in all_blocks() if not b.note.strip()]
    assert no_reason == []


def reads_its_blocks(source: str, func: ast.FunctionDef) -> bool:
    """The test asks the docs for the blocks marked with its own name (blocks_for), so it
    runs the doc's text rather than a copy of it."""
    names = {n.value for n in ast.walk(func) if isinstance(n, ast.Constant)}
    return "blocks_for(" in source and func.name in names


def test_every_run_marker_names_a_test_that_reads_the_docs():
    wrong = []
    for block in (b for b in all_blocks() if b.marker == "run"):
        path, _, name = block.target.partition("::")
        file = ROOT / path
        if not (path.startswith("tests/") and file.is_file() and name):
            wrong.append(f"{block.where}: no test file {block.target}")
            continue
        tree = ast.parse(file.read_text())
        funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        if name not in funcs:
            wrong.append(f"{block.where}: no function {name} in {path}")
        elif not reads_its_blocks(file.read_text(), funcs[name]):
            wrong.append(f"{block.where}: {block.target} does not read its blocks from the docs")
    assert wrong == []


def test_an_unmarked_block_and_an_empty_reason_are_caught(tmp_path):
    (tmp_path / "README.md").write_text(
        "text\n\n```sh\ndmr up\n```\n\n<!-- not run:  -->\n```bash\nls\n```\n"
        "<!-- not run: needs a cluster -->\n```\nkubectl apply -k k8s\n```\n"
        "```\n participant --> router\n```\n"
    )
    blocks = blocks_in(tmp_path / "README.md", tmp_path)
    assert [(b.line, b.marker, b.note) for b in blocks] == [
        (3, None, ""),
        (8, "not run", ""),
        (12, "not run", "needs a cluster"),
    ]


def python_blocks() -> list[tuple[str, str]]:
    """(where, code) of every ```python block of the docs."""
    found = []
    for path in doc_files():
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def test_the_sdk_names_the_docs_import_exist():
    """A reader copies the Python examples: every name they import from the package must
    be there (a module moved or renamed without its docs fails here)."""
    blocks = python_blocks()
    assert any(where.startswith("docs/sender.md") for where, _ in blocks)
    missing = []
    for where, code in blocks:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmr_appl"):
                module = importlib.import_module(node.module)
                missing += [
                    f"{where}: {node.module}.{a.name}"
                    for a in node.names
                    if not hasattr(module, a.name)
                ]
    assert missing == []
