"""The operator's path through the roles, as written (issue 23): what the roles and
playbooks do with the example inventory's values, read from their files without running
Ansible. The Molecule scenarios prove the same on hosts (molecule/site: upgrade.yml with
no loopback in dmr_router_admin_allow)."""

from __future__ import annotations

import base64
import configparser
import ipaddress
import re
import socket
import subprocess

import pytest

from tests.support.ansible_files import (
    PLAYBOOKS,
    ROLES,
    ROOT,
    evaluate,
    load,
    module,
    resolve,
    role_defaults,
    role_vars,
    runs,
    task_files,
    task_named,
    tasks_of,
)

EXAMPLE = ROOT / "inventories" / "example"
SCENARIO = ROOT / "molecule" / "site"
SITE = load(SCENARIO / "molecule.yml")["provisioner"]["inventory"]
KEY_FILE = re.compile(r"\.key\b|PRIVATE KEY")


def example_vars(*groups: str) -> dict:
    values: dict = {"inventory_dir": str(EXAMPLE), "groups": {}}
    for group in ("all", *groups):
        values |= load(EXAMPLE / "group_vars" / f"{group}.yml") or {}
    return values


def inventory_hosts(path) -> dict[str, dict]:
    """group -> {host: host vars} of an inventory file (all: children: GROUP: hosts:)."""
    children = load(path)["all"]["children"]
    return {
        group: {h: v or {} for h, v in body["hosts"].items()} for group, body in children.items()
    }


def example_hosts() -> dict[str, dict]:
    """group -> {host: host vars} of the example's hosts.yml."""
    return inventory_hosts(EXAMPLE / "hosts.yml")


def site_hosts() -> dict[str, dict]:
    """group -> {host: host vars} of the site scenario's own inventory (molecule/site)."""
    return inventory_hosts(SCENARIO / SITE["links"]["hosts"])


# --- a. upgrade.yml asks home from an address the router admits -----------------------------


def upgrade_home_url(router_vars: dict) -> str:
    play = load(PLAYBOOKS / "upgrade.yml")[0]
    values = {
        **play["vars"],
        "groups": {"routers": ["router-1"]},
        "hostvars": {"router-1": router_vars},
    }
    return resolve(values)["dmr_upgrade_home_url"]


def home_allow(listen_address: str) -> list[str]:
    task = task_named(ROLES / "dmr_router/tasks/upstreams.yml", "Who may reach the home API")
    values = {
        **role_defaults("dmr_router"),
        **example_vars("routers"),
        **task["vars"],
        "dmr_router_listen_address": listen_address,
        "dmr_router_relay_networks": ["192.0.2.21/32", "192.0.2.22/32"],
    }
    return evaluate(task["ansible.builtin.set_fact"]["dmr_router_home_allow"], resolve(values))


@pytest.mark.parametrize("listen", ["*", "192.0.2.31", "127.0.0.1", "2001:db8::31"])
def test_upgrade_asks_home_from_an_address_the_first_router_admits(listen):
    """The example's dmr_router_admin_allow (198.51.100.0/24) has no loopback: the role
    admits the router's own addresses all the same, which upgrade.yml calls from."""
    router = {**example_vars("routers"), "dmr_router_listen_address": listen}
    host = re.match(r"https://\[?([^\]/]+?)\]?:8443/v1/home$", upgrade_home_url(router))[1]
    source = ipaddress.ip_address(socket.gethostbyname(host) if host == "localhost" else host)
    networks = [ipaddress.ip_network(n) for n in home_allow(listen)]
    assert any(source in n for n in networks), (host, networks)


def test_the_router_role_puts_that_list_into_router_toml():
    settings = task_named(ROLES / "dmr_router/tasks/config.yml", "Assemble the router's settings")
    assert (
        "'home_allow': dmr_router_home_allow,"
        in settings["ansible.builtin.set_fact"]["dmr_router_config"]
    )


def test_the_site_scenario_admits_no_loopback_itself():
    """So that its upgrade.yml run proves the role's own admission."""
    allow = [n for v in site_hosts()["routers"].values() for n in v["dmr_router_admin_allow"]]
    assert allow
    loopback = [
        n for n in allow if ipaddress.ip_network(n).overlaps(ipaddress.ip_network("127.0.0.0/8"))
    ]
    assert loopback == []


# --- the site scenario runs on the example's own values -----------------------------------

# What the scenario's inventory may set in place of the example's: addresses (the example's
# networks), and what only a test host has (its .deb, its CA folder, the certificates of
# the recipient host and, as in the example's hosts.yml, the first router's admin key).
SITE_OVERRIDES = {
    "addresses": {
        "dmr_firewall_ssh_networks",
        "dmr_firewall_monitoring_networks",
        "dmr_router_admin_allow",
        "dmr_router_status_allow",
    },
    "test host": {"dmr_package_deb", "dmr_pki_ca_dir", "dmr_pki_extra_certificates"},
}
DOCUMENTATION_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


def names_a_site_address(value) -> bool:
    """A value naming one of the example's own (documentation) addresses or networks."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        try:
            network = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            continue
        if any(
            network.version == d.version and network.subnet_of(d) for d in DOCUMENTATION_NETWORKS
        ):
            return True
    return False


def test_the_site_scenario_links_the_examples_group_vars_and_keeps_no_copy():
    links = SITE["links"]
    assert (SCENARIO / links["group_vars"]).resolve() == (EXAMPLE / "group_vars").resolve()
    assert (SCENARIO / links["hosts"]).is_file()
    # With links, Molecule ignores these; none must pretend to configure the scenario.
    assert not {"group_vars", "host_vars", "hosts"} & set(SITE)
    assert not (SCENARIO / "group_vars").exists() and not (SCENARIO / "host_vars").exists()


def test_the_site_scenario_sets_only_addresses_and_test_host_values():
    inventory = load(SCENARIO / SITE["links"]["hosts"])["all"]
    groups = inventory["children"]
    set_vars = set(inventory.get("vars") or {})
    for body in groups.values():
        set_vars |= set(body.get("vars") or {})
        for host_vars in (body.get("hosts") or {}).values():
            set_vars |= set(host_vars or {})
    allowed = set().union(*SITE_OVERRIDES.values())
    assert set_vars - allowed == set(), "the scenario must run on the example's own values"


def test_the_site_scenario_replaces_every_address_the_example_names():
    """Each example variable naming an address is overridden on every host that uses it;
    the site's host names are the example's (plus the recipient host outside the site)."""
    site, example = site_hosts(), example_hosts()
    assert {g: set(h) for g, h in site.items() if g in example} == {
        g: set(h) for g, h in example.items()
    }
    site_groups = ("home", "relays", "routers", "logs")
    for path in (EXAMPLE / "group_vars").glob("*.yml"):
        group = path.stem
        hosts = [h for g in (site_groups if group == "all" else (group,)) for h in site[g].values()]
        for name, value in (load(path) or {}).items():
            if names_a_site_address(value):
                assert name in SITE_OVERRIDES["addresses"], (path.name, name)
                assert all(name in h for h in hosts), (path.name, name)
                assert not any(names_a_site_address(h[name]) for h in hosts), name


def test_a_folder_inventory_reads_neither_the_ca_nor_the_key_as_inventory():
    """README runs `-i inventories/prod`, a folder: Ansible reads every file in it as an
    inventory (warnings naming the CA's files on every run) unless ansible.cfg skips the
    folders where the example keeps its CA (dmr_pki_ca_dir) and the repository's key."""
    values = example_vars()
    folders = {values["dmr_pki_ca_dir"].split("/")[1], values["dmr_package_apt_key"].split("/")[1]}
    assert folders == {"pki", "files"}
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    patterns = [re.compile(x.strip()) for x in cfg["inventory"]["ignore_patterns"].split(",")]
    for name in folders:
        assert any(x.search(name) for x in patterns), name
    for name in ("hosts.yml", "prod.yml", "files.yml", "pki.yml"):
        assert not any(x.search(name) for x in patterns), name


# --- b. an explicitly given .deb wins over the inventory's apt -------------------------------


def package_tasks_run(extra: dict) -> set[str]:
    values = resolve(
        {
            **role_defaults("dmr_package"),
            **example_vars(),
            **role_vars("dmr_package"),
            "inventory_hostname": "relay-1",
            **extra,
        }
    )
    ran = set()
    for step in load(ROLES / "dmr_package/tasks/main.yml"):
        if runs(step, values):
            path = ROLES / "dmr_package/tasks" / step["ansible.builtin.import_tasks"]
            ran |= {t["name"] for t in tasks_of(path) if runs(t, values)}
    return ran


def test_an_explicit_deb_wins_over_the_example_inventorys_apt():
    ran = package_tasks_run({"dmr_package_deb": "/tmp/dmr-appliance_9.9.9_all.deb"})
    assert "Install the .deb (dependencies from Debian)" in ran
    assert not ran & {
        "Install dmr-appliance from the repository",
        "Install the repository's keyring",
        "A repository URL and key are set when installing from apt",
    }


def test_without_a_deb_the_example_installs_from_apt():
    ran = package_tasks_run({})
    assert "Install dmr-appliance from the repository" in ran
    assert "Install the .deb (dependencies from Debian)" not in ran


def test_the_example_key_is_where_the_docs_put_build_repo_shs_public_key():
    """The example's dmr_package_apt_key exists once the docs are followed (README: copy the
    example to inventories/prod; docs/packaging.md: install the key there), and the role
    checks that it is a file before using it. Its suite is the role's flat default."""
    values = resolve({**example_vars(), "inventory_dir": "inventories/prod"})
    key = values["dmr_package_apt_key"]
    assert key == "inventories/prod/files/dmr-appliance-archive-keyring.gpg"
    assert key in (ROOT / "docs/packaging.md").read_text()
    assert "cp -r inventories/example inventories/prod" in (ROOT / "README.md").read_text()
    assert not {"dmr_package_apt_suite", "dmr_package_apt_component"} & set(values)
    check = task_named(
        ROLES / "dmr_package/tasks/preflight.yml",
        "The repository's key (and CA) are files on the control node",
    )
    assert "dmr_package_apt_key is file" in check["ansible.builtin.assert"]["that"]


# --- e. keys never in Ansible's output, and only where they are used --------------------------


def unhidden_key_tasks(tasks: list[tuple[str, dict]]) -> list[str]:
    """Tasks whose src/dest/path/content names a key and that lack no_log or diff: false."""
    bad = []
    for where, task in tasks:
        _, args = module(task)
        values = (
            [args.get(k) for k in ("src", "dest", "path", "content")]
            if isinstance(args, dict)
            else []
        )
        names_key = any(isinstance(v, str) and KEY_FILE.search(v) for v in values)
        if names_key and task.get("no_log") is not True and task.get("diff") is not False:
            bad.append(f"{where}: {task.get('name')}")
    return bad


def every_task() -> list[tuple[str, dict]]:
    return [(str(p.relative_to(ROOT)), t) for p in task_files() for t in tasks_of(p)]


def test_every_task_that_handles_a_key_keeps_it_out_of_the_output():
    tasks = every_task()
    assert any(t.get("name") == "Copy the keys" for _, t in tasks)
    assert unhidden_key_tasks(tasks) == []


def test_the_key_check_finds_a_key_copy_without_either():
    task = {"name": "copy", "ansible.builtin.copy": {"src": "pki/a.key", "dest": "/x/a.key"}}
    assert unhidden_key_tasks([("t.yml", task)]) == ["t.yml: copy"]
    assert unhidden_key_tasks([("t.yml", {**task, "diff": False})]) == []


def admin_hosts(host_vars: dict[str, dict]) -> set[str]:
    return {
        h
        for h, v in host_vars.items()
        if any(c["kind"] == "admin" for c in v.get("dmr_pki_extra_certificates", []))
    }


def test_the_admin_key_goes_only_to_the_router_upgrade_yml_uses():
    for path in (EXAMPLE / "group_vars").glob("*.yml"):
        assert "dmr_pki_extra_certificates" not in (load(path) or {}), path.name
    hosts = example_hosts()
    assert admin_hosts({h: v for g in hosts.values() for h, v in g.items()}) == {
        next(iter(hosts["routers"]))
    }
    assert admin_hosts(site_hosts()["routers"]) == {"router-1"}


def test_the_role_refuses_a_vaulted_ca_key_before_signing(tmp_path):
    tasks = [t["name"] for t in tasks_of(ROLES / "dmr_pki/tasks/ca.yml")]
    assert tasks.index("Check that the CA key is readable by dmr pki") < tasks.index(
        "Issue the certificates that do not exist yet"
    )
    argv = task_named(
        ROLES / "dmr_pki/tasks/ca.yml", "Look for an ansible-vault header on the CA key"
    )["ansible.builtin.command"]["argv"]
    (tmp_path / "ca.key").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    (tmp_path / "pem.key").write_text("-----BEGIN EC PRIVATE KEY-----\n")
    rc = {
        name: subprocess.run([*argv[:-1], str(tmp_path / name)], check=False).returncode
        for name in ("ca.key", "pem.key")
    }
    assert rc == {"ca.key": 0, "pem.key": 1}


@pytest.mark.parametrize("doc", ["roles/dmr_pki/README.md", "README.md"])
def test_the_docs_show_ansible_vault_for_the_ca_key(doc):
    text = (ROOT / doc).read_text()
    assert re.search(r"ansible-vault encrypt \S*pki/ca\.key", text)
    assert re.search(r"ansible-vault decrypt", text)


# --- f. the firewall keeps the host's own file and opens no port for a missing exporter --------

FIREWALL = ROLES / "dmr_firewall"


def rules_for_a_router(**overrides) -> str:
    sites = {"router-1": "192.0.2.31", "relay-1": "192.0.2.21", "home-1": "192.0.2.10"}
    values = resolve(
        {
            **role_defaults("dmr_firewall"),
            "inventory_hostname": "router-1",
            "groups": {"routers": ["router-1"], "relays": ["relay-1"], "home": ["home-1"]},
            "dmr_firewall_monitoring_networks": ["198.51.100.0/24"],
            **overrides,
        }
    )
    values["hostvars"] = {h: {"ansible_host": a} for h, a in sites.items()}
    template = (FIREWALL / "templates/dmr.nft.j2").read_text()
    return evaluate(template.replace("{{ ansible_managed }}", "managed"), values) or ""


def test_the_exporter_port_stays_closed_unless_an_exporter_runs():
    assert "tcp dport 9113" not in rules_for_a_router()
    assert "tcp dport 8443" in rules_for_a_router()
    opened = rules_for_a_router(dmr_firewall_exporter=True)
    assert "ip saddr { 198.51.100.0/24 } tcp dport 9113 accept" in opened


def test_a_foreign_nftables_conf_is_kept_once_before_it_is_replaced():
    tasks = list(tasks_of(FIREWALL / "tasks/main.yml"))
    names = [t["name"] for t in tasks]
    keep = task_named(
        FIREWALL / "tasks/main.yml",
        "Keep a foreign /etc/nftables.conf once, as /etc/nftables.conf.dmr-orig",
    )
    write = task_named(FIREWALL / "tasks/main.yml", "Load the rule files at boot and on reload")
    assert names.index(keep["name"]) < names.index(write["name"])
    args = keep["ansible.builtin.copy"]
    assert (args["src"], args["remote_src"], args["force"]) == ("/etc/nftables.conf", True, False)

    def kept(text: str) -> bool:
        before = {"content": base64.b64encode(text.encode()).decode()}
        return runs(keep, {"dmr_firewall_conf_before": before})

    ours = write["ansible.builtin.copy"]["content"].replace(
        "{{ dmr_firewall_rules_file | dirname }}", "/etc/nftables.d"
    )
    assert kept("#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {}\n")
    assert not kept(ours)
    assert not runs(keep, {"dmr_firewall_conf_before": {"failed": True}})  # no file at all


def test_the_readme_says_what_the_local_inventory_does_to_the_hosts_firewall():
    text = (ROOT / "README.md").read_text()
    start = text.index("ansible-playbook -i inventories/local/hosts.yml dmr.appliance.site")
    paragraph = text[start : text.index("\n\n", start)]
    for word in ("dmr_firewall", "drop", "/etc/nftables.conf.dmr-orig", "--skip-tags firewall"):
        assert word in paragraph, word
