"""Failure reports to home (``POST /v1/failures``), and a local spool for when home is down.

A report is tried a few times with short backoff. If home still cannot take it, the
report is appended to the spool file (JSON lines, when one is configured) and logged at
error level with the whole report, so the central log collection holds it either way;
``flush`` sends spooled reports once home answers again. Home merges a sender's repeated
reports of one message id, so sending a report twice (a crash between the POST and the spool
rewrite) is harmless. The spool is locked with ``flock``: several ``dmr send``
processes may share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dmr_appliance import files, logs
from dmr_appliance.errors import DmrError
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.outcome import transient
from dmr_appliance.wire.retry import RetryPolicy

REPORT_POLICY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=1.0)

_log = logs.get_logger("dmr.sender")


class Reporter:
    def __init__(
        self,
        home: HomeClient,
        *,
        spool: Path | str | None = None,
        policy: RetryPolicy = REPORT_POLICY,
    ) -> None:
        self.home = home
        self.spool = Path(spool) if spool is not None else None
        self.policy = policy
        self._lock = threading.Lock()

    def report(self, doc: dict[str, Any]) -> tuple[bool, bool, str | None]:
        """Send ``doc``; returns (reported, spooled, error)."""
        failure = self._send(doc, tries=self.policy.attempts)
        if failure is None:
            logs.log_event(
                _log,
                "send.reported",
                message_id=doc["message_id"],
                to=doc["to"],
                attempts=len(doc["attempts"]),
            )
            return True, False, None
        error = f"{failure.code}: {failure.detail}"
        spooled = transient(failure) and self._spool(doc)
        # The report itself, in full: with no spool, the log is where it survives.
        logs.log_event(
            _log,
            "send.report-failed",
            logging.ERROR,
            message_id=doc["message_id"],
            error=error,
            spooled=spooled,
            report=None if spooled else doc,
        )
        return False, spooled, error

    def pending(self) -> int:
        """Reports waiting in the spool."""
        if self.spool is None or not self.spool.exists():
            return 0
        with self._locked():
            return len(_read(self.spool))

    def flush(self) -> int:
        """Send spooled reports, oldest first, until home is unreachable; returns how many
        left the spool."""
        if self.spool is None or not self.spool.exists():
            return 0
        with self._locked():
            waiting = _read(self.spool)
            done = 0
            for doc in waiting:
                failure = self._send(doc, tries=1)
                if failure is not None and transient(failure):
                    break  # home is still away: keep this one and the rest
                if failure is not None:  # refused for good: it stays only in the log
                    logs.log_event(
                        _log,
                        "send.report-refused",
                        logging.ERROR,
                        message_id=doc.get("message_id"),
                        code=failure.code,
                        error=failure.detail,
                        report=doc,
                    )
                done += 1
            if done:
                _rewrite(self.spool, waiting[done:])
                logs.log_event(_log, "send.spool-flushed", sent=done, left=len(waiting) - done)
            return done

    def _send(self, doc: dict[str, Any], *, tries: int) -> DmrError | None:
        """None once home has the report, else the last error."""
        failure: DmrError | None = None
        for attempt in range(1, tries + 1):
            try:
                self.home.report_failure(doc)
                return None
            except DmrError as exc:
                failure = exc
                if not transient(exc):  # home refused the report itself: retrying won't help
                    return exc
            if attempt < tries:
                time.sleep(self.policy.delay(attempt))
        return failure

    def _spool(self, doc: dict[str, Any]) -> bool:
        if self.spool is None:
            return False
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        try:
            with self._locked(), self.spool.open("a+b") as fh:
                if _torn(fh):  # an append a crash cut short: this report starts a new line
                    line = b"\n" + line
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            logs.log_event(
                _log, "send.spool-failed", logging.ERROR, path=str(self.spool), error=str(exc)
            )
            return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.spool is not None
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.spool.with_name(self.spool.name + ".lock")
        with self._lock, lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path: Path) -> list[dict[str, Any]]:
    docs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            docs.append(json.loads(line))
        except ValueError:  # a torn line from a crash mid-append: skip it, loudly, in full
            logs.log_event(_log, "send.spool-bad-line", logging.ERROR, path=str(path), line=line)
    return docs


def _torn(fh: BinaryIO) -> bool:
    """True when the file does not end with a newline (its last append was cut short)."""
    if fh.seek(0, os.SEEK_END) == 0:
        return False
    fh.seek(-1, os.SEEK_END)
    return fh.read(1) != b"\n"


def _rewrite(path: Path, docs: list[dict[str, Any]]) -> None:
    files.write_atomic(
        path, b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in docs)
    )
