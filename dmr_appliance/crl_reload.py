"""Run nginx and reload it when the CRL it checks changes.

nginx reads ``ssl_crl`` only at start and on SIGHUP. On a host the package's
``dmr-crl.path`` reloads the gates and the router when the dmr_pki role copies a new CRL;
in a container nothing would: Kubernetes mounts the CRL from a Secret, which the kubelet
replaces in place. There the process that starts nginx keeps it as a child, reads the CRL
every few seconds and sends SIGHUP when its content changes (``dmr home|relay gate
--watch-crl``, ``dmr pki watch-crl -- nginx ...`` for the router). A reload drops no request,
and a CRL nginx refuses leaves it serving with the previous one. The local stack runs
nginx itself and reloads it from a ``Watcher`` thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from dmr_appliance import logs
from dmr_appliance.errors import DmrError

_log = logging.getLogger("dmr.crl")
# The kubelet refreshes a mounted Secret within about a minute: a few seconds more is noise.
INTERVAL = 5.0
# Signals meant for nginx (stop, graceful quit, reload, reopen logs, upgrade) are passed on.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def digest(path: Path) -> bytes | None:
    """The CRL file's content hash; None while it cannot be read (being replaced)."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


class Watch:
    """Tells whether the file's content differs from the last content seen.

    Content, not mtime: the kubelet's atomic swap and a copy of the same file change the
    mtime without a new CRL.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = digest(path)

    def changed(self) -> bool:
        now = digest(self.path)
        if now is None or now == self.seen:
            return False
        self.seen = now
        return True


class Watcher:
    """Calls ``on_change`` from a thread when the CRL's content changes: for nginx run
    without a supervisor (the local stack's gates and router). A failing ``on_change``
    (nginx refuses the CRL) leaves nginx on the previous list; the next change tries again.
    """

    def __init__(self, path: Path, on_change: Callable[[], None], interval: float = 0.5) -> None:
        self.watch = Watch(path)
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crl-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.watch.changed():
                with contextlib.suppress(DmrError, OSError):
                    self.on_change()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def supervise(argv: Sequence[str], crl: Path, interval: float = INTERVAL) -> int:
    """Run ``argv`` (nginx in the foreground) until it exits, SIGHUP it when ``crl``
    changes; returns its exit status (128 + the signal that killed it)."""
    watch = Watch(crl)
    child = subprocess.Popen(list(argv))  # nginx, argv built by the caller: no shell

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    logs.log_event(_log, "crl-watch", path=str(crl), pid=child.pid, interval=interval)
    while True:
        try:
            code = child.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            if watch.changed():
                logs.log_event(_log, "crl-changed", path=str(crl), pid=child.pid)
                child.send_signal(signal.SIGHUP)
            continue
        return 128 - code if code < 0 else code
