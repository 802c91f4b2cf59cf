"""Faults under load: nothing is lost, nothing is processed twice (ADR-003, ADR-009).

Real processes on loopback: the local stack (home, two relays, nginx, the demo
recipient) plus a second nginx rendered from the same template, and recipients in this
process for the refusing and the dead endpoint. Several senders in threads keep sending
while a relay is SIGKILLed and restarted, the recipient is stopped for longer than the
retries last, home is stopped (senders go on with cached tokens and cards; failure
reports wait in their spools) and both routers are reloaded. At the end every
(message, recipient) pair is delivered (the recipient's record), refused (with its
reason) or reported failed at home, and no message was processed twice. Two smaller
scenes: a delivery cut by a relay crash is sent again and processed once; a recipient
that stays down shows up once per message at home, on its status page and in
``on_failure``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dmr_appliance.client.result import SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.local.stack import Stack
from dmr_appliance.wire.outcome import REJECTED
from dmr_appliance.wire.retry import RetryPolicy
from tests.support.processes import free_port
from tests.support.recipient import received
from tests.support.stack_kit import (
    ensure_participant,
    extra_router,
    failure_at_home,
    registered_recipient,
    sender,
)

ROOM = "ops"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=2, rooms={ROOM: ("alice", "bob")}),
]

POLICY = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.3)
PACE = 0.05  # seconds each sender thread rests between messages
OUTAGE = 3.0  # seconds a recipient or home stays down: far longer than one send's retries


@pytest.fixture(scope="module")
def routers(stack, tmp_path_factory) -> Iterator[list]:
    with extra_router(stack, tmp_path_factory.mktemp("router-2")) as second:
        yield [stack.router_url, second.url, second]


@pytest.fixture(scope="module")
def frank(stack, tmp_path_factory):
    """A recipient that refuses everything for good (404)."""
    with registered_recipient(
        stack, "frank", ROOM, tmp_path_factory.mktemp("frank") / "log.jsonl", status=404
    ) as server:
        yield server


@pytest.fixture(scope="module")
def gina(stack) -> str:
    """A recipient that stays down: nothing listens at her endpoint."""
    ensure_participant(stack, "gina", f"https://localhost:{free_port()}/inbox/gina", [ROOM])
    return "gina"


# -- a recipient that stays down ---------------------------------------------------------


def test_a_recipient_that_stays_down(stack, routers, gina, tmp_path):
    called: list[SendResult] = []
    with sender(
        stack, routers[:2], policy=POLICY, on_failure=called.append, spool=tmp_path / "spool.jsonl"
    ) as s:
        results = [s.send(ROOM, [gina], {"n": n}) for n in range(5)]
    ids = [r.message_id for r in results]
    assert all(r.failed == [gina] and r.reported for r in results)
    assert [r.message_id for r in called] == ids  # on_failure: once per message
    listed = [
        f["message_id"] for f in stack.admin_client().list_failures(room=ROOM, sender="alice")
    ]
    assert all(listed.count(mid) == 1 for mid in ids)
    for result in results:
        report = failure_at_home(stack, result.message_id)
        assert report["to"] == [gina]
        assert [a["target"] for a in report["attempts"]] == [routers[0]] * 3 + [routers[1]] * 3
    page = stack.session().get(stack.status_url, timeout=10)
    assert page.status_code == 200
    assert all(mid in page.text for mid in ids)


def test_a_delivery_cut_by_a_relay_crash_is_processed_once(stack, routers, tmp_path):
    """The relay dies while the recipient is still working on the message: the sender
    never hears the outcome and sends it again; the recipient acts on it once."""
    with registered_recipient(stack, "hal", ROOM, tmp_path / "hal.jsonl", delay=2.0) as hal:
        patient = RetryPolicy(attempts=8, base_delay=0.5, max_delay=1.0)
        outcome: list[SendResult] = []
        with sender(stack, routers[:2], policy=patient) as s:
            s.cards.get("hal")  # fetched before the crash, like any warm sender
            thread = threading.Thread(
                target=lambda: outcome.append(s.send(ROOM, ["hal"], {"cut": True}))
            )
            thread.start()
            assert hal.request_read.wait(10)  # the message is at hal, which takes 2 s
            hal.delay = 0.0
            # Whichever relay carries it dies mid-delivery, and every other one with it at
            # once: else nginx would pass the request on itself, and the sender see one try.
            for name in stack.relay_names:
                os.killpg(stack.services[name].pid, signal.SIGKILL)
            for name in stack.relay_names:
                stack.kill_relay(name)  # waits until its process group is gone
            for name in stack.relay_names:
                stack.start_relay(name)
            thread.join(30)
        (result,) = outcome
        copies = wait_for_copies(hal.log_path, result.message_id, 2)
    assert result.ok and len(result.attempts) > 1
    assert len(copies) == 2 and sorted(r["duplicate"] for r in copies) == [False, True]


def wait_for_copies(
    log_path: Path, message_id: str, count: int, timeout: float = 10.0
) -> list[dict]:
    """The recipient's records of ``message_id``, once ``count`` are there (or time is up):
    the cut delivery is recorded when its 2 s are over, maybe after the retry."""
    deadline = time.monotonic() + timeout
    while True:
        copies = [r for r in received(log_path) if r["id"] == message_id]
        if len(copies) >= count or time.monotonic() > deadline:
            return copies
        time.sleep(0.1)


# -- faults under load -------------------------------------------------------------------


@dataclass
class Load:
    """Sender threads sending until ``stop``; every result kept with the time it ended."""

    senders: list[Sender]
    recipients: Callable[[str, int], list[str]]
    results: list[tuple[float, SendResult]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index, s in enumerate(self.senders):
            thread = threading.Thread(target=self._run, args=(index, s), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, index: int, s: Sender) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                result = s.send(ROOM, self.recipients(s.participant, n), {"s": index, "n": n})
            except BaseException as exc:  # a send must never raise: keep it for the assert
                self.errors.append(exc)
                return
            self.results.append((time.time(), result))
            n += 1
            self.stop.wait(PACE)

    def finish(self, timeout: float = 30.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a sender did not finish"


def recipients_of(me: str, n: int) -> list[str]:
    """The other one of alice and bob (both at the stack's recipient); every 7th message
    also frank (refuses), every 11th also gina (down)."""
    main = "bob" if me == "alice" else "alice"
    return [main, *(["frank"] if n % 7 == 3 else []), *(["gina"] if n % 11 == 5 else [])]


class Phases:
    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, name: str) -> float:
        self.marks.append((name, time.time()))
        return self.marks[-1][1]


@pytest.mark.once
def test_nothing_is_lost_under_faults(stack, routers, frank, gina, tmp_path, capsys):
    r1, r2, second = routers
    on_failure: list[str] = []

    def make(name: str, order: list[str], index: int) -> Sender:
        return sender(
            stack,
            order,
            name=name,
            policy=POLICY,
            spool=tmp_path / f"spool-{index}",
            on_failure=lambda result: on_failure.append(result.message_id),
        )

    senders = [
        make("alice", [r1, r2], 0),
        make("alice", [r2, r1], 1),
        make("bob", [r1, r2], 2),
        make("bob", [r2, r1], 3),
    ]
    probe = make("alice", [r1, r2], 4)  # sends to gina while home is down: a spooled report
    warm = probe.send(ROOM, [gina], {"warm": "card cache"})
    assert warm.reported
    load = Load(senders, recipients_of)
    phase = Phases()
    phase("load")
    load.start()
    time.sleep(3)

    phase("kill relay-1")
    stack.kill_relay("relay-1")
    time.sleep(2)
    phase("restart relay-1")
    stack.start_relay("relay-1")
    time.sleep(2)

    phase("stop recipient")
    stack.stop_service("recipient")
    time.sleep(OUTAGE)
    phase("restart recipient")
    stack.start_service("recipient")
    time.sleep(2)

    home_down = phase("stop home")
    stack.services["home"].kill()  # SIGKILL: home's acknowledged writes survive it
    while_away = probe.send(ROOM, [gina], {"probe": "home down"})
    time.sleep(OUTAGE)
    home_up = phase("restart home")
    stack.start_service("home")
    time.sleep(2)

    phase("reload routers")
    stack.router.reload()
    second.reload()
    time.sleep(3)
    phase("stop load")
    load.finish()
    flushed = sum(s.flush_reports() for s in [*senders, probe])
    for s in [*senders, probe]:
        assert s.reporter.pending() == 0
        s.close()

    assert not load.errors, load.errors
    assert while_away.failed == [gina] and while_away.spooled and not while_away.reported
    assert failure_at_home(stack, while_away.message_id) is not None  # after the flush
    results = [r for _, r in load.results]
    # Home stopped: the senders went on, on their cached token and cards.
    assert any(r.ok for t, r in load.results if home_down + 0.5 < t < home_up)

    tally, problems = account(stack, frank, results)
    double = processed_twice(stack, frank)
    tally.update(
        flushed_reports=flushed,
        processed_twice=len(double),
        spooled=sum(r.spooled for r in results),
        duplicates_absorbed=sum(r["duplicate"] for r in received(stack.recipient_log)),
        on_failure_calls=len(on_failure),
        phases={name: round(t - phase.marks[0][1], 1) for name, t in phase.marks},
    )
    with capsys.disabled():
        print("\nfault tally:", json.dumps(tally, sort_keys=True))
    assert tally["messages"] > 100 and tally["delivered"] > 0
    assert tally["refused"] > 0 and tally["reported_failed"] > 0
    assert not problems, problems[:10]
    assert not double, double[:10]
    failed_ids = [r.message_id for r in [*results, warm, while_away] if r.failed]
    assert sorted(on_failure) == sorted(failed_ids)  # once per failed message, no more


def account(stack: Stack, frank, results: list[SendResult]) -> tuple[dict, list[str]]:
    """Each (message, recipient): delivered, refused or reported; else a problem."""
    done = processed(stack, frank)
    tally = Counter(
        messages=len(results), pairs=0, delivered=0, refused=0, reported_failed=0, unaccounted=0
    )
    problems: list[str] = []
    listed = stack.admin_client().list_failures(status="open", limit=1000)
    assert len(listed) < 1000, "more failures than one listing shows"
    reports = {f["message_id"]: f for f in listed}
    for result in results:
        for pid, got in result.recipients.items():
            tally["pairs"] += 1
            key = (result.message_id, pid)
            if got.outcome == REJECTED:
                tally["refused"] += 1
                if not got.reason:
                    problems.append(f"{key}: refused without a reason")
                continue
            if got.outcome == "delivered":
                tally["delivered"] += 1
                if key not in done:
                    problems.append(
                        f"{key}: the sender says delivered, the recipient has no record"
                    )
                continue
            report = reports.get(result.message_id)
            if report is not None and pid in report["to"]:
                tally["reported_failed"] += 1
            else:
                tally["unaccounted"] += 1
                problems.append(f"{key}: failed ({got.reason}) and not reported at home")
    return dict(tally), problems


def processed(stack: Stack, frank) -> set[tuple[str, str]]:
    """(message id, recipient) pairs a recipient acted on (2xx, not a duplicate)."""
    records = received(stack.recipient_log) + received(frank.log_path)
    return {
        (r["id"], r["path"].rsplit("/", 1)[-1])
        for r in records
        if 200 <= r["status"] < 300 and not r["duplicate"]
    }


def processed_twice(stack: Stack, frank) -> list[tuple[str, str]]:
    records = received(stack.recipient_log) + received(frank.log_path)
    counts = Counter(
        (r["id"], r["path"]) for r in records if 200 <= r["status"] < 300 and not r["duplicate"]
    )
    return [key for key, n in counts.items() if n > 1]
