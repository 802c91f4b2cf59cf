"""Every problem code an app can answer with is listed in its OpenAPI document
(``x-problem-codes``), and the document lists no code the app cannot answer with.

The codes are read from the source of every module the app imports: ``code=`` literals,
``_fail("...")`` (envelope.py), the ``code`` of each error class, Falcon's own refusals
(``web._HTTP_CODES``), and the two codes made at run time, spelled out below.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from dmr_appliance import web

PACKAGE = Path(__file__).parents[2] / "dmr_appliance"
# Not refusals an app answers with: raised at start-up or by the CLI only.
# backup-refused: dmr home backup/restore's (the app imports backup.py only to read the
# newest backup's age for its metric).
# signature-invalid: errors.ProofError's, raised by proof/ (the sender's and a recipient's
# checks), which neither app imports: a relay carries a signature unread.
NOT_ANSWERS = {"config-invalid", "pki-error", "error", "backup-refused", "signature-invalid"}
# Home imports envelope.py only for its size constant (through config.py): it parses no
# envelope, so no envelope-* code reaches its clients.
NOT_IMPORTED_FOR_CHECKS = {"home": "envelope-"}


def _module_path(name: str) -> Path | None:
    parts = name.split(".")[1:]
    for candidate in (
        PACKAGE.joinpath(*parts).with_suffix(".py"),
        PACKAGE.joinpath(*parts, "__init__.py"),
    ):
        if candidate.exists():
            return candidate
    return None


def closure(root: str) -> list[Path]:
    """Every dmr_appliance module ``root`` imports, directly or not."""
    seen: dict[str, Path] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmr_appliance"):
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("dmr_appliance")]
    return list(seen.values())


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _codes_of(node: ast.AST) -> set[str | None]:
    if isinstance(node, ast.Call):
        found = {_text(kw.value) for kw in node.keywords if kw.arg == "code"}
        if isinstance(node.func, ast.Name) and node.func.id == "_fail" and node.args:
            found.add(_text(node.args[0]))
        return found
    if isinstance(node, ast.ClassDef):
        return {
            _text(st.value)
            for st in node.body
            if isinstance(st, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "code" for t in st.targets)
        }
    return set()


def literal_codes(paths: list[Path]) -> set[str]:
    codes: set[str | None] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            codes |= _codes_of(node)
    return {c for c in codes if c} - NOT_ANSWERS


def app_codes(kind: str) -> set[str]:
    codes = literal_codes(closure(f"dmr_appliance.{kind}.app")) | set(web._HTTP_CODES.values())
    if kind in NOT_IMPORTED_FOR_CHECKS:
        codes = {c for c in codes if not c.startswith(NOT_IMPORTED_FOR_CHECKS[kind])}
    if kind == "relay":
        # messages.card_refused: a refused card is "card-" + the reason tokens.py gave.
        codes |= {
            "card-" + c.removeprefix("token-")
            for c in literal_codes([PACKAGE / "tokens.py", PACKAGE / "errors.py"])
            if c.startswith("token-")
        }
        # trust.check_active: f"{role}-{state}"
        codes |= {
            f"{role}-{state}"
            for role in ("sender", "recipient")
            for state in ("revoked", "suspended")
        }
    return codes


@pytest.mark.parametrize("kind", ["relay", "home"])
def test_every_problem_code_is_in_the_openapi_document(kind):
    listed = set(json.loads((PACKAGE / "openapi" / f"{kind}.json").read_text())["x-problem-codes"])
    codes = app_codes(kind)
    assert sorted(codes - listed) == [], f"raised by {kind} but not in openapi/{kind}.json"
    assert sorted(listed - codes) == [], f"in openapi/{kind}.json but never raised by {kind}"


def test_the_collector_sees_the_codes_of_the_request_path():
    relay = app_codes("relay")
    assert {
        "not-ready",
        "token-expired",
        "card-expired",
        "envelope-too-large",
        "unsupported-media-type",
        "sender-suspended",
        "delivery-failed",
    } <= relay
    assert {"participant-not-found", "failure-not-found"} <= app_codes("home")
