"""A throw-away PostgreSQL server from Debian's binaries, for the tests and ``dmr up
--store postgresql``: initdb and pg_ctl in a directory of its own, listening on a unix
socket only, as a non-root user (PostgreSQL refuses to run as root: when we are root, the
cluster belongs to ``nobody`` and its commands run through ``runuser``). No container.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path("/usr/lib/postgresql")  # Debian 12: 15/bin; Debian 13: 17/bin
USER = "dmr"  # the cluster's superuser; local connections are trusted (a test server)
SETUP = "apt install postgresql (scripts/setup.sh --test installs it)"


def bin_dir() -> Path:
    """The newest PostgreSQL's binaries here (Debian installs each major version apart)."""
    found = sorted(ROOT.glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise PostgresMissing(f"no {ROOT}/*/bin/pg_ctl: {SETUP}")
    return found[-1].parent


class PostgresMissing(RuntimeError):
    """No PostgreSQL binaries here."""


class LocalPostgres:
    """One cluster in ``base`` (made under /tmp when None, so that its socket path is
    short and ``nobody`` can reach it: not in a 0700 directory of root's)."""

    def __init__(self, base: Path | None = None, binaries: Path | None = None) -> None:
        self.bin_dir = binaries or bin_dir()
        self.base = Path(base or tempfile.mkdtemp(prefix="dmr-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base
        self.log = self.base / "postgres.log"
        self._owner = "nobody" if os.geteuid() == 0 else None

    def start(self) -> LocalPostgres:
        """initdb (unless the cluster exists: ``dmr up`` keeps it between runs), then
        start it (unless it runs: a run that was killed left it)."""
        self.base.mkdir(parents=True, exist_ok=True)
        if self._owner:
            entry = pwd.getpwnam(self._owner)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.base.chmod(0o755)
        if not (self.data / "PG_VERSION").exists():
            initdb = ("initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8")
            self._run(*initdb, "--no-sync")
        elif self._run("pg_ctl", "-D", self.data, "status", check=False) == 0:
            return self
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c max_connections=300"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.log, "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        """A libpq URL reaching ``database`` over the unix socket."""
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}"

    def database(self, name: str) -> str:
        """Create database ``name`` unless it exists; its URL."""
        name = "d" + hashlib.sha256(name.encode()).hexdigest()[:20]
        # name is "d" and hex digits: nothing to quote
        found = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if found.strip() != "1":
            self._psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast: the tests' data is thrown away, ``dmr up``'s kept)."""
        if self.data.exists():
            mode = "immediate" if remove else "fast"
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def _psql(self, sql: str) -> str:
        command = [self.bin_dir / "psql", "-h", self.socket_dir, "-U", USER, "-d", "postgres"]
        done = subprocess.run(
            [*map(str, command), "-qAtX", "-c", sql], capture_output=True, text=True, check=True
        )
        return done.stdout

    def _run(self, tool: str, *args: object, check: bool = True) -> int:
        command = [str(self.bin_dir / tool), *map(str, args)]
        if self._owner:
            command = ["runuser", "-u", self._owner, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if check and done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()}\n{log}")
        return done.returncode
