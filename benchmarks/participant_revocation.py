"""Participant revocation: how long a participant's suspension (and reinstatement) takes to
reach relays (not certificate revocation, the CRL's: tests/integration/test_trust_boundary).

The local stack (home, 2 relays, nginx router, recipient; real TLS on loopback). ``--repeat``
times: the admin suspends the sender through the router's home API, then, every ``--poll``
seconds, the sender posts a message and the relays' ``sync.json`` files are read. Timed
from just before the admin call:

  sync.json                  when the first / every relay's sync agent wrote the new version
  first message refused      the first 403 ``sender-suspended`` answer through the router
  every message refused      from when on every answer was (two per relay in a row)

and the same for reinstating (first message delivered again). Baseline: the round trip of
a no-op admin call (``GET participants/<id>``) through the same router, in the same run.
The figures include one poll period of resolution.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from _common import (
    Credentials,
    Stats,
    client_pool,
    enroll,
    header,
    parser,
    require_nginx,
    running_stack,
    scratch,
    spread,
    timed,
)

from dmr_appliance import envelope
from dmr_appliance.errors import PROBLEM_BASE
from dmr_appliance.local.stack import Stack

DEADLINE = 10.0  # seconds a change may take before the run is called failed
SENDER = "alice"


@dataclass(frozen=True)
class Propagation:
    """Seconds from the start of the admin call; None: not within ``DEADLINE``."""

    admin_call: float  # the suspend/reinstate call itself
    first: float | None  # the first message answered the new way
    every: float | None  # from then on, every message (2 per relay in a row) answered so
    synced: dict[str, float]  # per relay: its sync.json holds a new version


class Probe:
    """Posts the sender's messages through the router and reads the relays' sync.json."""

    def __init__(self, stack: Stack, creds: Credentials) -> None:
        self.stack = stack
        self.creds = creds
        self.pool: urllib3.PoolManager = client_pool(stack.ca, creds.cert, creds.key, 1)
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {creds.token}",
        }

    def send(self) -> str:
        """``delivered``, or the problem code of the refusal."""
        doc = envelope.build_envelope(
            room=self.creds.room, sender=SENDER, cards=[self.creds.card], payload={"probe": True}
        )
        response = self.pool.request(
            "POST",
            self.stack.messages_url,
            body=json.dumps(doc),
            headers=self.headers,
            retries=False,
            timeout=10,
        )
        if response.status == 200:
            return "delivered"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(response.data)["type"]).removeprefix(PROBLEM_BASE)
        return f"http-{response.status}"

    def versions(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for name in self.stack.relay_names:
            try:
                path = self.stack.state_dir / name / "sync.json"
                found[name] = int(json.loads(path.read_bytes())["version"])
            except (OSError, ValueError, KeyError):
                found[name] = None  # mid-rename, or not written yet
        return found


def propagate(probe: Probe, change: Callable[[], object], expect: str, poll: float) -> Propagation:
    """Make ``change``; poll until every relay's sync.json moved on and messages have been
    answered ``expect`` twice per relay in a row (or ``DEADLINE`` passed)."""
    old = probe.versions()
    settled = 2 * len(old)
    started = time.perf_counter()
    change()
    admin_call = time.perf_counter() - started
    answers: list[tuple[float, bool]] = []  # (seconds, answered as expected)
    synced: dict[str, float] = {}
    while (
        len(synced) < len(old) or not _settled(answers, settled)
    ) and time.perf_counter() - started < DEADLINE:
        tick = time.perf_counter()
        for name, version in probe.versions().items():
            if name not in synced and version is not None and version != old[name]:
                synced[name] = tick - started
        outcome = probe.send()
        answers.append((time.perf_counter() - started, outcome == expect))
        time.sleep(max(0.0, tick + poll - time.perf_counter()))
    first = next((t for t, ok in answers if ok), None)
    every = _streak_start(answers) if _settled(answers, settled) else None
    return Propagation(admin_call, first, every, synced)


def _settled(answers: list[tuple[float, bool]], streak: int) -> bool:
    return len(answers) >= streak and all(ok for _, ok in answers[-streak:])


def _streak_start(answers: list[tuple[float, bool]]) -> float:
    """When the final run of expected answers began."""
    start = answers[-1][0]
    for seconds, ok in reversed(answers):
        if not ok:
            break
        start = seconds
    return start


def report(results: dict[str, list[Propagation]], noop: list[float], relays: int) -> int:
    """Print the figure lines; return how many changes did not arrive in time."""
    missing = 0
    for action, verb in (("suspend", "refused"), ("reinstate", "delivered")):
        runs = results[action]
        whole = [r for r in runs if r.every is not None and len(r.synced) == relays]
        missing += len(runs) - len(whole)
        lines = {
            "the admin call itself": [r.admin_call for r in runs],
            "first relay's sync.json": [min(r.synced.values()) for r in whole],
            "every relay's sync.json": [max(r.synced.values()) for r in whole],
            f"first message {verb}": [r.first for r in whole if r.first is not None],
            f"every message {verb}": [r.every for r in whole if r.every is not None],
        }
        for label, samples in lines.items():
            if samples:
                spread(f"{action}: {label}", Stats.of(samples))
    spread("no-op admin call (baseline)", Stats.of(noop))
    return missing


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeat", type=int, help="suspend + reinstate cycles (default 10, quick 2)")
    cli.add_argument("--poll", type=float, default=0.01, help="seconds between two probes")
    cli.add_argument("--relays", type=int, default=2)
    args = cli.parse_args()
    require_nginx()
    repeat = args.repeat or (2 if args.quick else 10)
    header(
        "participant revocation: suspend/reinstate until relays act on it",
        repeat=repeat,
        poll_ms=round(args.poll * 1000),
        relays=args.relays,
    )
    with scratch("participants") as tmp, running_stack(tmp / "stack", args.relays) as stack:
        creds = enroll(stack, "bench")
        admin = stack.admin_client()
        probe = Probe(stack, creds)
        if probe.send() != "delivered":
            sys.exit("the sender's first message was not delivered; nothing to measure")
        results: dict[str, list[Propagation]] = {"suspend": [], "reinstate": []}
        noop: list[float] = []
        for _ in range(repeat):
            for action, expect in (("suspend", "sender-suspended"), ("reinstate", "delivered")):
                noop += timed(lambda: admin.get_participant(SENDER), 3)
                results[action].append(
                    propagate(
                        probe,
                        lambda a=action: admin.set_participant_status(SENDER, a),
                        expect,
                        args.poll,
                    )
                )
    print(f"seconds from the admin call's start ({repeat} of each):")
    missing = report(results, noop, args.relays)
    if missing:
        sys.exit(f"{missing} changes did not reach the relays within {DEADLINE:.0f} s")


if __name__ == "__main__":
    main()
