"""The Debian package on a bare Debian 12 system, end to end.

Builds the package (and a higher version of it) with packaging/build-deb.sh, publishes
both in a signed apt repository with packaging/build-repo.sh, and, in a fresh container
with systemd as PID 1 (tests/system/image.sh), walks an operator's path: add the
repository and its key, `apt install dmr-appliance` (dependencies from Debian's mirror),
see the services wait for their certificates, configure (PKI, config files, nginx),
start both services and their gates, send a message through nginx to a recipient, see a
new CRL in force at every gate within seconds (the dmr-crl path unit), print the units'
`systemd-analyze security` exposure, upgrade (an edited conffile kept, services
restarted), remove, purge, and check that only what Debian policy allows is left.

Needs root, docker.io, debootstrap and the Debian build tools (scripts/setup.sh --system)
and Debian's mirror. Run: .venv/bin/pytest -m system tests/system
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_appliance import __version__
from tests.support.containers import SYSTEMD_FLAGS

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
UPGRADE_VERSION = f"{__version__}+systemtest1"
MAX_EXPOSURE = 2.0
REPO_IN_CONTAINER = "/srv/dmr-repo"
KEYRING_IN_CONTAINER = "/usr/share/keyrings/dmr-appliance-archive-keyring.gpg"
PKI = "/etc/dmr-appliance/pki"
ROUTER = "https://localhost:8443"
APPS = ("dmr-home.service", "dmr-relay.service")
GATES = ("dmr-home-gate.service", "dmr-relay-gate.service")
UNITS = APPS + GATES
EDIT = "workers = 1  # edited by the system test"  # an admin's change to a conffile
APT = (
    "DEBIAN_FRONTEND=noninteractive apt-get -q -y"
    " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


def docker_cli() -> str:
    """Debian's docker.io client (another client earlier on PATH may not match dockerd)."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker") or "docker"


def run(argv: list[str], *, timeout: float = 600, env: dict | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


@dataclass
class Container:
    name: str
    docker: str

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        argv = [self.docker, "exec", self.name, "bash", "-euo", "pipefail", "-c", script]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in container: {script}\nexit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                f"\n--- stderr\n{proc.stderr[-6000:]}\n--- journal\n{self.journal()}"
            )
        return proc

    def out(self, script: str, **kwargs) -> str:
        return self.sh(script, **kwargs).stdout.strip()

    def journal(self) -> str:
        proc = subprocess.run(
            [
                self.docker,
                "exec",
                self.name,
                "journalctl",
                "--no-pager",
                "-n",
                "60",
                "-u",
                "dmr-home",
                "-u",
                "dmr-relay",
                "-u",
                "dmr-home-gate",
                "-u",
                "dmr-relay-gate",
                "-u",
                "dmr-crl",
                "-u",
                "nginx",
                "-u",
                "dmr-test-recipient",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.stdout[-6000:]


@dataclass
class Build:
    repo: Path
    dist: Path
    upgrade_dist: Path
    lintian: str


class Steps:
    """Prints each step with its duration on the terminal, captured or not."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        with self.capsys.disabled():
            print(f"\n[system {time.monotonic() - self.started:6.1f}s] {text}", flush=True)


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        pytest.skip("the system test needs root (dockerd, debootstrap)")
    for tool in ("dockerd", "debootstrap", "dpkg-buildpackage", "apt-ftparchive", "lintian"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.fail(f"{tool} missing: run scripts/setup.sh --system")
    return run([str(HERE / "image.sh")], timeout=900).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    work = tmp_path_factory.mktemp("debian-package")
    dist, upgrade_dist, repo = work / "dist", work / "dist-upgrade", work / "repo"
    lintian = run([str(ROOT / "packaging/build-deb.sh"), "--out", str(dist)])
    run(
        [
            str(ROOT / "packaging/build-deb.sh"),
            "--deb-only",
            "--version",
            UPGRADE_VERSION,
            "--out",
            str(upgrade_dist),
        ]
    )
    only_v1 = work / "dist-v1"
    only_v1.mkdir()
    shutil.copy(dist / f"dmr-appliance_{__version__}_all.deb", only_v1)
    run(
        [
            str(ROOT / "packaging/build-repo.sh"),
            str(repo),
            "--from",
            str(only_v1),
            "--url",
            f"file:{REPO_IN_CONTAINER}",
            "--keyring",
            KEYRING_IN_CONTAINER,
        ]
    )
    return Build(repo=repo, dist=dist, upgrade_dist=upgrade_dist, lintian=lintian)


@pytest.fixture
def container(image: str) -> Iterator[Container]:
    docker = docker_cli()
    name = f"dmr-pkgtest-{uuid.uuid4().hex[:8]}"
    run(
        [
            docker,
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            "dmr-pkgtest",
            *SYSTEMD_FLAGS,
            image,
            "/lib/systemd/systemd",
        ]
    )
    box = Container(name, docker)
    try:
        deadline, state = time.monotonic() + 60, ""
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            # right after `docker run`, PID 1 may not answer on D-Bus yet
            proc = box.sh("timeout 30 systemctl is-system-running --wait", check=False)
            state = proc.stdout.strip() or proc.stderr.strip()
            time.sleep(0.2)
        assert state in ("running", "degraded"), f"systemd in the container: {state}"
        yield box
    finally:
        subprocess.run([docker, "rm", "-f", "-v", name], capture_output=True, timeout=120)


def test_install_configure_deliver_upgrade_purge(
    build: Build, container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = Steps(capsys)
    steps.say(f"built dmr-appliance {__version__} and {UPGRADE_VERSION}; lintian:\n{build.lintian}")

    # --- the operator adds the signed repository and installs -------------------------------
    publish(container, build.repo)
    container.sh(
        f"install -m 0644 {REPO_IN_CONTAINER}/dmr-appliance-archive-keyring.gpg "
        f"{KEYRING_IN_CONTAINER}"
    )
    container.sh(f"install -m 0644 {REPO_IN_CONTAINER}/dmr-appliance.list /etc/apt/sources.list.d/")
    container.sh(f"apt-get -q update && {APT} install dmr-appliance nginx", timeout=600)
    steps.say("installed: " + container.out("dpkg-query -W dmr-appliance"))
    # The repository is trusted through its key only: a tampered index must be refused.
    assert "[signed-by=" in container.out("cat /etc/apt/sources.list.d/dmr-appliance.list")

    assert container.out("dmr --version") == f"dmr {__version__}"
    assert container.out("getent passwd dmr | cut -d: -f7") == "/usr/sbin/nologin"
    assert container.out(f"stat -c '%U:%G %a' {PKI}") == "root:dmr 750"
    for kind in ("home", "relay", "router"):
        conffile = f"/etc/dmr-appliance/{kind}.toml"
        assert conffile in container.out("cat /var/lib/dpkg/info/dmr-appliance.conffiles")
        assert (
            container.out(f"dmr config check {kind} {conffile}")
            == f"{conffile}: valid {kind} configuration"
        )

    # --- bare install: enabled, but skipped until the certificates exist ----------------------
    for unit in UNITS:
        assert container.out(f"systemctl is-enabled {unit}") == "enabled"
        assert container.out(f"systemctl is-active {unit}", check=False) == "inactive"
        assert container.out(f"systemctl show -p ConditionResult --value {unit}") == "no"
        assert container.out(f"systemctl show -p NRestarts --value {unit}") == "0"
    failed = container.out(f"systemctl is-failed {' '.join(UNITS)}", check=False)
    assert failed == "\n".join(["inactive"] * len(UNITS))
    assert container.out("systemctl is-enabled dmr-crl.path") == "enabled"
    steps.say("bare install: services and gates enabled, skipped by their conditions, none failed")

    # --- configure, start, deliver -----------------------------------------------------------
    configure(container)
    container.sh("systemctl start dmr-home dmr-relay")  # each Wants= its gate
    wait_active(container, UNITS)
    container.sh("systemctl start dmr-crl.path")
    container.sh("systemctl restart nginx")
    start_recipient(container)
    copy_in(container, HERE / "deliver.py", "/root/deliver.py")
    sent = container.out(f"python3 /root/deliver.py {ROUTER} {PKI}", timeout=120)
    steps.say(f"sent through nginx: {sent}")
    message_id = re.search(r'"message_id": "([^"]+)"', sent).group(1)
    received = container.out("cat /var/lib/dmr-test-recipient/received.jsonl")
    assert message_id in received, f"the recipient did not record {message_id}: {received}"
    steps.say("the recipient got it")

    # The services and gates run as dmr, with their state where the units say; gunicorn
    # listens on its socket only, the gate (nginx) on the TLS port.
    for unit, state_dir in zip(APPS, ("/var/lib/dmr-home", "/var/lib/dmr-relay"), strict=True):
        pid = container.out(f"systemctl show -p MainPID --value {unit}")
        assert container.out(f"ps -o user= -p {pid}") == "dmr"
        assert container.out(f"stat -c '%U %a' {state_dir}") == "dmr 700"
    for unit in GATES:
        pid = container.out(f"systemctl show -p MainPID --value {unit}")
        assert container.out(f"ps -o user=,comm= -p {pid}").split() == ["dmr", "nginx"]
    for kind in ("home", "relay"):
        assert (
            container.out(f"stat -c '%U %a %F' /run/dmr-{kind}/gunicorn.sock") == "dmr 700 socket"
        )
        assert container.out(f"stat -c '%U %a' /run/dmr-{kind}") == "dmr 700"
    assert container.out("ls /var/lib/dmr-home") != ""

    # --- a forged identity at the gate, and a new CRL in force within seconds ----------------
    check_trust_boundary(container, steps)

    # --- hardening ---------------------------------------------------------------------------
    report = container.out(f"systemd-analyze security --no-pager {' '.join(UNITS)}")
    summary = container.out(
        f"for u in {' '.join(UNITS)}; do systemd-analyze security --no-pager $u | tail -n 1; done"
    )
    steps.say(f"systemd-analyze security:\n{report}\n{summary}")
    scores = {
        unit: float(score)
        for unit, score in re.findall(r"Overall exposure level for (\S+): ([0-9.]+)", summary)
    }
    assert set(scores) == set(UNITS), summary
    for unit, score in scores.items():
        assert score <= MAX_EXPOSURE, f"{unit}: exposure {score} > {MAX_EXPOSURE}"

    # --- upgrade: the edited conffile stays, the services restart -----------------------------
    before = {unit: started_at(container, unit) for unit in UNITS}
    both = build.upgrade_dist.parent / "dist-both"
    both.mkdir()
    for deb in (
        build.dist / f"dmr-appliance_{__version__}_all.deb",
        build.upgrade_dist / f"dmr-appliance_{UPGRADE_VERSION}_all.deb",
    ):
        shutil.copy(deb, both)
    run(
        [
            str(ROOT / "packaging/build-repo.sh"),
            str(build.repo),
            "--from",
            str(both),
            "--url",
            f"file:{REPO_IN_CONTAINER}",
            "--keyring",
            KEYRING_IN_CONTAINER,
        ]
    )
    publish(container, build.repo)
    container.sh(f"apt-get -q update && {APT} install --only-upgrade dmr-appliance", timeout=300)
    assert container.out("dpkg-query -W -f '${Version}' dmr-appliance") == UPGRADE_VERSION
    assert container.out("dmr --version") == f"dmr {UPGRADE_VERSION}"
    assert EDIT in container.out("cat /etc/dmr-appliance/home.toml")
    assert container.out("ls /etc/dmr-appliance/*.dpkg-* 2>/dev/null || true") == ""
    wait_active(container, UNITS)
    after = {unit: started_at(container, unit) for unit in UNITS}
    for unit in UNITS:
        assert after[unit] > before[unit], f"{unit} was not restarted by the upgrade"
    # the packaged sender this time: token, card, retries and all
    sent = container.out(
        f"dmr send --as alice --router {ROUTER} --room lobby --to bob"
        ' --data \'{"text": "after the upgrade"}\' --json',
        timeout=120,
    )
    steps.say(f"upgraded to {UPGRADE_VERSION}: conffile kept, services restarted; dmr send: {sent}")
    assert "delivered" in sent
    received = container.out("wc -l < /var/lib/dmr-test-recipient/received.jsonl")
    assert received == "2", "the recipient should hold both messages"

    # --- remove keeps configuration, state and user; purge takes the package's files ---------
    container.sh("systemctl stop nginx dmr-test-recipient")
    container.sh(f"{APT} remove dmr-appliance")
    for unit in UNITS:
        assert container.out(f"systemctl is-active {unit}", check=False) in ("inactive", "unknown")
    container.sh(
        "getent passwd dmr && test -f /etc/dmr-appliance/home.toml && test -d /var/lib/dmr-home"
    )
    container.sh(f"{APT} purge dmr-appliance")
    status = container.out(
        "dpkg-query -W -f '${db:Status-Status}' dmr-appliance 2>/dev/null || true"
    )
    assert status in ("", "not-installed")
    assert container.sh("getent passwd dmr", check=False).returncode == 2
    assert container.sh("getent group dmr", check=False).returncode == 2
    leftovers = container.out(
        "find / -xdev \\( -path /proc -o -path /sys -o -path /srv -o -path /var/cache/apt"
        " -o -path /var/lib/apt/lists \\) -prune -o \\( -iname '*dmr*' -o -nouser -o -nogroup \\)"
        " -print | sort"
    )
    allowed = allowed_leftovers()
    unexpected = [
        path for path in leftovers.splitlines() if not any(rule.fullmatch(path) for rule in allowed)
    ]
    assert unexpected == [], "left after purge:\n" + "\n".join(unexpected)
    assert container.out("find /etc/dmr-appliance -type f ! -path '/etc/dmr-appliance/pki/*'") == ""
    assert container.out("find /etc/dmr-appliance ! -user root -o ! -group root") == ""
    steps.say(
        "purged: user, group, conffiles, state and units gone; the admin's PKI kept, owned by root"
    )


def test_wheel_installs_into_an_empty_venv(build: Build, tmp_path: Path) -> None:
    """The wheel from the same build: `pip install` into a bare venv gives a working dmr
    (dependencies from PyPI, the current releases)."""
    wheel = build.dist / f"dmr_appliance-{__version__}-py3-none-any.whl"
    assert (build.dist / f"dmr_appliance-{__version__}.tar.gz").exists() or (
        build.dist / f"dmr-appliance-{__version__}.tar.gz"
    ).exists(), "no sdist"
    venv = tmp_path / "venv"
    run(["/usr/bin/python3", "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    assert run([str(venv / "bin/dmr"), "--version"]).strip() == f"dmr {__version__}"
    assert "[tls]" in run([str(venv / "bin/dmr"), "config", "defaults", "relay"])
    data = run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.resources as r; t = r.files('dmr_appliance') / 'templates';"
            " print(sorted(p.name for p in (t / 'nginx').iterdir()))",
        ]
    )
    assert "router.conf.j2" in data, "package data (the router template) is in the wheel"


def allowed_leftovers() -> list[re.Pattern[str]]:
    """What may remain after the purge, and why: none of it is the package's."""
    return [
        re.compile(p)
        for p in (
            r"/etc/dmr-appliance(/pki(/.*)?)?",  # the deployment CA and keys the admin made
            r"/etc/apt/sources\.list\.d/dmr-appliance\.list",  # the admin's repository entry
            r"/usr/share/keyrings/dmr-appliance-archive-keyring\.gpg",  # and its key
            r"/var/lib/dmr-router(/.*)?",  # the router's nginx prefix, made by the admin (test)
            r"/var/lib/dmr-test-recipient(/.*)?",  # the test's recipient
            r"/var/log/nginx/dmr-(access|error)\.log",  # nginx's logs of the router config
            r"/root/deliver\.py",
            r"/root/forged\.hdr",
            r"/var/log/journal(/.*)?",  # the journal keeps the services' past log lines
        )
    ]


def publish(container: Container, repo: Path) -> None:
    """Copy the repository into the container (public files only: never the GnuPG home)."""
    container.sh(f"rm -rf {REPO_IN_CONTAINER} && mkdir -p {REPO_IN_CONTAINER}")
    for path in sorted(repo.iterdir()):
        if path.is_file():
            copy_in(container, path, f"{REPO_IN_CONTAINER}/{path.name}")
    container.sh(f"chmod -R a+rX {REPO_IN_CONTAINER}")


def copy_in(container: Container, source: Path, target: str) -> None:
    run([container.docker, "cp", str(source), f"{container.name}:{target}"])


def configure(container: Container) -> None:
    """What README.Debian tells an operator to do on a single host."""
    local = "--dns localhost --ip 127.0.0.1"
    container.sh(
        " && ".join(
            [
                "dmr pki init",
                f"dmr pki issue --kind server --name home {local}",
                f"dmr pki issue --kind router --name router {local}",
                f"dmr pki issue --kind server --name recipient {local}",
                f"dmr pki issue --kind relay --name relay-1 {local}",
                "dmr pki issue --kind participant --name alice",
                "dmr pki issue --kind participant --name bob",
                "dmr pki issue --kind admin --name admin",
                f"chown dmr:dmr {PKI}/server/home.key {PKI}/relay/relay-1.key",
                # an admin's edit of a conffile, which the upgrade must keep
                f"sed -i '0,/^# workers = .*/s//{EDIT}/' /etc/dmr-appliance/home.toml",
                f"grep -qx '{EDIT}' /etc/dmr-appliance/home.toml",
                "dmr config check home /etc/dmr-appliance/home.toml",
                # one relay on this host; the router is Debian's nginx.service
                'sed -i \'s|^# relays = .*|relays = ["127.0.0.1:8801"]|; '
                's|^# pid_file = .*|pid_file = "/run/nginx.pid"|\' /etc/dmr-appliance/router.toml',
                "mkdir -p /var/lib/dmr-router",
                "dmr render nginx --config /etc/dmr-appliance/router.toml"
                " --output /etc/nginx/nginx.conf",
                "nginx -t -q",
            ]
        )
    )


def start_recipient(container: Container) -> None:
    container.sh(
        "mkdir -p /var/lib/dmr-test-recipient && "
        "systemd-run --unit dmr-test-recipient --property Type=exec "
        f"dmr recipient --bind 127.0.0.1:9443 --cert {PKI}/server/recipient.pem "
        f"--key {PKI}/server/recipient.key --ca {PKI}/ca.pem "
        "--log /var/lib/dmr-test-recipient/received.jsonl"
    )
    container.sh(
        "for i in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/9443) 2>/dev/null && exit 0;"
        " sleep 0.2; done; exit 1"
    )


def wait_active(container: Container, units: tuple[str, ...], within: float = 30) -> None:
    """Active, and listening: a gate on its TLS port, gunicorn on its unix socket."""
    ready = {
        "dmr-home-gate.service": "(exec 3<>/dev/tcp/127.0.0.1/8700)",
        "dmr-relay-gate.service": "(exec 3<>/dev/tcp/127.0.0.1/8801)",
        "dmr-home.service": "test -S /run/dmr-home/gunicorn.sock",
        "dmr-relay.service": "test -S /run/dmr-relay/gunicorn.sock",
    }
    for unit in units:
        container.sh(
            f"for i in $(seq 1 {int(within * 5)}); do "
            f"systemctl is-active -q {unit}"
            f" && {ready[unit]} 2>/dev/null && exit 0;"
            f" sleep 0.2; done; systemctl status --no-pager {unit}; exit 1"
        )


def check_trust_boundary(container: Container, steps: Steps) -> None:
    """alice at home's gate with the admin's certificate in the header stays alice; then
    bob's certificate is revoked and every gate refuses it within seconds, no restart."""
    curl = f"curl -s --cacert {PKI}/ca.pem"
    alice = f"--cert {PKI}/participant/alice.pem --key {PKI}/participant/alice.key"
    bob = f"--cert {PKI}/participant/bob.pem --key {PKI}/participant/bob.key"
    # The admin's certificate (public) as a header file for curl -H @FILE.
    script = (
        "import urllib.parse; print('X-DMR-Client-Cert: ' + urllib.parse.quote("
        f"open('{PKI}/admin/admin.pem').read(), safe=''))"
    )
    container.sh(f"python3 -c {shlex.quote(script)} > /root/forged.hdr")
    forged = "-H @/root/forged.hdr"
    answer = container.out(f"{curl} {alice} {forged} https://localhost:8700/v1/participants")
    assert '"urn:dmr:problem:forbidden"' in answer, answer
    starts = {unit: started_at(container, unit) for unit in UNITS}
    container.sh("dmr pki revoke --kind participant --name bob")
    started = time.monotonic()
    for port in (8700, 8801, 8443):
        container.sh(
            f"for i in $(seq 1 50); do {curl} {bob} https://localhost:{port}/healthz"
            " | grep -q client-certificate-invalid && exit 0; sleep 0.1; done; exit 1"
        )
    elapsed = time.monotonic() - started
    assert {unit: started_at(container, unit) for unit in UNITS} == starts, "restarted"
    steps.say(
        f"forged admin header at home's gate: refused as alice; bob revoked: refused by"
        f" home's and the relay's gate and the router after {elapsed:.1f} s, no restart"
    )


def started_at(container: Container, unit: str) -> int:
    return int(container.out(f"systemctl show -p ExecMainStartTimestampMonotonic --value {unit}"))
