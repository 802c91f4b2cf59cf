"""The Debian packaging agrees with the code it ships (fast checks; the package itself is
built and run by tests/system/test_debian_package.py)."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest

from dmr_appliance import config
from dmr_appliance.cli import build_parser
from tests.support.ansible_files import ROLES, resolve, role_defaults, task_named

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "packaging" / "debian"
UNITS = {"dmr-home": ("home", config.HomeConfig), "dmr-relay": ("relay", config.RelayConfig)}
GATES = {f"{name}-gate": value for name, value in UNITS.items()}
# Debian 12's package for each install_requires name (pybuild maps some, not all).
DEBIAN_NAMES = {
    "falcon": "python3-falcon",
    "gunicorn": "python3-gunicorn",
    "pyjwt": "python3-jwt",
    "cryptography": "python3-cryptography",
    "requests": "python3-requests",
    "urllib3": "python3-urllib3",
    "jinja2": "python3-jinja2",
    "prometheus_client": "python3-prometheus-client",
    "markupsafe": "python3-markupsafe",
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "PrivateUsers": "yes",
    "PrivateMounts": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "User": "dmr",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}


def unit(name: str) -> dict[str, list[str]]:
    """Every key of a unit file with all its values, in order (systemd keys repeat)."""
    values: dict[str, list[str]] = {}
    for line in (DEBIAN / f"dmr-appliance.{name}.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_runs_the_serve_command_with_the_packaged_conffile(name: str) -> None:
    kind, _ = UNITS[name]
    argv = shlex.split(unit(name)["ExecStart"][0])
    assert argv[:3] == ["/usr/bin/dmr", kind, "serve"]
    assert argv[3:] == ["--config", f"/etc/dmr-appliance/{kind}.toml"]
    args = build_parser().parse_args(argv[1:])  # the CLI really has this command
    assert callable(args.func)


@pytest.mark.parametrize("name", sorted(GATES))
def test_gate_unit_runs_the_gate_command_and_reloads_with_it(name: str) -> None:
    kind, cls = GATES[name]
    values = unit(name)
    argv = shlex.split(values["ExecStart"][0])
    assert argv == ["/usr/bin/dmr", kind, "gate", "--config", f"/etc/dmr-appliance/{kind}.toml"]
    assert shlex.split(values["ExecReload"][0]) == [*argv[:3], "--reload", *argv[3:]]
    for line in (argv, shlex.split(values["ExecReload"][0])):
        assert callable(build_parser().parse_args(line[1:]).func)
    assert values["PartOf"] == [f"{kind_unit(kind)}.service"]
    assert values["KillSignal"] == ["SIGQUIT"]  # nginx's graceful stop
    defaults = config.load(cls).gate
    assert values["RuntimeDirectory"] == [defaults.prefix.name], "the prefix is its runtime dir"
    assert unit(kind_unit(kind))["RuntimeDirectory"] == [defaults.socket.parent.name]
    assert f"{name}.service" in unit(kind_unit(kind))["Wants"][0].split()
    for key, expected in HARDENING.items():
        if key not in ("UMask",):
            assert values.get(key) == [expected], f"{name}: {key}"
    assert values["UMask"] == ["0077"]


def kind_unit(kind: str) -> str:
    return f"dmr-{kind}"


def test_crl_path_unit_reloads_every_tls_endpoint() -> None:
    path = (DEBIAN / "dmr-appliance.dmr-crl.path").read_text()
    assert f"PathChanged={config.Tls().crl}" in path
    service = (DEBIAN / "dmr-appliance.dmr-crl.service").read_text()
    reload = re.search(r"^ExecStart=(.*)$", service, re.M).group(1).split()
    assert reload[:2] == ["/bin/systemctl", "try-reload-or-restart"]
    assert set(reload[2:]) == {"dmr-home-gate.service", "dmr-relay-gate.service", "nginx.service"}
    rules = (DEBIAN / "rules").read_text()
    for name in ("dmr-home", "dmr-home-gate", "dmr-relay", "dmr-relay-gate", "dmr-crl"):
        assert f"dh_installsystemd --name={name}\n" in rules


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_hardened_and_keeps_state_in_its_state_directory(name: str) -> None:
    kind, cls = UNITS[name]
    values = unit(name)
    for key, expected in HARDENING.items():
        assert values.get(key) == [expected], f"{name}: {key}"
    assert values["SystemCallFilter"][0] == "@system-service"
    assert values["StateDirectory"] == [name]
    defaults = config.load(cls)
    state = defaults.database.parent if kind == "home" else defaults.state_dir
    assert state == Path("/var/lib") / name, "the config's default state path is the unit's"
    assert "ReadWritePaths" not in values, "ProtectSystem=strict plus StateDirectory suffice"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_waits_for_the_certificates_the_default_config_names(name: str) -> None:
    _, cls = UNITS[name]
    values = unit(name)
    tls = config.load(cls).tls
    conditions = values.get("ConditionPathExists", []) + values.get("ConditionPathExistsGlob", [])
    assert str(tls.ca) in conditions
    for path in (tls.cert, tls.key):
        assert any(Path(path).match(pattern) for pattern in conditions), f"{name}: {path}"


def test_control_depends_on_a_debian_package_for_every_requirement() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requirements = [
        re.match(r"[A-Za-z0-9_.-]+", line.strip()).group(0).lower()
        for line in setup["options"]["install_requires"].strip().splitlines()
    ]
    control = (DEBIAN / "control").read_text()
    binary = control[control.index("Package: dmr-appliance") :]
    depends = re.search(r"^Depends:(.*?)^\S", binary, re.S | re.M).group(1)
    names = {item.strip().split()[0] for item in depends.split(",") if item.strip()}
    for requirement in requirements:
        assert DEBIAN_NAMES[requirement] in names, requirement
    assert {"${python3:Depends}", "${misc:Depends}", "adduser", "openssl"} <= names
    assert "nginx-light | nginx-core | nginx-full | nginx-extras" in depends  # the gates
    assert re.search(r"^Architecture: all$", binary, re.M)


def test_conffiles_are_generated_from_the_config_defaults() -> None:
    rules = (DEBIAN / "rules").read_text()
    assert "from dmr_appliance.cli.config import defaults" in rules
    assert "CONFFILES = home relay router" in rules
    assert set(config.KINDS) == {"home", "relay", "router"}
    assert not list(DEBIAN.glob("*.toml")), "conffiles are generated, never committed"


def test_maintainer_scripts_manage_the_dmr_user() -> None:
    postinst = (DEBIAN / "dmr-appliance.postinst").read_text()
    postrm = (DEBIAN / "dmr-appliance.postrm").read_text()
    assert "adduser --quiet --system" in postinst and "#DEBHELPER#" in postinst
    purge = postrm[postrm.index("purge)") : postrm.index(";;")]
    assert "deluser" in purge and "/var/lib/dmr-home" in purge and "/var/lib/dmr-relay" in purge
    assert "#DEBHELPER#" in postrm


def test_backup_timer_runs_the_backup_command_daily_under_homes_hardening() -> None:
    values = unit("dmr-home-backup")
    argv = shlex.split(values["ExecStart"][0])
    assert argv == ["/usr/bin/dmr", "home", "backup", "--config", "/etc/dmr-appliance/home.toml"]
    assert callable(build_parser().parse_args(argv[1:]).func)
    assert values["Type"] == ["oneshot"]
    for key, expected in HARDENING.items():
        assert values.get(key) == [expected], f"dmr-home-backup: {key}"
    home = unit("dmr-home")
    for key in (
        "SystemCallFilter",
        "StateDirectory",
        "ProtectProc",
        "ProcSubset",
        "DevicePolicy",
        "KeyringMode",
        "RemoveIPC",
    ):
        assert set(values[key]) <= set(home[key]), key
    defaults = config.load(config.HomeConfig)
    assert values["ConditionPathExists"] == [str(defaults.database)]
    assert values["ReadWritePaths"] == [str(defaults.backup.dir)], "writes only its backups"
    tmpfiles = (DEBIAN / "dmr-appliance.tmpfiles").read_text()
    assert f"d {defaults.backup.dir} 0700 dmr dmr -" in tmpfiles
    timer = (DEBIAN / "dmr-appliance.dmr-home-backup.timer").read_text()
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer
    assert "WantedBy=timers.target" in timer
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd --name=dmr-home-backup --no-enable --no-start\n" in rules


def test_the_roles_apt_defaults_give_the_line_build_repo_sh_prints() -> None:
    """One layout (issue 23): build-repo.sh publishes a flat repository, "URL ./", and
    dmr_package's defaults write that line (they said suite bookworm, component main)."""
    script = (ROOT / "packaging" / "build-repo.sh").read_text()
    assert re.search(r'^line="deb \[signed-by=\$keyring\] \$url \./"$', script, re.M)
    task = task_named(
        ROLES / "dmr_package/tasks/repository.yml",
        "Add the repository, trusted through that keyring only",
    )
    url = "https://apt.example.org/dmr-appliance"
    defaults = {k: v for k, v in role_defaults("dmr_package").items() if "_apt_" in k}
    values = resolve({**defaults, **task["vars"], "dmr_package_apt_url": url})
    keyring = defaults["dmr_package_apt_keyring"]
    assert values["dmr_package_apt_line"] == f"deb [signed-by={keyring}] {url} ./"


def test_one_package_for_debian_12_and_13_names_no_release() -> None:
    """One .deb for both releases (issue 27): the changelog's distribution and the
    repository's Release name none of them; the units go where both releases' systemd
    read them and Debian 13's lintian does not call an aliased location (/lib); and no
    override names a tag Debian 13's lintian does not know (an error there: alien-tag)."""

    def code(path: str) -> str:
        text = (ROOT / path).read_text()
        return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))

    build_deb = code("packaging/build-deb.sh")
    assert re.search(r"^dmr-appliance \(\$version\) stable; urgency=medium$", build_deb, re.M)
    build_repo = code("packaging/build-repo.sh")
    assert "APT::FTPArchive::Release::Suite=stable" in build_repo
    assert "Codename" not in build_repo
    rules = code("packaging/debian/rules")
    assert "mv $(PKG)/lib/systemd/system $(PKG)/usr/lib/systemd/system" in rules
    overrides = code("packaging/debian/dmr-appliance.lintian-overrides")
    assert "package-supports-alternative-init-but-no-init.d-script" not in overrides
    assert "lib/systemd/system" not in overrides
