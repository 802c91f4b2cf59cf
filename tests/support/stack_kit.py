"""What sender and fault tests need around a running ``Stack``: the stack itself
(``started``, which tests/integration/conftest.py's ``stack`` fixture runs), participants,
a second router rendered from the same template, recipients in the test process, senders."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dmr_appliance import pki, render
from dmr_appliance.client.sender import Sender
from dmr_appliance.errors import DmrError
from dmr_appliance.local.processes import NginxProcess
from dmr_appliance.local.recipient import RecipientServer
from dmr_appliance.local.stack import Stack
from tests.support.home import members
from tests.support.processes import free_port
from tests.support.recipient import serving


@contextmanager
def started(
    state: Path,
    relays: int = 1,
    *,
    rooms: Mapping[str, Sequence[str]] | None = None,
    certificates: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """A running stack with participant ``certificates`` issued (registered or not) and
    the participants of ``rooms`` (room -> ids) registered at its recipient; ``env`` is
    set while it runs (home reads its settings when it starts)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with Stack(state, relays=relays) as stack:
            for name in certificates:
                pki.issue(stack.pki_dir, "participant", name)
            for pid, joined in members(rooms or {}).items():
                ensure_participant(stack, pid, stack.endpoint(pid), joined)
            yield stack


def ensure_participant(stack: Stack, pid: str, endpoint: str, rooms: list[str]) -> None:
    admin = stack.admin_client()
    try:
        admin.create_participant(pid, endpoint, rooms)
    except DmrError as exc:
        if exc.status != 409:
            raise


def failure_at_home(stack: Stack, message_id: str) -> dict | None:
    """The failure report home holds for ``message_id``, None when it has none."""
    try:
        return stack.admin_client().get_failure(message_id)
    except DmrError as exc:
        assert exc.status == 404, exc
        return None


@dataclasses.dataclass
class ExtraRouter:
    url: str
    nginx: NginxProcess
    conf: Path

    def reload(self) -> None:
        self.nginx.reload()


@contextmanager
def extra_router(stack: Stack, directory: Path, **changes: Any) -> Iterator[ExtraRouter]:
    """A second nginx, from the same template and settings as the stack's (same relays and
    home), on its own port and prefix; ``changes`` override RouterConfig fields."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(
        stack.router_config(),
        listen=free_port(),
        prefix=directory,
        pid_file=directory / "nginx.pid",
        access_log=str(directory / "access.log"),
        error_log=str(directory / "error.log"),
        **{"stub_status_bind": "", **changes},
    )
    conf = directory / "nginx.conf"
    render.write(cfg, conf)
    with (directory / "nginx.out").open("ab") as out:
        server = NginxProcess(conf, prefix=directory, pid_file=cfg.pid_file, output=out)
        server.start()
        try:
            yield ExtraRouter(f"https://127.0.0.1:{cfg.listen}", server, conf)
        finally:
            server.stop()


@contextmanager
def recipient_in_thread(stack: Stack, log_path: Path, **kwargs: Any) -> Iterator[ScriptedRecipient]:
    """A recipient in this process (its answers can be scripted), with the stack's
    recipient certificate, requiring a relay's certificate."""
    cert, key = stack.cert("server", "recipient")
    server = ScriptedRecipient(
        ("127.0.0.1", 0), cert=cert, key=key, ca=stack.ca, log_path=log_path, **kwargs
    )
    with serving(server):
        yield server


@contextmanager
def registered_recipient(
    stack: Stack, pid: str, room: str, log_path: Path, **kwargs: Any
) -> Iterator[ScriptedRecipient]:
    """``recipient_in_thread``, registered at home as ``pid`` in ``room``."""
    with recipient_in_thread(stack, log_path, **kwargs) as server:
        ensure_participant(stack, pid, endpoint(server, pid), [room])
        yield server


def endpoint(server: RecipientServer, pid: str) -> str:
    return f"https://localhost:{server.port}/inbox/{pid}"


def sender(
    stack: Stack, routers: list[str] | None = None, *, name: str = "alice", **kwargs: Any
) -> Sender:
    cert, key = stack.cert("participant", name)
    kwargs.setdefault("home", stack.home_url)
    return Sender(routers or [stack.router_url], cert=cert, key=key, ca=stack.ca, **kwargs)


def dead_router() -> str:
    return f"https://127.0.0.1:{free_port()}"  # nothing listens: connection refused


class ScriptedRecipient(RecipientServer):
    """A recipient answering a scripted sequence of statuses, then ``status`` for good:
    deterministic "fails once, then works" without racing the sender's backoff."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._script: list[int] = []
        self._script_lock = threading.Lock()
        self.request_read = threading.Event()  # set when a delivery's body has been read
        super().__init__(*args, **kwargs)

    @property
    def delay(self) -> float:  # read by the handler once per request, after the body
        self.request_read.set()
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._delay = value

    @property
    def status(self) -> int:  # read by the handler once per request
        with self._script_lock:
            return self._script.pop(0) if self._script else self._final

    @status.setter
    def status(self, value: int) -> None:
        with self._script_lock:
            self._final, self._script = value, []

    def script(self, *statuses: int, then: int = 200) -> None:
        with self._script_lock:
            self._script, self._final = list(statuses), then


def dmr_send(
    stack: Stack, *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess:
    """``dmr send --state-dir STACK --as alice ARGS`` as an operator runs it (bytes out)."""
    argv = [sys.executable, "-m", "dmr_appliance", "send", "--state-dir", str(stack.state_dir),
            "--as", "alice", *args]  # fmt: skip
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
