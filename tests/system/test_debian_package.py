"""The Debian package on bare Debian 12 and Debian 13 systems, end to end: one .deb for both.

Builds the package (and a higher version of it) with packaging/build-deb.sh, publishes
both in a signed apt repository with packaging/build-repo.sh, once per session (the first
pytest-xdist worker that needs them builds, under a file lock; the others reuse them).
Then, for each release (ids debian12 and debian13), in a fresh container of that release
with systemd as PID 1 (tests/system/image.sh --release), walks an operator's path: add the
repository and its key, `apt install dmr-appliance` (dependencies from that release's
Debian mirror), see the services wait for their certificates, configure (PKI, config
files, nginx), start both services and their gates, send a message through nginx to a
recipient, see a new CRL in force at every gate within seconds (the dmr-crl path unit),
print the units' `systemd-analyze security` exposure (at most 2.0 each), upgrade (an
edited conffile kept, services restarted), remove, purge, and check that only what Debian
policy allows is left.

lintian: the build runs the build host's (Debian 12's); for a release other than the
host's, that release's own lintian (apt-get install lintian) checks the same .changes
with the same options and overrides (build-deb.sh --lintian) in a container of its own,
installed while the package builds, so that the operator's container stays bare.

Needs root, docker.io, debootstrap and the Debian build tools (scripts/setup.sh --system)
and Debian's mirror. Run: .venv/bin/pytest -m system tests/system; both releases at once:
add -n 2 --dist loadgroup (each release is an xdist group of its own).
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_appliance import __version__
from tests.support.containers import SYSTEMD_FLAGS

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The releases the one .deb is for: codename by test id. Each is an xdist group, so that
# with -n 2 --dist loadgroup the two run side by side on two workers.
RELEASES = {"debian12": "bookworm", "debian13": "trixie"}
RELEASE_IDS = {codename: test_id for test_id, codename in RELEASES.items()}
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
    dist: Path  # the wheel, the sdist, the .deb, and the .changes set lintian checks
    upgrade_dist: Path  # the higher version's .deb
    repo_v1: Path  # the signed repository's public files, with the first version only
    repo_v2: Path  # signed by the same key, with both versions
    lintian: str  # build-deb.sh's output: the build host's lintian on the .changes

    @property
    def changes(self) -> Path:
        return next(self.dist.glob(f"dmr-appliance_{__version__}_*.changes"))


class SharedBuild:
    """The packages and both repositories, built once per session: by the first
    pytest-xdist worker that asks (an exclusive file lock), then read by every other."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.lock = work.with_name(f"{work.name}.lock")
        self.built: Build | None = None

    def layout(self) -> Build:
        w = self.work
        log = w / "build.log"
        lintian = log.read_text() if log.exists() else ""
        return Build(w / "dist", w / "dist-upgrade", w / "repo-v1", w / "repo", lintian)

    def get(self) -> Build:
        if self.built is None:
            with locked(self.lock):
                failed, done = self.work / "FAILED", self.work / "build.log"
                if failed.exists():
                    pytest.fail(f"the shared build failed (another worker):\n{failed.read_text()}")
                if not done.exists():
                    try:
                        self.build()
                    except Exception as exc:
                        failed.write_text(str(exc))
                        raise
                self.built = self.layout()
        return self.built

    def build(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        b = self.layout()
        deb = ROOT / "packaging/build-deb.sh"
        # The two versions side by side: each build has a work folder of its own.
        first = start([str(deb), "--with-changes", "--out", str(b.dist)])
        second = start(
            [str(deb), "--deb-only", "--version", UPGRADE_VERSION, "--out", str(b.upgrade_dist)]
        )
        lintian = finish(first)
        finish(second)
        v1 = [b.dist / f"dmr-appliance_{__version__}_all.deb"]
        both = [*v1, b.upgrade_dist / f"dmr-appliance_{UPGRADE_VERSION}_all.deb"]
        # One key for both states of the repository (it lives in repo/gnupg): the first
        # state's public files are kept in repo-v1, then the repository gets both versions.
        self.repository(b.repo_v2, v1)
        b.repo_v1.mkdir()
        for path in b.repo_v2.iterdir():
            if path.is_file():
                shutil.copy(path, b.repo_v1)
        self.repository(b.repo_v2, both)
        (self.work / "build.log").write_text(lintian)

    def repository(self, repo: Path, debs: list[Path]) -> None:
        source = self.work / f"debs-{len(debs)}"
        source.mkdir()
        for deb in debs:
            shutil.copy(deb, source)
        run(
            [
                str(ROOT / "packaging/build-repo.sh"),
                str(repo),
                "--from",
                str(source),
                "--url",
                f"file:{REPO_IN_CONTAINER}",
                "--keyring",
                KEYRING_IN_CONTAINER,
            ]
        )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    stdout, stderr = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{shlex.join(proc.args)} exited {proc.returncode}\n"
            f"--- stdout\n{stdout[-6000:]}\n--- stderr\n{stderr[-6000:]}"
        )
    return stdout


class Steps:
    """Prints each step with its duration on the terminal, captured or not (on stderr,
    which pytest-xdist's workers share with the terminal; their stdout is not shown)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], label: str) -> None:
        self.capsys = capsys
        self.label = label
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        with self.capsys.disabled():
            elapsed = time.monotonic() - self.started
            print(f"\n[system {self.label} {elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)


class ReleaseLintian:
    """A release's own lintian on the build's .changes, in a container of that release of
    its own: apt-get install lintian there (while the package builds), then
    `build-deb.sh --lintian`: the build's own options, and the package's overrides. Not in
    the operator's container, which stays a bare system for the install and the purge
    (lintian brings about 180 packages), and beside the operator's path, not after it."""

    def __init__(self, docker: str, image: str) -> None:
        self.docker = docker
        self.name = f"dmr-lintian-{uuid.uuid4().hex[:8]}"
        run([docker, "run", "-d", "--name", self.name, image, "sleep", "infinity"])
        # (a throw-away container: no man-db index, dpkg without fsync; the log in a file,
        # since nothing reads this pipe until the build is done)
        self.install = start(
            self.exec_argv(
                "echo 'man-db man-db/auto-update boolean false' | debconf-set-selections"
                f" && {{ apt-get -q update && {APT} -o Dpkg::Options::=--force-unsafe-io"
                " install lintian; } >/root/lintian-install.log 2>&1"
                " || { tail -n 40 /root/lintian-install.log; exit 1; }"
            )
        )
        self.check: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.verdict: str | None = None
        self.error: BaseException | None = None

    def exec_argv(self, script: str) -> list[str]:
        return [self.docker, "exec", self.name, "bash", "-euo", "pipefail", "-c", script]

    def start(self, build: Build) -> None:
        """In the background: once lintian is installed, copy the build's .changes set and
        build-deb.sh in and run it; result() waits for its verdict."""
        self.thread = threading.Thread(target=self.check_build, args=(build,), daemon=True)
        self.thread.start()

    def check_build(self, build: Build) -> None:
        try:
            finish(self.install, timeout=900)
            run([self.docker, "exec", self.name, "mkdir", "-p", "/root/build"])
            for path in [ROOT / "packaging/build-deb.sh", *changes_set(build.changes)]:
                run([self.docker, "cp", str(path), f"{self.name}:/root/build/{path.name}"])
            script = f"bash /root/build/build-deb.sh --lintian /root/build/{build.changes.name}"
            self.check = start(self.exec_argv(script))
            self.verdict = finish(self.check, timeout=600)
        except BaseException as exc:  # handed to result(), in the test's thread
            self.error = exc

    def result(self) -> str:
        assert self.thread is not None, "lintian was not started"
        self.thread.join(timeout=1200)
        if self.error is not None:
            raise self.error
        assert self.verdict is not None, "lintian did not finish"
        return self.verdict

    def close(self) -> None:
        subprocess.run([self.docker, "rm", "-f", "-v", self.name], capture_output=True, timeout=120)
        for proc in (self.install, self.check):
            if proc is not None and proc.poll() is None:
                proc.kill()
        if self.thread is not None:
            self.thread.join(timeout=30)


def changes_set(changes: Path) -> list[Path]:
    """The .changes and every file its Files: field names (md5sum size section priority name)."""
    text = changes.read_text()
    files = re.search(r"^Files:\n((?: .*\n?)+)", text, re.M).group(1)
    return [changes, *(changes.with_name(line.split()[4]) for line in files.splitlines())]


def lintian_findings(output: str) -> list[str]:
    """The error and warning tags of lintian's output (info tags are shown, not findings)."""
    return [line.strip() for line in output.splitlines() if re.match(r"\s*[EW]: ", line)]


def host_release() -> str:
    """The build host's Debian release (its lintian is the one build-deb.sh runs)."""
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return match.group(1) if match else ""


@pytest.fixture(scope="session")
def tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the system test needs root (dockerd, debootstrap)")
    for tool in ("dockerd", "debootstrap", "dpkg-buildpackage", "apt-ftparchive", "lintian"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.fail(f"{tool} missing: run scripts/setup.sh --system")


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory, tools: None) -> SharedBuild:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers
    return SharedBuild(base / "debian-package")


@pytest.fixture(
    scope="module",
    params=[pytest.param(c, id=i, marks=pytest.mark.xdist_group(i)) for i, c in RELEASES.items()],
)
def release(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def image(release: str, shared: SharedBuild) -> str:
    # One image.sh at a time: it starts dockerd when nothing answers.
    with locked(shared.work.with_name("image.lock")):
        out = run([str(HERE / "image.sh"), "--release", release], timeout=900)
    return out.strip().splitlines()[-1]


@pytest.fixture
def release_lintian(release: str, image: str) -> Iterator[ReleaseLintian | None]:
    if release == host_release():
        yield None  # build-deb.sh ran this release's lintian already
        return
    checker = ReleaseLintian(docker_cli(), image)
    try:
        yield checker
    finally:
        checker.close()


@pytest.fixture
def container(image: str, release: str) -> Iterator[Container]:
    docker = docker_cli()
    name = f"dmr-pkgtest-{release}-{uuid.uuid4().hex[:8]}"
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
    release: str,
    shared: SharedBuild,
    release_lintian: ReleaseLintian | None,
    container: Container,
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = Steps(capsys, RELEASE_IDS[release])
    system = container.out(
        ". /etc/os-release; echo $VERSION_CODENAME; echo $PRETTY_NAME, $(python3 --version),"
        " $(systemctl --version | head -n 1 | cut -d' ' -f1,2)"
    ).splitlines()
    assert system[0] == release, f"the {release} image runs {system}"
    steps.say(f"container: {system[1]}; waiting for the shared build")
    build = shared.get()  # the container booted, and lintian installed, meanwhile
    if release_lintian is not None:
        release_lintian.start(build)  # its verdict is awaited at the end
    steps.say(f"built dmr-appliance {__version__} and {UPGRADE_VERSION}; one .deb for all releases")
    if release_lintian is None:
        steps.say(f"lintian of the build host ({release}):\n{build.lintian}")
        assert lintian_findings(build.lintian) == []

    # --- the operator adds the signed repository and installs -------------------------------
    publish(container, build.repo_v1)
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
    # The router's nginx.conf as this release's nginx reads it: not a warning (nginx 1.26
    # warns of directives 1.22 took silently, e.g. `listen ... http2`).
    checked = container.sh("nginx -t").stderr
    assert nginx_complaints(checked) == [], checked
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
    # (each unit's settings that cost exposure, then the table; every line: --no-pager UNIT)
    report = container.out(
        f"for u in {' '.join(UNITS)}; do systemd-analyze security --no-pager $u"
        " | grep -v '^✓'; done; systemd-analyze security --no-pager "
        + " ".join(UNITS)
        + " | sed -n '/^UNIT /,$p'"
    )
    summary = container.out(
        f"for u in {' '.join(UNITS)}; do systemd-analyze security --no-pager $u | tail -n 1; done"
    )
    steps.say(f"systemd-analyze security ({RELEASE_IDS[release]}):\n{report}")
    scores = {
        unit: float(score)
        for unit, score in re.findall(r"Overall exposure level for (\S+): ([0-9.]+)", summary)
    }
    assert set(scores) == set(UNITS), summary
    for unit, score in scores.items():
        assert score <= MAX_EXPOSURE, f"{unit}: exposure {score} > {MAX_EXPOSURE}"

    # --- upgrade: the edited conffile stays, the services restart -----------------------------
    before = {unit: started_at(container, unit) for unit in UNITS}
    publish(container, build.repo_v2)  # the same key: the higher version is published
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

    # The gates' nginx (its configuration rendered by the package) and Debian's nginx.service
    # through starts, reloads on the new CRL and the upgrade's restarts: no warning, no
    # configuration refused (their stderr is in the journal).
    journal = container.out(
        "journalctl --no-pager -o cat -u dmr-home-gate -u dmr-relay-gate -u nginx"
    )
    assert nginx_complaints(journal) == [], "\n".join(nginx_complaints(journal))
    steps.say(f"nginx {container.out('nginx -v 2>&1 | cut -d/ -f2')}: no warning in the journal")

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

    # --- this release's own lintian on the same .changes (when the build host's is another) --
    if release_lintian is not None:
        verdict = release_lintian.result()
        steps.say(f"lintian of {release}, on the same .changes:\n{verdict}")
        assert lintian_findings(verdict) == []


@pytest.mark.xdist_group("debian12")  # beside one release's run: two groups, two workers
def test_wheel_installs_into_an_empty_venv(shared: SharedBuild, tmp_path: Path) -> None:
    """The wheel from the same build: `pip install` into a bare venv gives a working dmr
    (dependencies from PyPI, the current releases)."""
    build = shared.get()
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


def nginx_complaints(log: str) -> list[str]:
    """nginx's warnings and refusals of its configuration ([warn], [emerg])."""
    return [line for line in log.splitlines() if re.search(r"\[(warn|emerg)\]", line)]


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
