"""The CRL's lifecycle without a person in the loop: every service exports when its CRL
must be replaced; nginx in a container is reloaded when the mounted CRL's content changes
(``dmr pki watch-crl``, ``dmr home|relay gate --watch-crl``); on VMs the control node's
systemd timer runs the dmr_pki role (renewals and the CRL), checked as systemd and Ansible
read it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dmr_appliance import crl_reload, metrics, pki
from dmr_appliance.errors import DmrError

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "scripts/systemd"
ANSIBLE_BIN = ROOT / ".venv-ansible/bin"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CRL_GAUGE = "dmr_crl_next_update_timestamp_seconds"
CERT_GAUGE = "dmr_certificate_expiry_timestamp_seconds"


def _families(tls) -> dict[str, dict[tuple, float]]:
    return {
        f.name: {tuple(s.labels.items()): s.value for s in f.samples}
        for f in metrics.certificate_expiry(tls)
    }


def test_the_crl_next_update_is_exported_and_read_again_when_replaced(pki_dir):
    crl = pki.paths(pki_dir).crl
    tls = SimpleNamespace(cert=pki_dir / "nowhere.pem", ca=pki.paths(pki_dir).ca, crl=crl)
    found = _families(tls)[CRL_GAUGE]
    assert found[()] == pki.crl_next_update(pki_dir).timestamp()
    assert abs(found[()] - time.time() - pki.CRL_DAYS * 86400) < 120
    pki.write_crl(pki_dir, days=3)
    os.utime(crl, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, surely
    assert _families(tls)[CRL_GAUGE][()] == pki.crl_next_update(pki_dir).timestamp()
    # The certificates' gauge stays apart: their 14-day alert must not see the CRL.
    assert {dict(k)["certificate"] for k in _families(tls)[CERT_GAUGE]} == {"ca"}
    crl.unlink()
    assert CRL_GAUGE not in _families(tls)


@pytest.fixture
def pki_dir(tmp_path) -> Path:
    pki.init_ca(tmp_path / "pki")
    return tmp_path / "pki"


# --- reloading nginx when the CRL changes (containers) -------------------------------------

CHILD = """
import signal, sys, time
out = open(sys.argv[1], "a", buffering=1)
signal.signal(signal.SIGHUP, lambda *_: out.write("HUP\\n"))
signal.signal(signal.SIGQUIT, lambda *_: sys.exit(0))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
out.write("started\\n")
while True:
    time.sleep(0.05)
"""


def _watch(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    crl, record = tmp_path / "crl.pem", tmp_path / "signals"
    crl.write_bytes(b"first")
    (tmp_path / "child.py").write_text(CHILD)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmr_appliance",
            "pki",
            "watch-crl",
            "--crl",
            str(crl),
            "--interval",
            "0.1",
            "--",
            sys.executable,
            str(tmp_path / "child.py"),
            str(record),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _until(lambda: record.exists() and "started" in record.read_text())
    return proc, crl, record


def _until(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_watch_crl_reloads_on_new_content_only_and_passes_signals_on(tmp_path):
    proc, crl, record = _watch(tmp_path)
    try:
        time.sleep(0.4)
        crl.write_bytes(b"first")  # the kubelet's swap of the same Secret: no reload
        os.utime(crl, ns=(time.time_ns(), time.time_ns() + 10**9))
        time.sleep(0.4)
        assert "HUP" not in record.read_text()
        crl.write_bytes(b"second")
        _until(lambda: record.read_text().count("HUP") == 1)
        tmp = tmp_path / "crl.new"
        tmp.write_bytes(b"third")
        tmp.replace(crl)  # an atomic swap, as the kubelet does
        _until(lambda: record.read_text().count("HUP") == 2)
        proc.send_signal(signal.SIGHUP)  # passed on, as `kill -HUP` to nginx would be
        _until(lambda: record.read_text().count("HUP") == 3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 7, out  # the child's own status
    assert '"event":"crl-changed"' in out


def test_watcher_thread_calls_back_on_new_content_and_survives_a_refused_crl(tmp_path):
    crl = tmp_path / "crl.pem"
    crl.write_bytes(b"first")
    calls: list[bytes] = []

    def reload() -> None:  # the local stack's nginx reload; the first one is refused
        calls.append(crl.read_bytes())
        if len(calls) == 1:
            raise DmrError("nginx refused the CRL", code="nginx-reload-failed")

    watcher = crl_reload.Watcher(crl, reload, interval=0.02)
    try:
        time.sleep(0.1)
        assert calls == []  # nothing new yet
        crl.write_bytes(b"second")
        _until(lambda: calls == [b"second"])
        crl.write_bytes(b"third")
        _until(lambda: calls == [b"second", b"third"])
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()


def test_watch_crl_ends_with_the_child(tmp_path):
    proc, _crl, _record = _watch(tmp_path)
    try:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful quit (the preStop hook's -s quit)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0


def test_watch_crl_needs_a_command():
    proc = subprocess.run(
        [sys.executable, "-m", "dmr_appliance", "pki", "watch-crl", "--"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and "after --" in proc.stderr


def test_every_nginx_in_the_manifests_is_reloaded_on_a_new_crl():
    """The gates and the router start under a CRL watch; the CRL they watch is the mounted one."""
    found = []
    for name in ("home.yaml", "relay.yaml", "router.yaml"):
        for doc in yaml.safe_load_all((ROOT / "k8s/base" / name).read_text()):
            if not doc or doc["kind"] not in ("Deployment", "StatefulSet"):
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                command = c["command"]
                if "gate" in command or "nginx" in command:
                    found.append(c["name"])
                    assert "--watch-crl" in command or command[:3] == ["dmr", "pki", "watch-crl"]
                    mounts = {m["mountPath"] for m in c["volumeMounts"]}
                    assert "/etc/dmr-appliance/crl" in mounts
    assert sorted(found) == ["gate", "gate", "router"]
    router = (ROOT / "k8s/base/router.yaml").read_text()
    assert "--crl, /etc/dmr-appliance/crl/crl.pem" in router.replace('"', "")


# --- the control node's timer (VMs) ----------------------------------------------------------


def _unit(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _env_example() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (UNITS / "dmr-pki-renew.env").read_text().splitlines()
        if line and not line.startswith("#")
    )


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="needs systemd-analyze")
def test_the_units_verify(tmp_path):
    for name in ("dmr-pki-renew.service", "dmr-pki-renew.timer"):
        shutil.copy(UNITS / name, tmp_path)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *sorted(map(str, tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    timer = tmp_path / "dmr-pki-renew.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=daily", "OnCalendar=dayly"))
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(timer)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0  # the check can fail


def test_the_timer_runs_the_service_daily_and_catches_up():
    timer, service = _unit("dmr-pki-renew.timer"), _unit("dmr-pki-renew.service")
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]
    assert timer["Unit"] == ["dmr-pki-renew.service"] and timer["WantedBy"] == ["timers.target"]
    assert service["Type"] == ["oneshot"]
    assert service["EnvironmentFile"] == ["/etc/dmr-appliance/pki-renew.env"]
    assert set(_env_example()) >= {"DMR_CLONE", "DMR_INVENTORY", "ANSIBLE_CONFIG", "PATH"}


def test_the_schedule_leaves_room_before_the_alerts():
    """Daily runs re-sign the CRL 10 days before its end: days of retries before the 7-day
    warning; certificates renew 30 days before theirs, 16 days before their alert."""
    defaults = yaml.safe_load((ROOT / "roles/dmr_pki/defaults/main.yml").read_text())
    rules = (ROOT / "monitoring/prometheus/dmr-alerts.yml").read_text()
    crl_warn = int(
        re.search(r"dmr_crl_next_update_timestamp_seconds - time\(\) < (\d+) \* 86400", rules)[1]
    )
    cert_warn = int(
        re.search(r"dmr_certificate_expiry_timestamp_seconds - time\(\) < (\d+) \*", rules)[1]
    )
    assert defaults["dmr_pki_crl_renew_days"] - crl_warn >= 3
    assert defaults["dmr_pki_renew_days"] - cert_warn >= 3
    assert defaults["dmr_pki_crl_renew_days"] < pki.CRL_DAYS


# The pytest runs of scripts/test.sh come before .venv-ansible exists: scripts/molecule.sh
# makes it and runs this test there, where DMR_NEEDS_ANSIBLE=1 turns a skip into a failure.
@pytest.mark.skipif(
    not (ANSIBLE_BIN / "ansible-playbook").exists() and os.environ.get("DMR_NEEDS_ANSIBLE") != "1",
    reason="needs .venv-ansible: scripts/molecule.sh makes it and runs this",
)
def test_the_service_command_is_a_valid_playbook_run_that_renews_and_re_signs(tmp_path):
    """ExecStart as systemd runs it (the env file's values, started outside the clone)."""
    env = {
        **_env_example(),
        "DMR_CLONE": str(ROOT),
        "DMR_INVENTORY": str(ROOT / "inventories/example"),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{ANSIBLE_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    [exec_start] = _unit("dmr-pki-renew.service")["ExecStart"]
    argv = [re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], word) for word in exec_start.split()]
    assert argv[:2] == ["/usr/bin/env", "ansible-playbook"]
    for check in ("--syntax-check", "--list-tasks"):
        proc = subprocess.run(
            [*argv, check],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = proc.stdout
    for task in (
        "Renew the certificates that expire within dmr_pki_renew_days",
        "Re-sign the CRL when it expires within dmr_pki_crl_renew_days",
        "Copy the CRL",
        "Copy the certificates",
    ):
        assert task in tasks
    assert not [
        t
        for t in tasks.splitlines()  # the services' own tasks stay out
        if "dmr_home : " in t and "Validating arguments" not in t
    ]
