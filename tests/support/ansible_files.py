"""The repository's Ansible files read without Ansible: roles' tasks, inventories' variables,
and their Jinja expressions evaluated with the few Ansible filters and tests they use, so
that unit tests can ask what a role does with an operator's values."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
PLAYBOOKS = ROOT / "playbooks"
# Keys of a task that are not its module.
TASK_KEYWORDS = {
    "name",
    "when",
    "loop",
    "loop_control",
    "register",
    "notify",
    "tags",
    "vars",
    "become",
    "delegate_to",
    "run_once",
    "changed_when",
    "failed_when",
    "check_mode",
    "no_log",
    "diff",
    "retries",
    "delay",
    "until",
    "listen",
    "block",
    "rescue",
    "always",
    "ignore_errors",
    "delegate_facts",
    "environment",
    "args",
    "become_user",
    "throttle",
    "any_errors_fatal",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def conditions(task: dict) -> list:
    when = task.get("when", [])
    return when if isinstance(when, list) else [when]


def walk(tasks: list[dict] | None, inherited: tuple = ()) -> Iterator[dict]:
    """Every task of a task list, blocks' tasks included (the block itself too), each with
    the `when:` conditions of its blocks added to its own, as Ansible applies them."""
    for task in tasks or []:
        when = [*inherited, *conditions(task)]
        yield {**task, "when": when} if when else task
        for part in ("block", "rescue", "always"):
            yield from walk(task.get(part), tuple(when))


def module(task: dict) -> tuple[str, Any]:
    """(module name, its arguments) of a task; ("", None) for a bare block."""
    names = [k for k in task if k not in TASK_KEYWORDS]
    return (names[0], task[names[0]]) if names else ("", None)


def task_files() -> Iterator[Path]:
    """The roles' task and handler files, and the playbooks."""
    yield from sorted(ROLES.glob("*/tasks/*.yml"))
    yield from sorted(ROLES.glob("*/handlers/*.yml"))
    yield from sorted(PLAYBOOKS.glob("*.yml"))


def tasks_of(path: Path) -> Iterator[dict]:
    """Tasks of a task file, or of every play (tasks, pre/post_tasks, handlers) of a playbook."""
    data = load(path) or []
    plays = [d for d in data if "hosts" in d]
    if not plays:
        yield from walk(data)
    for play in plays:
        for part in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            yield from walk(play.get(part))


def environment() -> jinja2.Environment:
    # Ansible's own settings: YAML and config files, no HTML to escape.
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)  # noqa: S701
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
    env.tests["search"] = lambda value, pattern: re.search(pattern, str(value)) is not None
    env.filters["b64decode"] = lambda text: base64.b64decode(text).decode()
    env.filters["unique"] = lambda values: list(dict.fromkeys(values))  # Ansible's: a list
    # A registered result read before its task ran: nothing changed.
    env.tests["changed"] = lambda value: isinstance(value, dict) and bool(value.get("changed"))
    env.filters["bool"] = lambda v: (
        v if isinstance(v, bool) else str(v).lower() in ("true", "yes", "1", "on")
    )
    return env


def native(text: str) -> Any:
    """A rendered template as a value (Ansible's own conversion of "True", "[...]", "8443")."""
    try:
        return yaml.safe_load(text.strip())
    except yaml.YAMLError:
        return text.strip()


def resolve(variables: dict[str, Any], rounds: int = 6) -> dict[str, Any]:
    """Variables whose values are templates rendered against the others, as Ansible would
    lazily (a few rounds: templates naming templates)."""
    env, values = environment(), dict(variables)
    for _ in range(rounds):
        for key, value in values.items():
            if isinstance(value, str) and "{{" in value:
                values[key] = native(env.from_string(value).render(values))
    return values


def evaluate(expression: str | bool, variables: dict[str, Any]) -> Any:
    """A `when:`-style bare expression (or a "{{ }}" template) against the variables."""
    if isinstance(expression, bool):
        return expression
    env = environment()
    if "{{" in expression:
        return native(env.from_string(expression).render(variables))
    return env.compile_expression(expression)(**variables)


def runs(task: dict, variables: dict[str, Any]) -> bool:
    """Whether every `when:` condition of the task holds."""
    return all(evaluate(c, variables) for c in conditions(task))


def role_defaults(role: str) -> dict[str, Any]:
    return load(ROLES / role / "defaults/main.yml") or {}


def role_vars(role: str) -> dict[str, Any]:
    path = ROLES / role / "vars/main.yml"
    return (load(path) or {}) if path.exists() else {}


def task_named(path: Path, name: str) -> dict:
    return next(t for t in tasks_of(path) if t.get("name") == name)
