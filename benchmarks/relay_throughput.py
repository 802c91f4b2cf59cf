"""Throughput: messages through the real stack vs the same client posting to the recipient.

The local stack (``dmr_appliance.local.stack``: home, 2 relays under gunicorn, Debian's nginx
as router, the demo recipient; all TLS with client certificates, on loopback) with the
router's rate limits lifted. ``--threads`` client threads share ``--messages`` messages,
each thread over its own kept-alive connection, in alternating rounds of:

  direct to recipient (baseline)  the delivery body POSTed straight to the recipient
  router -> relay -> recipient    the envelope POSTed to the router's /v1/messages

The difference is what the router and a relay add (TLS hop, token and card checks,
envelope validation, delivery). The client runs on the same cores as the stack, so both
columns carry its cost. RSS (VmRSS) of each relay's processes (gunicorn master, sync
agent, worker) is read before and after the rounds, to show memory stays bounded.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from _common import (
    Credentials,
    Stats,
    client_pool,
    enroll,
    figure,
    group_rss,
    header,
    ms,
    note,
    parser,
    require_nginx,
    running_stack,
    scratch,
)

from dmr_appliance import envelope
from dmr_appliance.local.stack import Stack

Request = tuple[bytes, dict[str, str]]  # body, headers


@dataclass
class Run:
    seconds: float
    latencies: list[float]
    failures: list[int]  # statuses other than 200

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def drive(pool: urllib3.PoolManager, url: str, requests: list[Request], threads: int) -> Run:
    """POST every request with ``threads`` threads, each taking the next until none is left."""
    latencies: list[float] = []
    failures: list[int] = []
    pending = iter(requests)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                request = next(pending, None)
            if request is None:
                return
            body, headers = request
            started = time.perf_counter()
            status = pool.request("POST", url, body=body, headers=headers, retries=False,
                                  timeout=30).status
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    failures.append(status)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return Run(time.perf_counter() - started, latencies, failures)


def variants(stack: Stack, creds: Credentials) -> dict[str, tuple[str, Callable[[], Request]]]:
    """Each variant: the URL it posts to, and how it makes a fresh message (body, headers)."""
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {creds.token}"}

    def envelope_doc() -> bytes:
        doc = envelope.build_envelope(room=creds.room, sender="alice", cards=[creds.card],
                                      payload={"text": "hello", "n": 42})
        return json.dumps(doc).encode()

    def to_router() -> Request:
        return envelope_doc(), auth

    def to_recipient() -> Request:
        message = envelope.parse_envelope(envelope_doc())
        # What a relay sends (relay/delivery.py): the body without cards, X-DMR-* headers.
        headers = {"Content-Type": "application/json", "X-DMR-Message-Id": message.id,
                   "X-DMR-Room": message.room, "X-DMR-From": message.sender,
                   "X-Request-Id": "bench"}
        return envelope.delivery_body(message, ["bob"]), headers

    return {"direct to recipient (baseline)": (stack.endpoint("bob"), to_recipient),
            "router -> relay -> recipient": (stack.messages_url, to_router)}


def relay_memory(stack: Stack) -> dict[str, dict[int, int]]:
    return {name: group_rss(stack.services[name].pid or 0) for name in stack.relay_names}


def print_memory(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> None:
    print("relay RSS (VmRSS of each process: gunicorn master, sync agent, worker):")
    for name in before:
        was, now = before[name], after[name]
        detail = ", ".join(f"{pid}: {was.get(pid, 0) / 1024:.1f} -> {kib / 1024:.1f}"
                           for pid, kib in sorted(now.items()))
        total_was, total_now = sum(was.values()) / 1024, sum(now.values()) / 1024
        note(f"{name} total", f"before {total_was:6.1f} MiB  after {total_now:6.1f} MiB  "
                              f"({total_now - total_was:+.1f} MiB); per pid: {detail}")


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--messages", type=int, help="per variant and round (default 1000, "
                     "quick 150)")
    cli.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    cli.add_argument("--relays", type=int, default=2)
    args = cli.parse_args()
    require_nginx()
    count = args.messages or (150 if args.quick else 1000)
    rounds = 1 if args.quick else 2
    header("relay throughput: through the stack vs straight to the recipient",
           messages=count, rounds=rounds, threads=args.threads, relays=args.relays)
    with scratch("throughput") as tmp, running_stack(tmp / "stack", args.relays) as stack:
        creds = enroll(stack, "bench")
        pool = client_pool(stack.ca, creds.cert, creds.key, args.threads)
        targets = variants(stack, creds)
        for url, make in targets.values():  # warm: connections, caches, first imports
            drive(pool, url, [make() for _ in range(4 * args.threads)], args.threads)
        before = relay_memory(stack)
        runs: dict[str, list[Run]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (url, make) in targets.items():
                runs[name].append(drive(pool, url, [make() for _ in range(count)],
                                        args.threads))
        after = relay_memory(stack)
    report(runs, args.threads)
    print_memory(before, after)
    failed = sum(len(r.failures) for rs in runs.values() for r in rs)
    if failed:
        sys.exit(f"{failed} messages were not answered 200; the figures above are not valid")


def report(runs: dict[str, list[Run]], threads: int) -> None:
    print(f"{threads} client threads, one recipient, latency per message and throughput:")
    stats: dict[str, Stats] = {}
    rates: dict[str, float] = {}
    for name, rs in runs.items():
        stats[name] = Stats.of([x for r in rs for x in r.latencies])
        rates[name] = sum(len(r.latencies) for r in rs) / sum(r.seconds for r in rs)
        figure(name, stats[name], unit=ms, extra=f"{rates[name]:7.0f} messages/s")
    base, stack = stats["direct to recipient (baseline)"], stats["router -> relay -> recipient"]
    base_rate, stack_rate = rates["direct to recipient (baseline)"], rates[
        "router -> relay -> recipient"]
    note("router + relay add", f"median {ms(stack.median - base.median)}  p99 "
                               f"{ms(stack.p99 - base.p99)}; throughput "
                               f"{stack_rate / base_rate:.0%} of the direct one")


if __name__ == "__main__":
    main()
