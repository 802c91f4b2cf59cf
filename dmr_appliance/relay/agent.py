"""The sync agent: one per relay instance, a child process of the gunicorn master.

It long-polls home's sync document (``GET {home_url}/sync?wait=N``, ETag and
If-None-Match) and writes each new, valid document atomically to
``state_dir/sync.json``, which every worker picks up within ``sync_state.RELOAD_INTERVAL``.
Every ``heartbeat_interval`` it reports to home (``POST {home_url}/heartbeats``) with
the instance's counters. Home being down only delays both: workers keep serving on the
saved document. Both calls go through a router with the relay's certificate, on the one
home client (``wire.home.HomeClient``, as the sender and the CLI use it); a call that
fails goes at once to the next of ``home_url`` and ``home_failover`` (other routers), and
the agent backs off (``SYNC_RETRY``) only when every one of them failed. Stopped cleanly
(SIGTERM from the master's on_exit, systemd or Kubernetes), it sends one last beat,
``"leaving": true``, so that home lists the instance as left rather than, later, down;
within ``LEAVE_BUDGET`` in all, so it never holds up the stop. It takes for home only a
peer with a router's or home's certificate (``home_peer``), and installs a document only
when it is not older than the one held and is signed by a key the relay trusts
(``sync_signature``); refusals are logged and counted (``dmr_relay_sync_refused_total``).

A process rather than a thread in the master: the master forks workers, and a thread
holding a lock at that moment would leave the child with it held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from dmr_appliance import __version__, files, logs, sync_signature
from dmr_appliance.config import RelayConfig
from dmr_appliance.errors import Unavailable
from dmr_appliance.relay import home_peer
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.outbound import describe
from dmr_appliance.relay.sync_state import SYNC_FILE, Snapshot, SyncDocumentError
from dmr_appliance.wire.failover import Failover
from dmr_appliance.wire.home import HomeClient, SyncAnswer
from dmr_appliance.wire.retry import RetryPolicy

HOME_TIMEOUT = (3.0, 10.0)  # connect, read; a long poll reads for its wait beyond that
LEAVE_BUDGET = 2.0  # seconds for the leaving beat, every home URL together
# Between sync attempts while every home URL fails: up to 15 s, or as long as home asks
# (Retry-After, believed up to a minute). Never out of attempts: the agent tries forever.
SYNC_RETRY = RetryPolicy(attempts=1, base_delay=1.0, max_delay=15.0, max_retry_after=60.0)

_log = logs.get_logger("dmr.relay.agent")


class Agent:
    def __init__(self, cfg: RelayConfig, meters: RelayMetrics) -> None:
        self.cfg = cfg
        self.meters = meters
        # Every failure passes the call on: a router down, home unreachable from it, or a
        # peer or document refused there (only a router's or home's certificate).
        self.home_client = HomeClient(
            [cfg.home_url, *cfg.home_failover],
            session=home_peer.session(cfg),
            timeout=HOME_TIMEOUT,
            any_failure_fails_over=True,
            on_failure=self.failed,
        )
        self.path = Path(cfg.state_dir) / SYNC_FILE
        # The saved document is the floor (no older version is installed, even after a
        # restart) and its keys are the ones a new document must be signed by.
        held = saved_snapshot(self.path)
        self.version = held.version if held else None
        self.keys = held.keys if held else None
        self.etag: str | None = None
        self.confirmed_at: float | None = None
        self.stopping = threading.Event()
        # Beats go one at a time, and none after the leaving one (home would take the
        # instance for restarted).
        self.beating = threading.Lock()
        self.left = False

    @property
    def homes(self) -> Failover:
        return self.home_client.failover

    @property
    def home(self) -> str:
        return self.homes.current

    def failed(self, call: str, url: str, exc: Exception) -> None:
        """A call failed at ``url`` (and goes on to the next, if any)."""
        if isinstance(exc, home_peer.Refused):
            self.refused(exc, url, call)
        if len(self.homes.urls) > 1:
            logs.log_event(
                _log, "home-failover", logging.WARNING, call=call, home=url, error=describe(exc)
            )

    # --- sync ----------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """One long poll (on any home URL); True when a new document was saved."""
        saved = self.home_client.sync(
            etag=self.etag, wait=self.cfg.sync.poll_wait, accept=self.take
        )
        if saved is None:  # 304: the document held is current
            self.confirmed()
        return bool(saved)

    def take(self, answer: SyncAnswer) -> bool:
        """Check a document home sent and save it; what this raises fails that URL."""
        try:
            snapshot = Snapshot.parse(answer.body)  # never save what workers would refuse
        except SyncDocumentError as exc:
            raise Unavailable(
                f"GET /sync sent an unusable document: {exc}", code="home-bad-answer"
            ) from exc
        if snapshot.version == self.version:
            self.etag = answer.etag
            self.confirmed()
            return False
        self.admit(snapshot, answer.body, answer.signature)
        self.etag = answer.etag
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(self.path, answer.body)
        logs.log_event(_log, "sync-document-saved", version=snapshot.version, previous=self.version)
        self.version, self.keys = snapshot.version, snapshot.keys
        self.confirmed()
        return True

    def admit(self, snapshot: Snapshot, raw: bytes, signature: str | None) -> None:
        """Refuse a document older than the one held, or not signed by a key the relay
        trusts: the held document's, or for a first document its own."""
        if self.version is not None and snapshot.version < self.version:
            raise home_peer.Refused(
                "sync-document-refused",
                "older",
                f"version {snapshot.version} is older than {self.version}, held",
            )
        try:
            sync_signature.verify(raw, signature, self.keys or snapshot.keys)
        except sync_signature.SignatureError as exc:
            raise home_peer.Refused("sync-document-refused", exc.reason, str(exc)) from exc

    def refused(self, exc: home_peer.Refused, url: str, what: str) -> None:
        logs.log_event(
            _log,
            exc.event,
            logging.ERROR,
            call=what,
            home=url,
            reason=exc.reason,
            detail=str(exc),
            held=self.version,
        )
        self.meters.sync_refused.labels(exc.reason).inc()

    def confirmed(self) -> None:
        """Home just said the document held is current: the sync age starts again."""
        self.confirmed_at = time.time()
        self.meters.sync_confirmed.set(self.confirmed_at)

    def sync_forever(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self.poll_once()
                failures = 0
            except Exception as exc:
                failures += 1
                # e.g. home's caps on long polls (home/polls.py): 429/503 with Retry-After
                delay = SYNC_RETRY.delay(failures, getattr(exc, "retry_after", None))
                logs.log_event(
                    _log,
                    "sync-failed",
                    logging.WARNING,
                    error=describe(exc),
                    homes=len(self.homes.urls),
                    attempt=failures,
                    retry_in=round(delay, 1),
                )
                self.stopping.wait(delay)

    # --- heartbeats ----------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any] | None:
        """Report to home (on any home URL); the beat sent, None once the agent has left."""
        with self.beating:
            return None if self.left else self.beat()

    def leave(self) -> bool:
        """The last beat, of a clean stop: best effort, within LEAVE_BUDGET (waiting for a
        beat in flight included); True when home took it."""
        deadline = time.monotonic() + LEAVE_BUDGET
        if not self.beating.acquire(timeout=LEAVE_BUDGET):
            logs.log_event(
                _log,
                "agent-leave-failed",
                logging.WARNING,
                error="a heartbeat in flight took the whole time",
            )
            return False
        try:
            self.left = True
            self.beat(deadline=deadline)
        except Exception as exc:
            logs.log_event(_log, "agent-leave-failed", logging.WARNING, error=describe(exc))
            return False
        finally:
            self.beating.release()
        logs.log_event(_log, "agent-left", home=self.home)
        return True

    def beat(self, deadline: float | None = None) -> dict[str, Any]:
        """One beat; with a ``deadline`` (monotonic), the leaving one, done by then."""
        age = (
            None
            if self.confirmed_at is None
            else round(max(0.0, time.time() - self.confirmed_at), 1)
        )
        return self.home_client.heartbeat(
            instance=self.cfg.instance,
            address=self.cfg.advertise or self.cfg.bind,
            version=__version__,
            sync_version=self.version or 0,  # 0: none held yet
            counters=self.meters.totals(),
            sync_age=age,
            leaving=deadline is not None,
            deadline=deadline,
        )

    def heartbeat_forever(self) -> None:
        interval = self.cfg.sync.heartbeat_interval
        while not self.stopping.is_set():
            try:
                self.heartbeat()
            except Exception as exc:
                logs.log_event(_log, "heartbeat-failed", logging.WARNING, error=describe(exc))
            self.stopping.wait(interval)

    # --- process -------------------------------------------------------------------------

    def run(self, parent_pid: int) -> None:
        """Sync and beat until told to stop, then leave; or until the master is gone (a
        crash: home is to see the instance go down)."""
        threads = [
            threading.Thread(target=fn, name=fn.__name__, daemon=True)
            for fn in (self.sync_forever, self.heartbeat_forever)
        ]
        for thread in threads:
            thread.start()
        logs.log_event(_log, "agent-started", sync_version=self.version, homes=self.homes.urls)
        orphaned = False
        while not self.stopping.wait(1.0):
            if os.getppid() != parent_pid:  # the master died without stopping us
                orphaned = True
                self.stopping.set()
        left = False if orphaned else self.leave()
        logs.log_event(_log, "agent-stopped", left=left)


def saved_snapshot(path: Path) -> Snapshot | None:
    try:
        return Snapshot.parse(path.read_bytes())
    except (OSError, SyncDocumentError):
        return None


# --- lifecycle, driven by gunicorn's master hooks (relay/gunicorn_conf.py) ---------------


@dataclass(frozen=True)
class AgentProcess:
    pid: int
    sentinel: int  # read end of a pipe whose write end only the agent holds: EOF = gone


def start(cfg: RelayConfig) -> AgentProcess:
    """Fork the agent (its metrics go to the instance's directory, as the workers' do).

    A bare fork, not multiprocessing.Process: gunicorn forks its workers from this
    master afterwards, and multiprocessing's bookkeeping would follow them and try to
    join (or, for a daemon, kill) the agent when a worker exits.
    """
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the agent
        os.close(read_end)
        code = 0
        try:
            _main(cfg, parent)
        except BaseException:  # logged; the exit code tells the master
            logs.log_event(_log, "agent-crashed", logging.ERROR, exc_info=True)
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return AgentProcess(pid, read_end)


def stop(process: AgentProcess | None, timeout: float = 5.0) -> None:
    if process is None:
        return
    # gunicorn's master reaps any child that exits, so ask the sentinel pipe (closed
    # when the agent exits) rather than waitpid whether it is still there.
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 1.0)):
        if wait_for([process.sentinel], 0):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        if wait_for([process.sentinel], wait):
            break
    os.close(process.sentinel)


def _main(cfg: RelayConfig, parent_pid: int) -> None:
    agent = Agent(cfg, RelayMetrics())
    # The master's signal handlers came with the fork; they would wake the master's
    # loop through its pipe. This process only needs to stop cleanly.
    for sig in (
        signal.SIGHUP,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCHLD,
    ):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, lambda *_: agent.stopping.set())
    logs.configure(cfg.log_level, instance=cfg.instance)
    agent.run(parent_pid)
