"""dmr_router, converged by playbooks/site.yml with home and a relay: Debian's nginx
serving the package's router template on 8443, upstreams from the inventory, and a
message sent through it delivered to a recipient behind the relay; check mode clean;
a bad network in an allow list and a router template nginx refuses both fail without
touching the live config, and nginx keeps serving."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

ROOT = Path(__file__).resolve().parents[5]
testinfra_hosts = ["ansible://router", "ansible://relay-1", "ansible://home"]
PKI = "/etc/dmr-appliance/pki"
CONF = "/etc/nginx/nginx.conf"
TOML = "/etc/dmr-appliance/router.toml"
TEMPLATE = "/usr/lib/python3/dist-packages/dmr_appliance/templates/nginx/router.conf.j2"


def hosts(name):
    import testinfra

    return testinfra.get_host(f"ansible://{name}?ansible_inventory={helpers.INVENTORY}")


def router_pid(router):
    return router.run("systemctl show -p MainPID --value nginx").stdout.strip()


def test_router_nginx_active_enabled_listening(host):
    if host.backend.host != "router":
        return
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled
    assert host.socket("tcp://0.0.0.0:8443").is_listening
    assert not host.socket("tcp://0.0.0.0:80").is_listening, "Debian's default site"
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert host.run("nginx -t -q").rc == 0
    assert host.run(f"dmr config check router {TOML}").rc == 0
    key = host.file(f"{PKI}/router/router.key")
    assert (key.user, key.mode) == ("root", 0o600)


def test_upstreams_from_the_inventory(host):
    if host.backend.host != "router":
        return
    text = host.file(TOML).content_string
    assert 'relays = ["relay-1:8801"]' in text
    assert 'home = ["home:8700"]' in text  # every host of the home group
    assert 'relay_tls_name = "relay.dmr.internal"' in text
    assert 'pid_file = "/run/nginx.pid"' in text


def test_apps_running_behind_their_gates(host):
    name = host.backend.host
    if name == "router":
        return
    kind = "home" if name == "home" else "relay"
    for unit in (f"dmr-{kind}", f"dmr-{kind}-gate", "dmr-crl.path"):
        assert host.service(unit).is_running and host.service(unit).is_enabled, unit
    assert not host.service("nginx").is_enabled


def test_message_delivered_through_the_router():
    relay, router = hosts("relay-1"), hosts("router")
    if not relay.service("dmr-test-recipient").is_running:
        started = relay.run(
            "mkdir -p /var/lib/dmr-test-recipient && systemd-run --unit dmr-test-recipient"
            " --property Type=exec dmr recipient --bind 127.0.0.1:9443"
            f" --cert {PKI}/server/recipient.pem"
            f" --key {PKI}/server/recipient.key --ca {PKI}/ca.pem"
            " --log /var/lib/dmr-test-recipient/received.jsonl"
        )
        assert started.rc == 0, started.stderr
    listening = relay.run(
        "bash -c 'for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9443)"
        " 2>/dev/null && exit 0; sleep 0.2; done; exit 1'"
    )
    assert listening.rc == 0, "the test recipient did not start"
    script = (ROOT / "tests/system/deliver.py").read_text()
    router.run(f"cat > /root/deliver.py <<'DMR_EOF'\n{script}\nDMR_EOF")
    sent = router.run(f"python3 /root/deliver.py https://localhost:8443 {PKI}")
    assert sent.rc == 0, sent.stdout + sent.stderr
    import json

    message_id = json.loads(sent.stdout.strip().splitlines()[-1])["message_id"]
    received = relay.run("cat /var/lib/dmr-test-recipient/received.jsonl").stdout
    assert message_id in received


def test_check_mode_reports_no_change():
    helpers.assert_check_mode_clean()


def test_bad_network_in_allow_list_fails_before_the_live_file():
    router = hosts("router")
    before, conf, pid = router.file(TOML).sha256sum, router.file(CONF).sha256sum, router_pid(router)
    proc = helpers.playbook(
        "--tags",
        "dmr_router",
        "--limit",
        "router",
        playbook=ROOT / "playbooks/routers.yml",
        extra_vars={"dmr_router_allow": ["10.0.0.0/33"]},
    )
    helpers.assert_fails(proc, "failed to validate", "10.0.0.0/33")
    assert router.file(TOML).sha256sum == before and router.file(CONF).sha256sum == conf
    assert router_pid(router) == pid


def test_template_nginx_refuses_keeps_the_live_config_and_serving():
    router = hosts("router")
    conf, pid = router.file(CONF).sha256sum, router_pid(router)
    router.run(f"cp {TEMPLATE} /root/router.conf.j2.orig")
    router.run(f"sed -i '0,/^http {{/s//http {{\\n    dmr_no_such_directive on;/' {TEMPLATE}")
    try:
        assert "dmr_no_such_directive" in router.file(TEMPLATE).content_string
        proc = helpers.playbook(
            "--tags", "dmr_router", "--limit", "router", playbook=ROOT / "playbooks/routers.yml"
        )
        helpers.assert_fails(proc, "failed to validate", "dmr_no_such_directive")
    finally:
        router.run(f"cp /root/router.conf.j2.orig {TEMPLATE}")
    assert router.file(CONF).sha256sum == conf
    assert router_pid(router) == pid
    answer = router.run(f"curl -s --cacert {PKI}/ca.pem https://localhost:8443/v1/messages")
    assert "client-certificate-required" in answer.stdout, "nginx stopped serving"
