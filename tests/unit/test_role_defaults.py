"""The service roles restate config.py's defaults (issue 24), so that an operator reads
every setting in the role's README: each role variable that tasks/config.yml puts into a
TOML key has config.py's default for that key, except the deployment choices named below
with their reason; and the role's defaults, argument_specs and README give one value.
Read from the files: the settings mapping of tasks/config.yml is parsed with Jinja, and a
key whose value comes from the inventory (a fact, or a default that is a template) is not
a restatement."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2 import nodes
from jinja2.visitor import NodeTransformer

from dmr_appliance import config
from tests.support.ansible_files import ROLES, load, module, role_defaults

SCHEMAS = {"home": config.HomeConfig, "relay": config.RelayConfig, "router": config.RouterConfig}

# Where a role's default differs from config.py's on purpose: config.py's are those of the
# stack on one machine (loopback, its own nginx), the roles' those of a site of VMs.
CHOICES = {
    ("home", "bind"): "home's gate listens for the routers on every address of its host",
    ("relay", "bind"): "a relay's gate listens for the routers on every address of its host",
    ("router", "listen_address"): "the router serves participants on every address",
    ("router", "allow"): "participants send from anywhere (with a client certificate)",
    ("router", "pid_file"): "Debian's nginx.service writes /run/nginx.pid",
}


def settings_mapping(kind: str) -> nodes.Dict:
    """The mapping tasks/config.yml assembles, before dmr_KIND_settings is merged over it."""
    fact = f"dmr_{kind}_config"
    [task] = [
        t
        for t in load(ROLES / f"dmr_{kind}/tasks/config.yml")
        if module(t)[0] == "ansible.builtin.set_fact" and fact in module(t)[1]
    ]
    tree = jinja2.Environment(autoescape=False).parse(module(task)[1][fact])  # noqa: S701
    return tree.find(nodes.Dict)


class Restate(NodeTransformer):
    """Each variable replaced by its role default; what names another is left as it is."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        value = self.defaults.get(node.name)
        if value is None or (isinstance(value, str) and "{{" in value):
            return node
        return nodes.Const(value, lineno=node.lineno)


def restated(kind: str) -> dict[tuple[str, ...], Any]:
    """{TOML key path: the value the role writes by default}, for every key whose value
    follows from the role's own literal defaults alone."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701
    restate = Restate(role_defaults(f"dmr_{kind}"))
    found: dict[tuple[str, ...], Any] = {}

    def walk(mapping: nodes.Dict, path: tuple[str, ...]) -> None:
        for pair in mapping.items:
            key = (*path, pair.key.as_const())
            if isinstance(pair.value, nodes.Dict):
                walk(pair.value, key)
                continue
            value = restate.visit(pair.value)
            if not isinstance(value, nodes.Name) and not list(value.find_all(nodes.Name)):
                found[key] = value.as_const(nodes.EvalContext(env))

    walk(settings_mapping(kind), ())
    return found


def package_default(kind: str, path: tuple[str, ...]) -> Any:
    value: Any = SCHEMAS[kind]()
    for name in path:
        assert name in {f.name for f in dataclasses.fields(value)}, f"config.py has no {path}"
        value = getattr(value, name)
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_default_a_role_restates_is_config_py_s(kind):
    values = restated(kind)
    assert len(values) >= 6, values  # the mapping is still found and read
    differ = {
        ".".join(path): (value, package_default(kind, path))
        for path, value in values.items()
        if (kind, ".".join(path)) not in CHOICES and value != package_default(kind, path)
    }
    assert differ == {}, f"dmr_{kind}'s default vs config.py's: {differ}"


@pytest.mark.parametrize("kind,key", sorted(CHOICES))
def test_each_deployment_choice_still_differs(kind, key):
    """A choice that config.py came to share is a plain restatement: drop it from CHOICES."""
    path = tuple(key.split("."))
    assert path in restated(kind)
    assert restated(kind)[path] != package_default(kind, path)


def test_what_the_relay_role_restates_of_the_others_agrees():
    relay, home, router = (role_defaults(f"dmr_{k}") for k in ("relay", "home", "router"))
    assert relay["dmr_relay_issuer"] == home["dmr_home_issuer"]
    assert relay["dmr_relay_router_port"] == router["dmr_router_port"]
    # the next relay drains only once the routers take the last one back
    assert relay["dmr_relay_rejoin_seconds"] > config.Upstreams().fail_timeout


def readme_defaults(kind: str) -> dict[str, Any]:
    """The README table's default column, as YAML: | `name` | type | `default` | meaning |"""
    row = re.compile(r"^\| `(dmr_\w+)` \|(?:[^|\\]|\\\|)*\| `(.*?)` \|", re.M)
    text = (ROLES / f"dmr_{kind}/README.md").read_text()
    return {m[1]: yaml.safe_load(m[2].replace("\\|", "|")) for m in row.finditer(text)}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_defaults_argument_specs_and_readme_agree(kind):
    defaults = role_defaults(f"dmr_{kind}")
    specs = load(ROLES / f"dmr_{kind}/meta/argument_specs.yml")["argument_specs"]["main"]
    options = specs["options"]
    assert set(options) == set(defaults)
    assert {k: o["default"] for k, o in options.items() if "default" in o} == {
        k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)
    }
    assert readme_defaults(kind) == defaults
