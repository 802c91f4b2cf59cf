"""Run Debian's nginx as an ordinary child process with its own prefix, config, pid and logs.

Used by the local stack (``dmr up``) and the tests; production runs nginx under systemd
with the same rendered config. The master stays in the foreground (``daemon off;``) so
the parent supervises it like any other child: ``start`` waits until the pid file names
it (nginx writes it only after every listening socket is bound), ``reload`` is SIGHUP
(new workers with the new config, old ones finish their requests), ``stop`` is SIGQUIT
(graceful), then SIGTERM, then SIGKILL to the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from dmr_appliance.errors import DmrError

NGINX = "/usr/sbin/nginx"


class NginxError(DmrError):
    code = "nginx-error"
    status = 500
    title = "nginx failed"


def binary() -> str:
    """Debian's nginx, or the one on PATH; NginxError with the fix if there is none."""
    if os.access(NGINX, os.X_OK):
        return NGINX
    found = shutil.which("nginx")
    if found:
        return found
    raise NginxError("nginx is not installed; install it with 'apt-get install nginx-light' "
                     "(or nginx) and try again")


def _globals() -> str:
    # As root without a `user` directive, workers would become "nobody", which cannot
    # reach a private (0700) state directory for temp files: keep root's identity then.
    # As an ordinary user, nginx simply runs as that user (the `user` directive is ignored).
    return "user root root;" if os.geteuid() == 0 else ""


def argv(conf: Path, prefix: Path, *extra: str, foreground: bool = False) -> list[str]:
    """nginx's command line for ``conf`` with its own prefix and errors on stderr."""
    directives = _globals() + (" daemon off;" if foreground else "")
    cmd = [binary(), "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    if directives.strip():
        cmd += ["-g", directives.strip()]
    return [*cmd, *extra]


def prepare_prefix(prefix: Path) -> None:
    """Create the prefix and its logs/ directory (nginx creates its temp paths itself)."""
    (Path(prefix) / "logs").mkdir(parents=True, exist_ok=True)


def test_config(conf: Path | str, prefix: Path | str | None = None) -> str:
    """``nginx -t`` on ``conf``; returns nginx's report, raises NginxError if it fails."""
    conf = Path(conf).resolve()
    prefix = Path(prefix).resolve() if prefix is not None else conf.parent
    prepare_prefix(prefix)
    result = subprocess.run(
        argv(conf, prefix, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise NginxError(f"nginx -t failed for {conf}:\n{result.stderr.strip()}")
    return result.stderr


SIGNALS = {"reload": signal.SIGHUP, "stop": signal.SIGQUIT, "reopen": signal.SIGUSR1}


def signal_pid_file(pid_file: Path | str, action: str) -> int:
    """Send ``action`` (reload, stop, reopen) to the master named in ``pid_file``."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        raise NginxError(f"no running nginx: {pid_file} names no process; start it first") \
            from None
    try:
        os.kill(pid, SIGNALS[action])
    except ProcessLookupError:
        raise NginxError(f"no running nginx: pid {pid} from {pid_file} is gone") from None
    return pid


class Nginx:
    """One nginx master with its workers, in a process group of its own."""

    def __init__(
        self,
        conf: Path | str,
        *,
        prefix: Path | str,
        pid_file: Path | str,
        output: IO[bytes] | int | None = None,
    ) -> None:
        self.conf = Path(conf).resolve()
        self.prefix = Path(prefix).resolve()
        self.pid_file = Path(pid_file)
        if not self.pid_file.is_absolute():
            self.pid_file = self.prefix / self.pid_file
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def test(self) -> str:
        return test_config(self.conf, self.prefix)

    def start(self, timeout: float = 15.0) -> None:
        """Start the master in the foreground; return once its sockets are bound."""
        if self.running():
            raise NginxError("nginx is already running")
        self.test()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self.process = subprocess.Popen(  # fixed argv, no shell
            argv(self.conf, self.prefix, foreground=True),
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise NginxError(f"nginx exited with status {code} at start; see its error log")
            if self._pid_from_file() == self.process.pid:
                return
            time.sleep(0.02)
        self.stop()
        raise NginxError(f"nginx did not write {self.pid_file} within {timeout:.0f} s")

    def reload(self) -> None:
        """Re-read the config (checked first: a bad file leaves the running one alone)."""
        if not self.running():
            raise NginxError("nginx is not running")
        self.test()
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGHUP)

    def stop(self, timeout: float = 10.0, *, graceful: bool = True) -> None:
        """Stop (graceful: SIGQUIT lets requests finish; else SIGTERM), then forced;
        afterwards no process of its group is left."""
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the master leads its own group
        steps = [(signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)]
        if graceful:
            steps.insert(0, (signal.SIGQUIT, timeout))
        for sig, wait in steps:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(wait)
            if process.poll() is not None:
                break
        # Workers leave with their master; anything left in the group goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
