"""Rolling restarts for routine changes (issue 23, item 6), read from the files without
running Ansible: playbooks/relays.yml takes one relay at a time; the relay's restart
handlers (dmr_service's, ending with dmr_relay's restart.yml) drain first and wait until
ready (tasks shared with upgrade.yml); a renewed relay certificate goes through them when
the play has dmr_relay. The site scenario (molecule/site, step 9) proves it on hosts,
under load."""

from __future__ import annotations

from tests.support.ansible_files import PLAYBOOKS, ROLES, evaluate, load, module, runs, walk

RELAY = ROLES / "dmr_relay"
PKI_HANDLERS = ROLES / "dmr_pki/handlers/main.yml"
SERVICE_HANDLERS = ROLES / "dmr_service/handlers/restart.yml"


def test_relays_yml_takes_one_relay_at_a_time_unless_told():
    [play] = load(PLAYBOOKS / "relays.yml")
    assert evaluate(play["serial"], {}) == 1
    assert evaluate(play["serial"], {"dmr_relays_serial": 2}) == 2
    assert play["max_fail_percentage"] == 0 and play["force_handlers"] is True
    assert [r["role"] for r in play["roles"]] == ["dmr_package", "dmr_pki", "dmr_relay"]


def test_the_relay_restart_handler_drains_restarts_then_waits_until_ready():
    # the handlers home and relays share (dmr_service), loaded by the relay's import of
    # its config task, end with the importing role's own restart.yml
    [write] = [
        t for t in load(RELAY / "tasks/config.yml") if module(t)[0] == "ansible.builtin.import_role"
    ]
    assert module(write)[1] == {
        "name": "dmr_service",
        "tasks_from": "config.yml",
        "handlers_from": "restart.yml",
    }
    handlers = load(SERVICE_HANDLERS)
    assert all("dmr_relay restart" in h["listen"] for h in handlers)
    last = handlers[-1]
    assert module(last) == (
        "ansible.builtin.include_tasks",
        "{{ ansible_parent_role_paths[0] }}/tasks/restart.yml",
    )
    assert not [h for h in handlers if module(h)[0] == "ansible.builtin.systemd"]
    [block] = load(RELAY / "tasks/restart.yml")
    steps = [module(t) for t in block["block"]]
    assert steps[0] == ("ansible.builtin.include_tasks", "drain.yml")
    assert steps[1][0] == "ansible.builtin.systemd" and steps[1][1]["state"] == "restarted"
    assert steps[2] == ("ansible.builtin.include_tasks", "undrain.yml")
    # a failed drain or restart does not leave the relay out of the routers' choice
    assert "--undo" in module(block["rescue"][0])[1]["argv"]


def argv_of(path):
    return [
        module(t)[1]["argv"] for t in walk(load(path)) if module(t)[0] == "ansible.builtin.command"
    ]


def test_drain_and_undrain_run_dmr_relay_drain_and_the_readiness_probe():
    drain, undrain = argv_of(RELAY / "tasks/drain.yml"), argv_of(RELAY / "tasks/undrain.yml")
    assert any(a[:3] == ["dmr", "relay", "drain"] and "--undo" not in a for a in drain)
    assert any(a[:3] == ["dmr", "relay", "drain"] and "--undo" in a for a in undrain)
    [wait] = [t for t in walk(load(RELAY / "tasks/undrain.yml")) if "until" in t]
    assert module(wait)[1]["argv"][:4] == ["dmr", "relay", "probe", "/readyz"]
    # waited on when it was ready before the drain, or always when required (upgrade.yml)
    assert runs(
        wait,
        {
            "ansible_check_mode": False,
            "dmr_relay_require_ready": False,
            "dmr_relay_ready_before": {"rc": 0},
        },
    )
    assert not runs(
        wait,
        {
            "ansible_check_mode": False,
            "dmr_relay_require_ready": False,
            "dmr_relay_ready_before": {"rc": 3},
        },
    )
    assert runs(
        wait,
        {
            "ansible_check_mode": False,
            "dmr_relay_require_ready": True,
            "dmr_relay_ready_before": {"rc": 3},
        },
    )


def test_upgrade_yml_shares_the_drain_and_the_wait_with_the_handler():
    play = load(PLAYBOOKS / "upgrade.yml")[0]
    included = [
        (module(t)[1]["name"], module(t)[1].get("tasks_from", "main"))
        for t in play["tasks"]
        if module(t)[0] == "ansible.builtin.include_role"
    ]
    assert included[:4] == [
        ("dmr_relay", "drain"),
        ("dmr_package", "main"),
        ("dmr_relay", "main"),
        ("dmr_relay", "undrain"),
    ]
    assert play["serial"] == 1 and play["vars"]["dmr_relay_require_ready"] is True
    assert not [a for a in argv_of(PLAYBOOKS / "upgrade.yml") if a[:3] == ["dmr", "relay", "drain"]]


def pki_handlers(roles: list[str], restart: list[str]) -> dict[str, dict]:
    """The dmr_pki handlers that run for a changed certificate, with what they do."""
    variables = {"ansible_role_names": roles, "dmr_pki_restart": restart, "dmr_pki_reload": []}
    done = {}
    for handler in load(PKI_HANDLERS):
        values = dict(variables)
        for key, value in handler.get("vars", {}).items():
            values[key] = evaluate(value, values)
        if runs(handler, values):
            args = module(handler)[1]
            done[handler["name"]] = {
                "argv": evaluate(args["argv"], values) if "argv" in args else None,
                "notify": handler.get("notify"),
            }
    return done


def test_a_renewed_relay_certificate_restarts_the_relay_through_its_drained_handler():
    done = pki_handlers(["dmr_package", "dmr_pki", "dmr_relay"], ["dmr-relay.service"])
    assert [h["notify"] for h in done.values()] == ["dmr_relay restart"], done
    assert not any(h["argv"] and "dmr-relay.service" in h["argv"] for h in done.values())


def test_without_the_dmr_relay_role_the_relay_is_try_restarted_as_before():
    done = pki_handlers(["dmr_package", "dmr_pki"], ["dmr-relay.service"])
    [restart] = [h for h in done.values() if h["argv"]]
    assert restart["argv"] == ["systemctl", "try-restart", "dmr-relay.service"]
    assert not any(h["notify"] for h in done.values())
