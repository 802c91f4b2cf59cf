"""dmr_home: home and its gate running as dmr from a home.toml written from variables,
the gate the only TLS endpoint (client certificate required), gunicorn on its socket;
check mode clean; a changed setting restarts home after its checks; a value the package
refuses fails before the live file is touched, and the running service is left alone; a
wrong type fails at the start; the daily backup timer enabled, and its service writes a
complete private backup."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "tests" / "molecule"))
import helpers

testinfra_hosts = ["ansible://all"]
CONFIG = "/etc/dmr-appliance/home.toml"


def main_pid(host, unit):
    return host.run(f"systemctl show -p MainPID --value {unit}").stdout.strip()


def test_services_active_and_enabled(host):
    for unit in ("dmr-home", "dmr-home-gate", "dmr-crl.path"):
        service = host.service(unit)
        assert service.is_running and service.is_enabled, unit
    assert not host.service("nginx").is_enabled, "Debian's nginx.service is for routers only"


def test_processes_run_as_dmr(host):
    for unit in ("dmr-home", "dmr-home-gate"):
        pid = main_pid(host, unit)
        assert host.run(f"ps -o user= -p {pid}").stdout.strip() == "dmr", unit


def test_gate_listens_and_gunicorn_on_its_socket(host):
    assert host.socket("tcp://0.0.0.0:8700").is_listening
    sock = host.file("/run/dmr-home/gunicorn.sock")
    assert sock.is_socket and sock.user == "dmr" and sock.mode == 0o700


def test_gate_requires_a_client_certificate(host):
    answer = host.run(
        "curl -s --cacert /etc/dmr-appliance/pki/ca.pem https://localhost:8700/healthz"
    )
    assert "client-certificate-required" in answer.stdout, answer.stdout + answer.stderr


def test_config_owner_mode_and_valid(host):
    f = host.file(CONFIG)
    assert (f.user, f.group, f.mode) == ("root", "dmr", 0o640)
    assert 'bind = "0.0.0.0:8700"' in f.content_string
    assert host.run(f"dmr config check home {CONFIG}").rc == 0


def test_gate_config_passes_nginx_t(host):
    result = host.run(f"dmr render gate home --config {CONFIG} --output /tmp/gate.conf --test")
    assert result.rc == 0, result.stderr


def test_key_owned_by_dmr(host):
    f = host.file("/etc/dmr-appliance/pki/server/home.key")
    assert (f.user, f.mode) == ("dmr", 0o600)


def test_backup_timer_enabled_and_its_service_writes_a_backup(host):
    timer = host.service("dmr-home-backup.timer")
    assert timer.is_enabled and timer.is_running
    assert "keep = 7" in host.file(CONFIG).content_string
    before = set(host.run("ls /var/backups/dmr-home").stdout.split())
    started = host.run("systemctl start dmr-home-backup.service")
    assert started.rc == 0, host.run("journalctl -u dmr-home-backup -o cat -n 20").stdout
    made = set(host.run("ls /var/backups/dmr-home").stdout.split()) - before
    assert len(made) == 1 and made.pop().startswith("home-")
    newest = host.run("ls -d /var/backups/dmr-home/home-* | tail -n 1").stdout.strip()
    for name in ("manifest.json", "home.db"):
        f = host.file(f"{newest}/{name}")
        assert (f.user, f.mode) == ("dmr", 0o600), name
    assert host.file("/var/backups/dmr-home").mode == 0o700
    assert '"schema_version"' in host.file(f"{newest}/manifest.json").content_string


def test_check_mode_reports_no_change():
    helpers.assert_check_mode_clean()


def test_a_changed_setting_restarts_home_after_the_checks(host):
    """The handlers dmr_service holds, in order, ending with this role's tasks/restart.yml;
    then the converged value again (and another restart)."""
    for level in ("warning", "info"):
        pid = main_pid(host, "dmr-home")
        proc = helpers.playbook("--tags", "dmr_home", extra_vars={"dmr_home_log_level": level})
        assert proc.returncode == 0, helpers.tail(proc)
        ran = [
            line.split("[", 1)[1].split("]")[0]
            for line in proc.stdout.splitlines()
            if line.startswith("RUNNING HANDLER [")
        ]
        assert ran == [
            "dmr_service : Check the config file",
            "dmr_service : Check the gate's nginx configuration rendered from it",
            "dmr_service : Restart the service and its gate",
            "dmr_service : Restart home and its gate",
        ], ran
        assert f'log_level = "{level}"' in host.file(CONFIG).content_string
        assert main_pid(host, "dmr-home") != pid
        assert host.service("dmr-home-gate").is_running


def test_bad_port_fails_before_the_live_file_is_touched(host):
    before, pid = host.file(CONFIG).sha256sum, main_pid(host, "dmr-home")
    proc = helpers.playbook("--tags", "dmr_home", extra_vars={"dmr_home_bind": "0.0.0.0:99999"})
    helpers.assert_fails(proc, "failed to validate", "bind")
    assert host.file(CONFIG).sha256sum == before
    assert main_pid(host, "dmr-home") == pid, "the running service was touched"


def test_wrong_type_fails_at_the_start():
    proc = helpers.playbook("--tags", "dmr_home", extra_vars={"dmr_home_workers": "many"})
    helpers.assert_fails(proc, "dmr_home_workers")
    assert "Write the config file" not in proc.stdout
