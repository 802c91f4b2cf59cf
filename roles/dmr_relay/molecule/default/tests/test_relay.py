"""dmr_relay: the relay and its gate running as dmr from a relay.toml written from
variables; check mode clean; a renewed certificate restarts the relay (and only then);
a value the package refuses fails before the live file is touched; a wrong type fails
at the start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

testinfra_hosts = ["ansible://all"]
CONFIG = "/etc/dmr-appliance/relay.toml"
PKI = "/etc/dmr-appliance/pki"


def started_at(host, unit):
    return host.run(
        f"systemctl show -p ExecMainStartTimestampMonotonic --value {unit}"
    ).stdout.strip()


def test_services_active_and_enabled(host):
    for unit in ("dmr-relay", "dmr-relay-gate", "dmr-crl.path"):
        service = host.service(unit)
        assert service.is_running and service.is_enabled, unit
    assert not host.service("nginx").is_enabled


def test_gate_listens_and_gunicorn_on_its_socket(host):
    assert host.socket("tcp://0.0.0.0:8801").is_listening
    sock = host.file("/run/dmr-relay/gunicorn.sock")
    assert sock.is_socket and sock.user == "dmr" and sock.mode == 0o700


def test_config_from_variables_and_valid(host):
    f = host.file(CONFIG)
    assert (f.user, f.group, f.mode) == ("root", "dmr", 0o640)
    text = f.content_string
    assert 'instance = "relay-1"' in text
    assert 'home_url = "https://router.invalid:8443/v1/home"' in text
    assert 'home_failover = ["https://router-2.invalid:8443/v1/home"]' in text
    assert f'cert = "{PKI}/relay/relay-1.pem"' in text
    assert host.run(f"dmr config check relay {CONFIG}").rc == 0


def test_gate_config_passes_nginx_t(host):
    result = host.run(f"dmr render gate relay --config {CONFIG} --output /tmp/gate.conf --test")
    assert result.rc == 0, result.stderr


def test_key_owned_by_dmr(host):
    f = host.file(f"{PKI}/relay/relay-1.key")
    assert (f.user, f.mode) == ("dmr", 0o600)


def test_check_mode_reports_no_change():
    helpers.assert_check_mode_clean()


def test_renewed_certificate_restarts_the_relay(host):
    before = started_at(host, "dmr-relay")
    proc = helpers.playbook(
        "--tags", "dmr_pki", extra_vars={"dmr_pki_renew_days": 400, "dmr_pki_days": 800}
    )
    assert proc.returncode == 0, helpers.tail(proc)
    # through the handlers dmr_service holds: drained first (dmr_relay's tasks/restart.yml)
    assert "Restart the relay drained (the dmr_relay role's handler)" in proc.stdout
    assert "RUNNING HANDLER [dmr_service : Drain the relay]" in proc.stdout
    assert started_at(host, "dmr-relay") != before
    assert host.service("dmr-relay-gate").is_running
    # nothing due any more: nothing restarts
    now = started_at(host, "dmr-relay")
    proc = helpers.playbook(
        "--tags", "dmr_pki", extra_vars={"dmr_pki_renew_days": 400, "dmr_pki_days": 800}
    )
    assert proc.returncode == 0 and helpers.recap(proc)["relay-1"]["changed"] == 0, helpers.tail(
        proc
    )
    assert started_at(host, "dmr-relay") == now


def test_bad_port_fails_before_the_live_file_is_touched(host):
    before, pid = host.file(CONFIG).sha256sum, started_at(host, "dmr-relay")
    proc = helpers.playbook("--tags", "dmr_relay", extra_vars={"dmr_relay_port": 70000})
    helpers.assert_fails(proc, "failed to validate", "bind")
    assert host.file(CONFIG).sha256sum == before
    assert started_at(host, "dmr-relay") == pid


def test_wrong_type_fails_at_the_start():
    proc = helpers.playbook("--tags", "dmr_relay", extra_vars={"dmr_relay_port": "eighty"})
    helpers.assert_fails(proc, "dmr_relay_port")
    assert "Write the config file" not in proc.stdout
