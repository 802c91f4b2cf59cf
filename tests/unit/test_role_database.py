"""Home's database tier in Ansible (issue 25, item 4), read from the roles' files without
running Ansible: Patroni's settings (valid YAML, the expected keys, pg_hba open to the home
hosts only), etcd's, HAProxy's on the home hosts, the firewall's rules, dmr_pki's database
certificates, and home.toml's [store] as dmr_home writes it (SQLite without a database
group, PostgreSQL through the local proxy with one)."""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
import pytest
import yaml

from dmr_appliance import config
from tests.support.ansible_files import (
    PLAYBOOKS,
    ROLES,
    environment,
    evaluate,
    load,
    module,
    native,
    resolve,
    role_defaults,
    role_vars,
    runs,
    task_files,
    task_named,
    tasks_of,
)

DATABASE = ROLES / "dmr_database"
HOSTS = {
    "home-1": {"ansible_host": "192.0.2.10"},
    "home-2": {"ansible_host": "192.0.2.11"},
    "db-1": {"ansible_host": "192.0.2.51"},
    "db-2": {"ansible_host": "192.0.2.52"},
    "etcd-1": {"ansible_host": "192.0.2.61"},
    "relay-1": {"ansible_host": "192.0.2.21"},
    "router-1": {"ansible_host": "192.0.2.31"},
}
GROUPS = {
    "home": ["home-1", "home-2"],
    "database": ["db-1", "db-2"],
    "database_etcd": ["etcd-1"],
    "relays": ["relay-1"],
    "routers": ["router-1"],
}
SECRET = "s3cr'et: #x"  # a quote, a colon and a hash: YAML must quote it


def render_env() -> jinja2.Environment:
    """ansible_files' environment plus the filters these templates use."""
    env = environment()
    env.filters["to_nice_yaml"] = lambda v, indent=2, width=80: yaml.safe_dump(
        v, indent=indent, width=width, default_flow_style=False, sort_keys=True
    )
    env.filters["combine"] = lambda a, *others, recursive=False: {
        **a,
        **{k: v for o in others for k, v in o.items()},
    }
    env.filters["regex_replace"] = lambda v, pattern, repl="": re.sub(
        pattern, repl.replace("\\1", r"\1"), str(v)
    )
    env.filters["extract"] = lambda key, container: container[key]
    env.filters["to_json"] = json.dumps
    return env


def database_values(host: str, groups: dict | None = None, release: str = "12", **over) -> dict:
    groups = GROUPS if groups is None else groups
    values: dict[str, Any] = {
        **role_defaults("dmr_database"),
        **role_vars("dmr_database"),
        "inventory_hostname": host,
        "inventory_dir": "/inv",
        "groups": groups,
        "hostvars": {h: v for h, v in HOSTS.items() if any(h in g for g in groups.values())},
        "ansible_facts": {"distribution_major_version": release},
        "dmr_database_superuser_password": SECRET,
        "dmr_database_replication_password": SECRET,
        "dmr_database_rewind_password": SECRET,
        "dmr_database_restapi_password": SECRET,
        "dmr_home_store_password": SECRET,
        **over,
    }
    # ansible_files.resolve renders with its own environment: these need the extra filters.
    env = render_env()
    for _ in range(6):
        for key, value in values.items():
            if isinstance(value, str) and "{{" in value:
                values[key] = native(env.from_string(value).render(values))
    return values


def render(template: str, values: dict) -> str:
    text = (DATABASE / "templates" / template).read_text()
    return render_env().from_string(text).render({**values, "ansible_managed": "managed"})


def patroni(host: str = "db-1", **kw) -> dict:
    return yaml.safe_load(render("patroni.yml.j2", database_values(host, **kw)))


# --- Patroni ------------------------------------------------------------------------------------


def test_patroni_yml_is_valid_yaml_with_the_expected_keys():
    conf = patroni()
    assert {"scope", "name", "restapi", "ctl", "etcd3", "bootstrap", "postgresql"} <= set(conf)
    assert conf["name"] == "db-1"
    assert conf["restapi"]["connect_address"] == "192.0.2.51:8008"
    assert conf["restapi"]["certfile"] == "/etc/dmr-database/tls/server.pem"
    assert conf["restapi"]["verify_client"] == "optional"
    assert conf["etcd3"] == {
        "hosts": ["192.0.2.61:2379"],
        "protocol": "https",
        "cacert": "/etc/dmr-database/tls/ca.pem",
        "cert": "/etc/dmr-database/tls/server.pem",
        "key": "/etc/dmr-database/tls/server.key",
    }
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10)
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"
    assert dcs["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"
    pg = conf["postgresql"]
    assert pg["listen"] == "192.0.2.51,127.0.0.1:5432"
    assert pg["connect_address"] == "192.0.2.51:5432"
    assert pg["parameters"]["ssl"] == "on"
    assert pg["parameters"]["ssl_key_file"] == "/etc/dmr-database/tls/server.key"
    assert pg["authentication"]["replication"]["sslmode"] == "verify-ca"
    assert pg["basebackup"] == [{"checkpoint": "fast"}]  # a new standby starts at once


def test_a_password_with_quotes_and_colons_survives_the_yaml():
    conf = patroni()
    auth = conf["postgresql"]["authentication"]
    assert auth["superuser"]["password"] == SECRET
    assert auth["replication"]["password"] == SECRET
    assert conf["restapi"]["authentication"]["password"] == SECRET


@pytest.mark.parametrize("release, version", [("12", "15"), ("13", "17")])
def test_postgresql_follows_the_release(release, version):
    pg = patroni(release=release)["postgresql"]
    assert pg["bin_dir"] == f"/usr/lib/postgresql/{version}/bin"
    assert pg["data_dir"] == f"/var/lib/postgresql/{version}/patroni"
    values = database_values("db-1", release=release)
    assert str(values["dmr_database_postgresql_version"]) == version


def test_pg_hba_lets_in_only_the_home_hosts_for_home_and_the_members_for_replication():
    hba = patroni()["postgresql"]["pg_hba"]
    remote = [line.split() for line in hba if not line.startswith("local ")]
    assert all(words[0] == "hostssl" for words in remote)  # never host (clear) nor a network
    assert all(words[-1] == "scram-sha-256" for words in remote)
    home = [w[3] for w in remote if w[1:3] == ["dmr_home", "dmr_home"]]
    assert home == ["192.0.2.10/32", "192.0.2.11/32"]
    replication = [w[3] for w in remote if w[1] == "replication"]
    assert replication == ["192.0.2.51/32", "192.0.2.52/32"]
    every_source = {w[3] for w in remote}
    assert every_source == {"192.0.2.10/32", "192.0.2.11/32", "192.0.2.51/32", "192.0.2.52/32"}
    assert "192.0.2.21/32" not in every_source  # a relay
    assert "local all postgres peer" in hba
    # Patroni 3.0.2's validator (Debian 12) wants it under bootstrap too: the same lines
    assert patroni()["bootstrap"]["pg_hba"] == hba


def test_the_members_list_each_other_and_an_etcd_of_their_own():
    names = {patroni(h)["name"] for h in GROUPS["database"]}
    assert names == {"db-1", "db-2"}
    alone = {k: v for k, v in GROUPS.items() if k != "database_etcd"}
    assert patroni(groups=alone)["etcd3"]["hosts"] == ["192.0.2.51:2379", "192.0.2.52:2379"]


# --- etcd ------------------------------------------------------------------------------------


def etcd_env(host: str, groups: dict | None = None) -> dict[str, str]:
    text = render("etcd.default.j2", database_values(host, groups))
    pairs = [line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"]
    return {k: v.strip('"') for k, v in pairs}


def test_etcd_is_one_member_of_its_group_with_tls_both_ways():
    env = etcd_env("etcd-1")
    assert env["ETCD_NAME"] == "etcd-1"
    assert env["ETCD_INITIAL_CLUSTER"] == "etcd-1=https://192.0.2.61:2380"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://192.0.2.61:2379"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_TRUSTED_CA_FILE"] == "/etc/dmr-database/tls/ca.pem"


def test_without_an_etcd_group_etcd_runs_on_the_database_hosts():
    groups = {k: v for k, v in GROUPS.items() if k != "database_etcd"}
    env = etcd_env("db-2", groups)
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "db-1=https://192.0.2.51:2380,db-2=https://192.0.2.52:2380"
    )


# --- HAProxy on the home hosts ---------------------------------------------------------------


def test_haproxy_listens_on_loopback_and_follows_patronis_primary():
    text = render("haproxy.cfg.j2", database_values("home-1"))
    assert "bind 127.0.0.1:5433" in text
    assert "option httpchk GET /primary" in text
    assert "verify required ca-file /etc/haproxy/dmr-database-ca.pem" in text
    assert "verifyhost database.dmr.internal" in text
    servers = re.findall(r"^\s*server (\S+) (\S+) check port (\d+)$", text, re.M)
    assert servers == [("db-1", "192.0.2.51:5432", "8008"), ("db-2", "192.0.2.52:5432", "8008")]


# --- the firewall ------------------------------------------------------------------------------


def rules(host: str, groups: dict | None = None) -> str:
    groups = GROUPS if groups is None else groups
    values = resolve(
        {**role_defaults("dmr_firewall"), "inventory_hostname": host, "groups": groups}
    )
    values["hostvars"] = HOSTS
    template = (ROLES / "dmr_firewall/templates/dmr.nft.j2").read_text()
    return evaluate(template.replace("{{ ansible_managed }}", "managed"), values) or ""


def sources(text: str, port: int) -> set[str]:
    found = re.findall(r"ip saddr \{ ([^}]*) \} tcp dport " + str(port) + " accept", text)
    return {a.strip() for line in found for a in line.split(",")}


def test_postgresql_and_patroni_open_to_the_home_hosts_and_the_members_only():
    db = rules("db-1")
    homes_and_members = {"192.0.2.10", "192.0.2.11", "192.0.2.51", "192.0.2.52"}
    assert sources(db, 5432) == homes_and_members
    assert sources(db, 8008) == homes_and_members
    assert sources(db, 2379) == set()  # etcd runs on etcd-1
    etcd = rules("etcd-1")
    assert sources(etcd, 2379) == {"192.0.2.51", "192.0.2.52", "192.0.2.61"}
    assert sources(etcd, 2380) == {"192.0.2.61"}
    assert sources(etcd, 5432) == set()
    for other in ("home-1", "relay-1", "router-1"):
        assert not {5432, 8008, 2379, 2380} & {
            int(p) for p in re.findall(r"tcp dport (\d+)", rules(other))
        }


def test_without_an_etcd_group_the_database_hosts_open_etcds_ports_to_each_other():
    groups = {k: v for k, v in GROUPS.items() if k != "database_etcd"}
    db = rules("db-1", groups)
    assert sources(db, 2379) == sources(db, 2380) == {"192.0.2.51", "192.0.2.52"}


# --- dmr_pki --------------------------------------------------------------------------------------


def database_certificate(host: str) -> dict:
    values = resolve(
        {
            **role_defaults("dmr_pki"),
            "inventory_hostname": host,
            "groups": GROUPS,
            "ansible_host": HOSTS[host]["ansible_host"],
            "ansible_default_ipv4": {"address": HOSTS[host]["ansible_host"]},
        }
    )
    task = task_named(ROLES / "dmr_pki/tasks/certificates.yml", "The database tier's certificate")
    assert runs(task, values)
    (item,) = evaluate(
        task["ansible.builtin.set_fact"]["dmr_pki_host_certificates"],
        {**values, "dmr_pki_host_certificates": []},
    )
    return item


@pytest.mark.parametrize("host", ["db-1", "etcd-1"])
def test_each_database_and_etcd_host_gets_a_server_certificate_with_the_tls_name(host):
    item = database_certificate(host)
    assert (item["kind"], item["name"], item["dest"]) == (
        "server",
        f"database-{host}",
        "server/database",
    )
    assert "database.dmr.internal" in item["dns"]
    assert HOSTS[host]["ansible_host"] in item["ip"]
    values = database_values(host)
    assert values["dmr_database_cert_name"] == item["name"]
    assert values["dmr_database_tls_name"] == "database.dmr.internal"


def test_no_database_certificate_for_the_other_hosts():
    values = resolve({**role_defaults("dmr_pki"), "inventory_hostname": "home-1", "groups": GROUPS})
    task = task_named(ROLES / "dmr_pki/tasks/certificates.yml", "The database tier's certificate")
    assert not runs(task, values)


# --- dmr_home's [store] -------------------------------------------------------------------------


def home_toml(groups: dict, tmp_path) -> config.HomeConfig:
    values = resolve(
        {
            **role_defaults("dmr_home"),
            "inventory_hostname": "home-1",
            "inventory_dir": "/inv",
            "groups": groups,
        }
    )
    # Ansible keeps an empty rendering as "" (ansible_files.native reads it as YAML: None).
    values["dmr_home_store_url"] = values["dmr_home_store_url"] or ""
    task = task_named(ROLES / "dmr_home/tasks/config.yml", "Assemble home's settings")
    env = render_env()
    text = task["ansible.builtin.set_fact"]["dmr_home_config"]
    mapping = native(env.from_string(text).render(values))
    assert isinstance(mapping, dict)
    template = (ROLES / "dmr_service/templates/toml.j2").read_text()
    out = env.from_string(template).render(dmr_service_config=mapping, dmr_service_kind="home")
    path = tmp_path / "home.toml"
    path.write_text(out)
    return config.load(config.HomeConfig, path, environ={})


def test_without_a_database_group_home_stays_on_sqlite(tmp_path):
    conf = home_toml({"home": ["home-1"]}, tmp_path)
    assert conf.store.url == ""
    assert conf.store.password_file == conf.store.key_file == ""


def test_with_a_database_group_home_uses_postgresql_through_the_local_proxy(tmp_path):
    conf = home_toml(GROUPS, tmp_path)
    assert conf.store.url == (
        "postgresql://dmr_home@database.dmr.internal:5433/dmr_home?hostaddr=127.0.0.1"
        "&sslmode=verify-full&sslrootcert=/etc/dmr-appliance/pki/ca.pem"
    )
    assert config.store_url(conf.store.url) is None  # no password in it
    assert conf.store.password_file == "/etc/dmr-appliance/home-db.password"
    assert conf.store.key_file == "/etc/dmr-appliance/home-kek"


def test_home_and_the_database_tier_agree_on_names_and_ports():
    home = role_defaults("dmr_home")
    db = role_defaults("dmr_database")
    pki = role_defaults("dmr_pki")
    assert home["dmr_home_store_database"] == db["dmr_database_name"]
    assert home["dmr_home_store_user"] == db["dmr_database_home_user"]
    assert home["dmr_home_store_proxy_port"] == db["dmr_database_proxy_port"]
    # one name, set once (dmr_pki_database_tls_name), which both roles follow
    follow = "{{ dmr_pki_database_tls_name | default('database.dmr.internal') }}"
    assert home["dmr_home_store_tls_name"] == db["dmr_database_tls_name"] == follow
    assert pki["dmr_pki_database_tls_name"] == "database.dmr.internal"
    renamed = {"dmr_pki_database_tls_name": "pg.example", "groups": {}, "inventory_dir": "/inv"}
    assert resolve({**home, **renamed})["dmr_home_store_tls_name"] == "pg.example"
    assert resolve({**db, **renamed})["dmr_database_tls_name"] == "pg.example"


def test_the_store_tasks_run_only_with_a_store_url():
    main = load(ROLES / "dmr_home/tasks/main.yml")
    store = next(t for t in main if t.get("ansible.builtin.import_tasks") == "store.yml")
    values = {"dmr_home_store_url": ""}
    assert not runs(store, values)
    assert runs(store, {"dmr_home_store_url": "postgresql://x@h/db"})


# --- passwords never in Ansible's output -------------------------------------------------------

PASSWORD = re.compile(r"dmr_(home_store|database_\w+?)_password\b")


def test_every_task_that_holds_a_password_has_no_log():
    """Each task whose arguments carry a password's value; an assert only names the
    variable (`| length > 0`: its failure shows the expression, never the value), and
    no_log would hide its message."""
    offenders = []
    for path in task_files():
        for task in tasks_of(path):
            _, args = module(task)
            if args is None or "block" in task or module(task)[0] == "ansible.builtin.assert":
                continue
            text = json.dumps({k: v for k, v in task.items() if k not in ("name", "when")})
            if PASSWORD.search(text) and task.get("no_log") is not True:
                offenders.append(f"{path.name}: {task.get('name')}")
    assert offenders == []


def test_patronis_settings_are_written_without_a_diff_and_readable_by_postgres_only():
    task = task_named(DATABASE / "tasks/patroni.yml", "Write Patroni's settings")
    assert task["diff"] is False
    args = task["ansible.builtin.template"]
    assert (args["owner"], args["mode"]) == ("postgres", "0600")


def test_debians_cluster_is_kept_from_being_made_before_postgresql_is_installed():
    names = [t["name"] for t in tasks_of(DATABASE / "tasks/patroni.yml")]
    assert names.index("Keep Debian from creating a cluster on install") < names.index(
        "Install PostgreSQL and Patroni (Debian's packages)"
    )
    keep = task_named(
        DATABASE / "tasks/patroni.yml", "Keep Debian from creating a cluster on install"
    )
    assert keep["ansible.builtin.lineinfile"]["line"] == "create_main_cluster = false"


# --- the playbooks ------------------------------------------------------------------------------


def test_site_runs_the_database_tier_before_home():
    steps = [p["ansible.builtin.import_playbook"] for p in load(PLAYBOOKS / "site.yml")]
    assert steps.index("database.yml") < steps.index("home.yml")


def test_the_database_playbook_does_nothing_without_a_database_group():
    plays = load(PLAYBOOKS / "database.yml")
    assert plays[0]["hosts"] == "database:database_etcd"  # no such group: no host
    (proxy,) = plays[1]["tasks"]
    assert not runs(proxy, {"groups": {"home": ["home-1"]}})
    assert runs(proxy, {"groups": GROUPS})


def test_the_role_checks_the_release_as_the_other_roles_do():
    first = load(DATABASE / "tasks/main.yml")[0]
    assert first["ansible.builtin.include_role"]["tasks_from"] == "platform.yml"
    platforms = load(DATABASE / "meta/main.yml")["galaxy_info"]["platforms"]
    assert platforms == [{"name": "Debian", "versions": ["bookworm", "trixie"]}]
    releases = role_vars("dmr_package")["dmr_package_supported_releases"]
    assert set(role_vars("dmr_database")["dmr_database_postgresql_versions"]) == set(releases)


def test_the_readme_lists_every_variable():
    text = (DATABASE / "README.md").read_text()
    specs = load(DATABASE / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = role_defaults("dmr_database")
    assert set(specs) == set(defaults)
    assert [v for v in defaults if f"`{v}`" not in text] == []
