"""The one supervisor of child processes: start one in a process group of its own, signal
the group, stop it in steps and reap it, so that no worker outlives its master.

Used by the local stack (``dmr up``), the tests and the benchmarks; production runs the
same command lines under systemd. ``NginxProcess`` is nginx's master kept in the
foreground (``daemon off;``) so that it is supervised like any other child: ``start``
waits until the pid file names it (nginx writes it only after every listening socket is
bound), ``reload`` is SIGHUP (new workers with the new config, old ones finish their
requests), ``stop`` is SIGQUIT (graceful), then SIGTERM, then SIGKILL to the group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from dmr_appliance import serving
from dmr_appliance.serving import NginxError

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port free right now on ``host`` (a small race, acceptable on one machine)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ProcessGroup:
    """One child process leading its own process group (gunicorn's workers and nginx's
    with it), its stdout and stderr appended to ``log_path`` (or passed to ``output``)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        output: IO[bytes] | int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.output = output
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ProcessGroup:
        if self.log_path is not None:
            with self.log_path.open("ab") as log:
                self.process = self._popen(log, subprocess.STDOUT)
        else:
            stderr = subprocess.STDOUT if self.output is not None else None
            self.process = self._popen(self.output, stderr)
        return self

    def _popen(self, stdout: IO[bytes] | int | None, stderr: int | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # fixed argv, no shell
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole group (nothing if it has exited)."""
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def wait_ready(
        self,
        ready: Callable[[], bool],
        timeout: float = 30.0,
        *,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
    ) -> ProcessGroup:
        """Until ``ready()`` is true; RuntimeError with the log's tail if the process exits
        first, TimeoutError after ``timeout``. ``retry_on``: errors that mean "not yet"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited at start (see {self.log_path}):\n{self.log_tail()}"
                )
            with contextlib.suppress(*retry_on):
                if ready():
                    return self
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.name} not ready after {timeout:.0f} s (see {self.log_path}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """``stop_signal`` to the group, SIGKILL after ``timeout``; none of it is left."""
        self.end([(self.stop_signal, timeout)])

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, not a shutdown."""
        self.end([])

    def end(self, steps: Sequence[tuple[int, float]]) -> None:
        """Each (signal, seconds to wait) while the leader lives, then SIGKILL to the group;
        returns once no process of the group is left (or after 5 s more)."""
        process = self.process
        if process is None:
            return
        pgid = process.pid  # start_new_session: the leader's pid is the group's id
        for sig, wait in steps:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)
        deadline = time.monotonic() + 5.0
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def logs(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies excluded)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class NginxProcess(ProcessGroup):
    """One nginx master with its workers, in a process group of its own."""

    def __init__(
        self,
        conf: Path | str,
        *,
        prefix: Path | str,
        pid_file: Path | str,
        output: IO[bytes] | int | None = None,
        log_path: Path | None = None,
        name: str = "nginx",
    ) -> None:
        self.conf = Path(conf).resolve()
        self.prefix = Path(prefix).resolve()
        self.pid_file = Path(pid_file)
        if not self.pid_file.is_absolute():
            self.pid_file = self.prefix / self.pid_file
        super().__init__(name, [], log_path=log_path, output=output)

    def test(self) -> str:
        return serving.test_config(self.conf, self.prefix)

    def start(self, timeout: float = 15.0) -> NginxProcess:
        """Start the master in the foreground; return once its sockets are bound."""
        if self.running():
            raise NginxError("nginx is already running")
        self.test()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self.argv = serving.nginx_argv(self.conf, self.prefix, foreground=True)
        super().start()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise NginxError(f"nginx exited with status {code} at start; see its error log")
            if self._pid_from_file() == self.process.pid:
                return self
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
        steps = [(signal.SIGTERM, 5.0)]
        if graceful:
            steps.insert(0, (signal.SIGQUIT, timeout))
        self.end(steps)
        self.process = None

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def __enter__(self) -> NginxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
