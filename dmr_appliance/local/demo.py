"""``dmr demo``: the local stack under a scripted load, ending with a tally counted from records.

The scenario: start the stack; register alice and bob (one room, bob receives at the
stack's demo recipient) and mallory; send a batch from alice to bob from several threads,
paced under the router's rate limit, while one relay is SIGKILLed halfway and then
restarted; deliver one of alice's signed messages altered on a relay's host (with that
relay's certificate, as its process would), which the recipient must refuse; revoke
mallory while she keeps sending (one try every 50 ms) and time the first refusal; then
reconcile. Every message is signed by its sender, verified by the recipient, and answered
with a receipt the Sender verifies: the tally counts both among the delivered.

Reconciliation is against three independent records, never against the demo's own
counters: every message id the Sender was asked to send is either **delivered** (the
recipient's log holds a 2xx delivery of it), **refused** (the Sender's result rejects it,
with a reason), **reported failed** (home's failure list holds it), or **unaccounted**
(none of these). The recipient processes a message id once: further copies (the
at-least-once path: a relay killed mid-answer, the router or sender retrying) are logged
as duplicates and counted as suppressed. Each message has one recipient, so each id
lands in exactly one class, in that order of precedence.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from dmr_appliance import pki
from dmr_appliance.client.sender import Sender
from dmr_appliance.errors import DmrError
from dmr_appliance.local.demo_records import (
    ROOM,
    Ledger,
    Tally,
    failed_at_home,
    read_deliveries,
    reconcile,
)
from dmr_appliance.local.demo_tamper import Tampering, deliver_altered
from dmr_appliance.local.stack import Stack, StackError
from dmr_appliance.progress import ProgressBar

SENDER, RECEIVER, REVOKED = "alice", "bob", "mallory"
RATE_SHARE = 0.8  # of the router's per-certificate rate: the batch stays under its limit
PROBE_EVERY = 0.05  # seconds between mallory's sends while her revocation spreads
REVOCATION_DEADLINE = 10.0  # seconds: give up waiting for the first refusal
SYNC_DEADLINE = 15.0  # seconds for every relay to hold home's current sync document

Say = Callable[[str], None]


# --- the scenario -----------------------------------------------------------------------


@dataclass
class RelayCrash:
    relay: str
    after_message: int | None = None  # messages finished when it was killed
    killed: bool = False
    back_after_s: float | None = None  # from SIGKILL to ready again
    error: str | None = None

    def note(self) -> str:
        if self.back_after_s is not None:
            return f"{self.relay} SIGKILLed, back after {self.back_after_s:.1f} s"
        return f"{self.relay} SIGKILLed, restarting" if self.killed else ""


@dataclass(frozen=True)
class Revocation:
    participant: str
    latency_ms: float | None  # revoke call to the first refused send; None: never refused
    delivered_meanwhile: int  # her sends delivered after the call, before the refusal
    reason: str | None


@dataclass(frozen=True)
class Report:
    tally: Tally
    crash: RelayCrash
    tampering: Tampering
    revocation: Revocation
    seconds: float
    state_dir: Path

    @property
    def ok(self) -> bool:
        t = self.tally
        return (
            t.unaccounted == 0
            and t.processed_twice == 0
            and t.signed == t.signature_verified == t.receipts_verified == t.delivered
            and self.tampering.refused
            and self.revocation.latency_ms is not None
        )

    def to_json(self) -> dict[str, Any]:
        latency = self.revocation.latency_ms
        return {
            **asdict(self.tally),
            "revocation_ms": None if latency is None else round(latency, 1),
            "revocation_within_1s": latency is not None and latency <= 1000,
            "revocation_delivered_meanwhile": self.revocation.delivered_meanwhile,
            "relay_killed": self.crash.relay if self.crash.killed else None,
            "relay_killed_after": self.crash.after_message,
            "relay_back_after_s": _round(self.crash.back_after_s),
            "relay_error": self.crash.error,
            **self.tampering.to_json(),
            "seconds": round(self.seconds, 1),
            "state_dir": str(self.state_dir),
            "ok": self.ok,
        }


class Demo:
    """Runs the scenario on a started ``Stack``; narration goes to ``say``, the bar to ``err``."""

    def __init__(self, stack: Stack, *, threads: int, say: Say, err: IO[str]) -> None:
        self.stack = stack
        self.threads = threads
        self.say = say
        self.err = err
        self.admin = stack.admin_client()
        self.ledger = Ledger()

    def run(self, messages: int) -> Report:
        started = time.monotonic()
        self.register_participants()
        with self._sender(SENDER) as alice:
            crash = self.send_batch(alice, messages)
        tampering = self.tamper()
        with self._sender(REVOKED) as mallory:
            revocation = self.revoke_while_sending(mallory)
        tally = self.tally()
        seconds = time.monotonic() - started
        return Report(tally, crash, tampering, revocation, seconds, self.stack.state_dir)

    # -- participants --------------------------------------------------------------------

    def register_participants(self) -> None:
        for pid in (SENDER, RECEIVER, REVOKED):
            self._certificate(pid)
            self._participant(pid)
        took = self.wait_relays_synced()
        self.say(
            f"participants: {SENDER} and {RECEIVER} in room '{ROOM}' ({RECEIVER} "
            f"receives at {self.stack.endpoint(RECEIVER)}), {REVOKED} too; every relay "
            f"has them ({took * 1000:.0f} ms)"
        )

    def _certificate(self, pid: str) -> None:
        cert, key = self.stack.cert("participant", pid)
        if not (cert.exists() and key.exists()):
            pki.issue(self.stack.pki_dir, "participant", pid, force=True)
            self.say(f"issued a participant certificate for {pid}: {cert}")

    def _participant(self, pid: str) -> None:
        """Active, with the demo's endpoint and room; an earlier run's leftover is replaced."""
        endpoint = self.stack.endpoint(pid)
        try:
            found = self.admin.get_participant(pid)
        except DmrError as exc:
            if exc.status != 404:
                raise
            found = None
        wanted = {"endpoint": endpoint, "rooms": [ROOM], "status": "active"}
        if found is not None and all(found.get(k) == v for k, v in wanted.items()):
            return
        if found is not None:
            self.admin.delete_participant(pid)  # e.g. mallory, revoked by the last run
        self.admin.create_participant(pid, endpoint, [ROOM])

    def wait_relays_synced(self) -> float:
        """Seconds until every relay holds home's current sync document."""
        started = time.monotonic()
        version = int(self.admin.sync().document["version"])
        session = self.stack.session()
        pending = set(self.stack.relay_names)
        while pending:
            for name in sorted(pending):
                ready = session.get(self.stack.relay_url(name) + "/readyz", timeout=5)
                if ready.ok and int(ready.json().get("sync_version", -1)) >= version:
                    pending.discard(name)
            if pending and time.monotonic() - started > SYNC_DEADLINE:
                raise StackError(
                    f"{', '.join(sorted(pending))} did not get sync version "
                    f"{version} within {SYNC_DEADLINE:.0f} s"
                )
            time.sleep(0.05 if pending else 0)
        return time.monotonic() - started

    def _sender(self, pid: str) -> Sender:
        cert, key = self.stack.cert("participant", pid)
        return Sender(
            [self.stack.router_url],
            cert=cert,
            key=key,
            ca=self.stack.ca,
            home=self.stack.home_url,
            connections=self.threads,
        )

    # -- the batch, with a relay crash halfway -------------------------------------------

    def send_batch(self, alice: Sender, count: int) -> RelayCrash:
        rate = self._message_rate()
        self.say(
            f"sending {count} messages {SENDER} -> {RECEIVER} from {self.threads} "
            f"threads at {rate:.0f}/s; {self.stack.relay_names[0]} is SIGKILLed halfway"
        )
        crash = RelayCrash(self.stack.relay_names[0])
        killer = threading.Thread(target=self._crash_relay, args=(crash,), daemon=True)
        progress = ProgressBar(count, self.err, prefix="  ")
        start = time.monotonic()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="demo-send") as pool:
            futures = [
                pool.submit(self._paced_send, alice, i, start + i / rate) for i in range(count)
            ]
            for done, future in enumerate(as_completed(futures), 1):
                future.result()
                if done == max(1, count // 2):
                    crash.after_message = done
                    killer.start()
                progress.update(done, crash.note())
        killer.join()
        progress.finish(crash.note())
        self.say(
            f"batch done in {time.monotonic() - start:.1f} s; {crash.relay}: "
            f"{_crash(crash) or 'not killed'}"
        )
        return crash

    def _message_rate(self) -> float:
        """Messages per second: a share of the router's per-certificate limit ("50r/s")."""
        limit = self.stack.router_config().rate_limit.rate
        number, unit = re.fullmatch(r"(\d+)r/([sm])", limit).groups()  # type: ignore[union-attr]
        per_second = int(number) / (60 if unit == "m" else 1)
        return max(1.0, per_second * RATE_SHARE)

    def _paced_send(self, alice: Sender, index: int, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        self.ledger.send(alice, RECEIVER, {"n": index, "text": f"demo message {index}"})

    def _crash_relay(self, crash: RelayCrash) -> None:
        started = time.monotonic()
        try:
            self.stack.kill_relay(crash.relay)
            crash.killed = True
            self.stack.start_relay(crash.relay)
            crash.back_after_s = time.monotonic() - started
        except (DmrError, OSError) as exc:
            crash.error = f"{type(exc).__name__}: {exc}"

    # -- a relay that alters a message ---------------------------------------------------

    def tamper(self) -> Tampering:
        found = deliver_altered(self.stack, room=ROOM, sender=SENDER, recipient=RECEIVER)
        answer = found.error or f"{found.status} {found.code or '(no problem type)'}"
        verdict = "refused it" if found.refused else "did NOT refuse it"
        self.say(
            f"a message of {SENDER}'s altered on {found.relay}'s host and delivered with its "
            f"certificate: {RECEIVER}'s endpoint {verdict} ({answer})"
        )
        return found

    # -- revocation ----------------------------------------------------------------------

    def revoke_while_sending(self, mallory: Sender) -> Revocation:
        first = self.ledger.send(mallory, RECEIVER, {"text": "mallory, before revocation"})
        self.say(
            f"{REVOKED} sends before her revocation: "
            f"{'delivered' if self.ledger.delivered(first) else 'NOT delivered'}"
        )
        started = time.monotonic()
        self.admin.set_participant_status(REVOKED, "revoke")
        delivered, tick = 0, started
        while time.monotonic() - started < REVOCATION_DEADLINE:
            sent = self.ledger.send(mallory, RECEIVER, {"text": "mallory, after revocation"})
            reason = self.ledger.refusal(sent)
            if reason is not None:
                latency = (time.monotonic() - started) * 1000
                self.say(
                    f"revoked {REVOKED}: her next message refused {latency:.0f} ms after "
                    f"the revoke call ({reason}); {delivered} delivered meanwhile"
                )
                return Revocation(REVOKED, latency, delivered, reason)
            delivered += self.ledger.delivered(sent)
            tick += PROBE_EVERY
            time.sleep(max(0.0, tick - time.monotonic()))
        self.say(f"revoked {REVOKED}: still not refused after {REVOCATION_DEADLINE:.0f} s")
        return Revocation(REVOKED, None, delivered, None)

    # -- reconciliation ------------------------------------------------------------------

    def tally(self) -> Tally:
        wanted = set(self.ledger.asked)
        failed = failed_at_home(self.admin, (SENDER, REVOKED), wanted)
        return reconcile(
            self.ledger.asked,
            self.ledger.refusals(),
            read_deliveries(self.stack.recipient_log),
            failed,
            path=f"/inbox/{RECEIVER}",
            receipted=self.ledger.receipted(),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- output -----------------------------------------------------------------------------


def summary(report: Report) -> str:
    """The human table."""
    t, rev, crash = report.tally, report.revocation, report.crash
    reasons = ", ".join(f"{n} x {r}" for r, n in sorted(t.refusal_reasons.items()))
    rows = [
        ("sent", str(t.sent), "message ids the Sender was asked to send"),
        ("delivered", str(t.delivered), f"processed once each at {RECEIVER}'s endpoint"),
        ("refused", str(t.refused), reasons or "by the Sender's result, with reason"),
        ("reported failed", str(t.reported_failed), "in home's failure list"),
        ("unaccounted", str(t.unaccounted), ", ".join(t.unaccounted_ids[:3])),
        (
            "duplicates suppressed",
            str(t.duplicates_suppressed),
            "extra copies the recipient did not process again",
        ),
        ("processed twice", str(t.processed_twice), "must be 0"),
        ("signed", str(t.signed), "of the delivered: signed by their sender"),
        ("signature verified", str(t.signature_verified), "by the recipient (CA, CRL, content)"),
        ("receipts verified", str(t.receipts_verified), "by the Sender (recipient's signature)"),
        (
            "altered by a relay",
            "refused" if report.tampering.refused else "NOT refused",
            f"{report.tampering.status} {report.tampering.code} at {RECEIVER}'s endpoint",
        ),
        (
            "revocation latency",
            _latency(rev),
            f"{REVOKED}: from the revoke call to her first refused message",
        ),
        ("relay kill/restart", crash.relay if crash.killed else "not done", _crash(crash)),
        (
            "deliveries by relay",
            str(sum(t.by_relay.values())),
            ", ".join(f"{name}: {n}" for name, n in t.by_relay.items()),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"  {name:<{width}}  {value:>10}  {note}".rstrip() for name, value, note in rows]
    verdict = "every message accounted for" if report.ok else "FAILED: see above"
    return "\n".join(
        [
            "",
            *lines,
            "",
            f"  {verdict} ({report.seconds:.1f} s); logs: {report.state_dir / 'logs'}",
            "",
        ]
    )


def _latency(rev: Revocation) -> str:
    return "never" if rev.latency_ms is None else f"{rev.latency_ms:.0f} ms"


def _crash(crash: RelayCrash) -> str:
    if crash.error:
        return crash.error
    if not crash.killed:
        return ""
    back = (
        "not ready again"
        if crash.back_after_s is None
        else f"ready again {crash.back_after_s:.1f} s later"
    )
    return f"SIGKILLed after {crash.after_message} messages, {back}"
