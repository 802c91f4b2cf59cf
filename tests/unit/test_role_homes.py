"""Several home hosts in the inventory (issue 25, item 3), read from the roles' files
without running Ansible: each router lists every home of the home group (or those named
by hand, one string still accepted), the router checks that it has one, and dmr_pki
issues one certificate per home host while a single home host keeps its `home`."""

from __future__ import annotations

import pytest

from dmr_appliance import config
from tests.support.ansible_files import (
    ROLES,
    ROOT,
    evaluate,
    load,
    resolve,
    role_defaults,
    runs,
    task_named,
)

UPSTREAMS = ROLES / "dmr_router/tasks/upstreams.yml"
HOMES = {"home-1": {"ansible_host": "192.0.2.10"}, "home-2": {"ansible_host": "2001:db8::11"}}


def router_homes(by_hand, homes: dict[str, dict]) -> list[str]:
    """dmr_router_home_upstream as the role's two tasks leave it (the loop run by hand)."""
    values = {
        **role_defaults("dmr_router"),
        "dmr_router_home": by_hand,
        "groups": {"home": list(homes)},
        "hostvars": homes,
    }
    start = task_named(UPSTREAMS, "Start from the homes set by hand")
    values["dmr_router_home_upstream"] = evaluate(
        start["ansible.builtin.set_fact"]["dmr_router_home_upstream"], values
    )
    add = task_named(UPSTREAMS, "Add every home of the inventory")
    assert add["loop"] == "{{ groups.get(dmr_router_home_group, []) }}"
    for item in homes:
        if runs(add, values):
            values["dmr_router_home_upstream"] = evaluate(
                add["ansible.builtin.set_fact"]["dmr_router_home_upstream"],
                {**values, "item": item},
            )
    return values["dmr_router_home_upstream"]


def test_the_router_lists_every_home_host():
    homes = {**HOMES, "home-3": {"dmr_home_bind": "0.0.0.0:9700"}}
    assert router_homes([], homes) == ["192.0.2.10:8700", "2001:db8::11:8700", "home-3:9700"]
    assert router_homes([], {"home-1": HOMES["home-1"]}) == ["192.0.2.10:8700"]


@pytest.mark.parametrize(
    "by_hand, expected",
    [("h1:8700", ["h1:8700"]), (["h1:8700", "h2:8700"], ["h1:8700", "h2:8700"])],
)
def test_homes_named_by_hand_replace_the_group(by_hand, expected):
    assert router_homes(by_hand, HOMES) == expected


def test_no_home_stops_the_play():
    check = task_named(UPSTREAMS, "There are relays and a home to route to")
    that = check["ansible.builtin.assert"]["that"]
    values = {"dmr_router_relay_upstreams": ["r:8801"], "dmr_router_home_upstream": []}
    assert not all(evaluate(c, values) for c in that)
    values["dmr_router_home_upstream"] = router_homes([], HOMES)
    assert all(evaluate(c, values) for c in that)


def test_the_router_toml_the_role_writes_takes_the_list():
    settings = task_named(ROLES / "dmr_router/tasks/config.yml", "Assemble the router's settings")
    assert "'home': dmr_router_home_upstream," in settings["ansible.builtin.set_fact"][
        "dmr_router_config"
    ].replace("\n", " ")
    routed = config.RouterConfig(home=router_homes([], HOMES))
    assert routed.home == ["192.0.2.10:8700", "2001:db8::11:8700"]


def pki_home_cert(host: str, homes: list[str]) -> tuple[str, str]:
    """(name in the CA folder, path on the host) of ``host``'s home certificate."""
    values = resolve(
        {**role_defaults("dmr_pki"), "inventory_hostname": host, "groups": {"home": homes}}
    )
    task = task_named(ROLES / "dmr_pki/tasks/certificates.yml", "Home's server certificate")
    assert runs(task, values)
    (item,) = evaluate(
        task["ansible.builtin.set_fact"]["dmr_pki_host_certificates"],
        {**values, "dmr_pki_host_certificates": []},
    )
    return item["name"], item["dest"]


def test_one_home_host_keeps_its_certificate():
    assert pki_home_cert("home-1", ["home-1"]) == ("home", "server/home")


def test_each_home_host_has_its_own_certificate():
    homes = ["home-1", "home-2"]
    names = [pki_home_cert(host, homes) for host in homes]
    assert names == [("home-home-1", "server/home"), ("home-home-2", "server/home")]


def test_the_example_inventory_no_longer_says_one_home():
    text = (ROOT / "inventories/example/hosts.yml").read_text()
    assert "exactly one host" not in text
    assert set(load(ROOT / "inventories/example/hosts.yml")["all"]["children"]) >= {"home"}


@pytest.mark.parametrize(
    "homes, expected", [(["home-1"], ["home"]), (["home-1", "home-2"], ["home-1", "home-2"])]
)
def test_each_home_host_logs_under_its_own_name(homes, expected):
    names = [
        resolve({**role_defaults("dmr_home"), "inventory_hostname": h, "groups": {"home": homes}})[
            "dmr_home_instance"
        ]
        for h in homes
    ]
    assert names == expected
    assert all(config.load(config.HomeConfig, environ={"DMR_INSTANCE": n}) for n in names)
