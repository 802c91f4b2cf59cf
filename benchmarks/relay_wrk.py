"""Relay throughput with wrk: the relay path against nginx pass-through (B) and a no-op app (C).

wrk speaks plain HTTP on loopback to a local nginx (the adapter) that presents the
participant's client certificate and bearer token and keeps TLS connections alive:

  B      adapter -> nginx -> nginx -> recipient              (three TLS hops, like the relay's)
  C      adapter -> router -> gate -> gunicorn: a no-op Falcon app, the relay's gunicorn argv
  relay  adapter -> router -> relay gates -> relays -> recipient
  signed the relay path with the same message signed by its sender (issue 26): the relay
         only keeps the ``signature`` member and passes it on (~1 KiB more per message)

The recipient is nginx answering 200 over TLS with client certificates. Rounds of B, C,
relay and signed alternate in one run, so that a shared machine's noise falls on all.
CPU per message is the user + system time of the apps' gunicorn process groups over the
rounds, divided by the messages they carried. Then: latency at half of the relay's
measured maximum rate (constant rate, see _constant_rate.py), fan-out latency to 1, 10
and 50 recipients, and relay RSS per process at start, after 10k and after 100k messages.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    Credentials,
    enroll,
    header,
    note,
    parser,
    require_nginx,
    running_stack,
    scratch,
)
from _paths import Ports, bench_nginx, noop_service
from _wrk import WRK, WrkRun, closed_within, group_cpu, wrk, wrk_script
from cryptography.hazmat.primitives import serialization

from dmr_appliance import envelope, pki
from dmr_appliance.local.stack import HOST, Stack
from dmr_appliance.proof import signature

PAYLOAD = {"text": "x" * 900, "n": 42}  # ~1.2 KiB envelope with one card
PATHS = ("B", "C", "relay", "signed")
RELAY_PATHS = ("relay", "signed")  # through the relays: their CPU, their RSS


def message(cards: Sequence[str]) -> bytes:
    doc = envelope.build_envelope(
        room="bench", sender="alice", cards=cards, payload=PAYLOAD, ttl=3600
    )
    return json.dumps(doc).encode()


def signed_message(creds: Credentials, recipient: str) -> bytes:
    """``message`` to ``recipient`` (its card first in ``creds``), signed by the sender as
    the Sender signs (``proof.signature.sign``)."""
    doc = envelope.sender_envelope(
        room="bench", sender="alice", to=[recipient], payload=PAYLOAD, ttl=3600
    )
    key = serialization.load_pem_private_key(creds.key.read_bytes(), None)
    cert = pki.load_certificate(creds.cert.read_bytes())
    doc["signature"] = signature.sign(doc, key, cert)  # type: ignore[arg-type]
    return json.dumps(envelope.with_cards(doc, creds.cards[:1])).encode()


def rounds(
    urls: dict[str, str],
    scripts: dict[str, Path],
    *,
    count: int,
    seconds: float,
    connections: int,
    cpu_groups: dict[str, list[int]],
    gate_ports: list[int],
) -> dict[str, dict]:
    runs: dict[str, list[WrkRun]] = {p: [] for p in PATHS}
    cpu = dict.fromkeys(PATHS, 0.0)
    closed: dict[str, list[int]] = {p: [] for p in RELAY_PATHS}
    for _ in range(count):
        for path in PATHS:
            before, started = group_cpu(cpu_groups.get(path, [])), time.monotonic()
            runs[path].append(
                wrk(urls[path], scripts[path], seconds=seconds, connections=connections)
            )
            cpu[path] += group_cpu(cpu_groups.get(path, [])) - before
            if path in closed:  # router <-> relay gates, closed during this round
                closed[path].append(closed_within(gate_ports, time.monotonic() - started))
    found = {p: summary(runs[p], cpu[p]) for p in PATHS}
    for path, counts in closed.items():
        found[path]["closed_per_round"] = max(counts)
    return found


def summary(runs: list[WrkRun], cpu: float) -> dict:
    n = sum(r.requests for r in runs)
    return {
        "rps": round(n / sum(r.seconds for r in runs)),
        "requests": n,
        "errors": sum(r.errors for r in runs),
        # per round, wrk's percentiles; the median round's is printed
        "p50_ms": _ms(statistics.median(r.p50 for r in runs)),
        "p99_ms": _ms(statistics.median(r.p99 for r in runs)),
        "p999_ms": _ms(statistics.median(r.p999 for r in runs)),
        "cpu_us": round(cpu / n * 1e6) if n else None,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def print_rounds(figures: dict[str, dict], slots: int) -> None:
    print(
        f"{'path':6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7}"
        f" {'CPU µs/req':>11}"
    )
    for path in PATHS:
        f = figures[path]
        cpu = "-" if path == "B" else f"{f['cpu_us']}"
        print(
            f"{path:6} {f['rps']:8} {f['p50_ms']:8} {f['p99_ms']:8} {f['p999_ms']:9}"
            f" {f['errors']:7} {cpu:>11}"
        )
    relay, b, c, signed = figures["relay"], figures["B"], figures["C"], figures["signed"]
    note("relay/B", f"{relay['rps'] / b['rps']:.3f}")
    note("relay/C", f"{relay['rps'] / c['rps']:.3f}")
    note(
        "relay CPU µs/message",
        f"{relay['cpu_us']} (C's CPU µs/request {c['cpu_us']}, "
        f"ratio {relay['cpu_us'] / c['cpu_us']:.2f})",
    )
    note(
        "router-gate connections closed",
        f"{relay['closed_per_round']} in the worst relay round, "
        f"{signed['closed_per_round']} in the worst signed one "
        f"(keep-alive slots: {slots})",
    )
    note(
        "signed/relay",
        f"{signed['rps'] / relay['rps']:.3f} req/s, CPU µs/message {signed['cpu_us']} vs "
        f"{relay['cpu_us']} ({signed['cpu_us'] / relay['cpu_us']:.2f}x)",
    )


def fanout(url: str, tmp: Path, cards: Sequence[str], seconds: float) -> dict[str, float]:
    """p50 and p99 of one message at a time (one connection) to 1, 10 and 50 recipients."""
    found: dict[str, float] = {}
    for n in (1, 10, 50):
        if n > len(cards):
            break
        script = wrk_script(tmp / f"fanout-{n}.lua", message(cards[:n]))
        run = wrk(url, script, seconds=seconds, connections=1, threads=1)
        found[f"fanout_{n}_p50_ms"], found[f"fanout_{n}_p99_ms"] = _ms(run.p50), _ms(run.p99)
        note(
            f"fan-out to {n} recipients",
            f"p50 {_ms(run.p50)} ms  p99 {_ms(run.p99)} ms "
            f"({run.requests} messages, {run.errors} errors)",
        )
    return found


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, help="per round and path (default 8, quick 1)")
    cli.add_argument(
        "--rounds", type=int, help="rounds of B, C, relay, signed (default 3, quick 1)"
    )
    cli.add_argument("--connections", type=int, default=32)
    cli.add_argument(
        "--relay-workers",
        type=int,
        metavar="N",
        help="gunicorn workers per relay (default: the local stack's, 1)",
    )
    cli.add_argument(
        "--relay-threads",
        type=int,
        metavar="N",
        help="gunicorn threads per relay worker (default: the local stack's, 16)",
    )
    cli.add_argument(
        "--rss-messages",
        type=int,
        nargs=2,
        metavar=("FIRST", "SECOND"),
        help="RSS after this many messages (default 10000 100000, quick 500 1000)",
    )
    args = cli.parse_args()
    require_nginx()
    if not Path(WRK).exists():
        sys.exit(f"this benchmark needs wrk at {WRK}: apt-get install -y wrk")
    seconds = args.seconds or (1.0 if args.quick else 8.0)
    count = args.rounds or (1 if args.quick else 3)
    rss_at = args.rss_messages or ((500, 1000) if args.quick else (10_000, 100_000))
    header(
        "relay throughput with wrk: B (nginx) / C (no-op app) / relay / signed, alternating",
        seconds=seconds,
        rounds=count,
        connections=args.connections,
        relay_workers=args.relay_workers or 1,
        relay_threads=args.relay_threads or 16,
        memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    )
    with (
        scratch("wrk") as tmp,
        running_stack(
            tmp / "stack", 2, workers=args.relay_workers, threads=args.relay_threads
        ) as stack,
    ):
        run(stack, tmp, args, seconds, count, rss_at)


def run(stack: Stack, tmp: Path, args, seconds: float, count: int, rss_at: tuple[int, int]) -> None:
    from _constant_rate import at_half_rate
    from _memory import RssWatch

    ports = Ports()
    # bob-1 .. bob-50, every one at the nginx recipient
    creds = enroll(
        stack,
        "bench",
        to=[f"bob-{i}" for i in range(1, 51)],
        endpoint=f"https://{HOST}:{ports.recipient}/",
    )
    token, cards = creds.token, creds.cards
    relays = [stack.services[n].pid or 0 for n in stack.relay_names]
    workers = stack.relay_config(stack.relay_names[0]).workers * len(relays)
    threads = stack.relay_config(stack.relay_names[0]).threads
    with (
        noop_service(stack, tmp / "noop", workers, threads) as (c_router, c_group),
        bench_nginx(stack, tmp, ports, c_router, token),
    ):
        urls = {
            "relay": f"http://{HOST}:{ports.relay}/v1/messages",
            "C": f"http://{HOST}:{ports.noop}/v1/messages",
            "B": f"http://{HOST}:{ports.passthrough}/v1/messages",
        }
        urls["signed"] = urls["relay"]
        script = wrk_script(tmp / "one.lua", message(cards[:1]))
        scripts = dict.fromkeys(PATHS, script)
        scripts["signed"] = wrk_script(tmp / "signed.lua", signed_message(creds, "bob-1"))
        memory = RssWatch(relays)
        for path in PATHS:  # warm: connections, caches, first imports
            run = wrk(urls[path], scripts[path], seconds=1, connections=args.connections)
            memory.count(run, "relay" if path in RELAY_PATHS else path)
        figures = rounds(
            urls,
            scripts,
            count=count,
            seconds=seconds,
            connections=args.connections,
            cpu_groups={"relay": relays, "signed": relays, "C": [c_group]},
            gate_ports=gate_ports(stack),
        )
        memory.add(sum(figures[p]["requests"] for p in RELAY_PATHS))
        slots = keepalive_slots(stack)
        print_rounds(figures, slots)
        figures["relay"]["keepalive_slots"] = slots
        extra = at_half_rate(
            urls["relay"],
            urls["B"],
            message(cards[:1]),
            figures["relay"]["rps"] / 2,
            seconds=max(seconds, 2.0),
        )
        memory.add(extra.pop("_relay_messages"))
        extra |= fanout(urls["relay"], tmp, cards, seconds)
        extra |= memory.until(
            rss_at,
            lambda: wrk(urls["relay"], script, seconds=seconds, connections=args.connections),
        )
    report(figures, extra)


# Issue 28's goals, as ratios from this one run: (figure, its goal, met when).
TARGETS = (
    ("relay/C req/s", "relay_over_C", ">= 0.45", lambda v, d: v >= 0.45),
    ("relay CPU / C CPU", "relay_cpu_over_C_cpu", "<= 2.5", lambda v, d: v <= 2.5),
    ("p99 ms at half max", "half_rate_relay_p99_ms", "<= 10", lambda v, d: v <= 10),
    (
        "fan-out 10/1 p50",
        "fanout_10_over_1",
        "<= 2",
        lambda v, d: v <= 2,
    ),
    ("RSS growth % 10k->100k", "rss_growth_pct", "< 5", lambda v, d: v < 5),
    (
        "closed router-gate conns",
        "relay_closed_per_round",
        "<= keep-alive slots",
        lambda v, d: v <= d["relay_keepalive_slots"],
    ),
)


def print_targets(doc: dict) -> None:
    print("targets (issue 28):")
    for name, key, goal, met in TARGETS:
        value = doc.get(key)
        verdict = "-" if value is None else ("met" if met(value, doc) else "MISSED")
        print(f"  {name:28} {value!s:>8}  goal {goal:20} {verdict}")


def gate_ports(stack: Stack) -> list[int]:
    return [int(stack.relay_config(n).bind.rpartition(":")[2]) for n in stack.relay_names]


def keepalive_slots(stack: Stack) -> int:
    """Idle connections the router may keep to the relays: per worker, per relay."""
    router = stack.router_config()
    workers = router.worker_processes
    per_worker = int(os.cpu_count() or 1) if workers == "auto" else int(workers)
    return router.upstream.keepalive * len(set(router.relays)) * per_worker


def report(figures: dict[str, dict], extra: dict) -> None:
    relay, b, c, signed = figures["relay"], figures["B"], figures["C"], figures["signed"]
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load": [round(x, 2) for x in os.getloadavg()],
        **{f"{p}_{k}": v for p in PATHS for k, v in figures[p].items()},
        "relay_over_B": round(relay["rps"] / b["rps"], 3),
        "relay_over_C": round(relay["rps"] / c["rps"], 3),
        "relay_cpu_over_C_cpu": round(relay["cpu_us"] / c["cpu_us"], 2),
        "signed_over_relay": round(signed["rps"] / relay["rps"], 3),
        "signed_cpu_over_relay_cpu": round(signed["cpu_us"] / relay["cpu_us"], 2),
        **extra,
    }
    if extra.get("fanout_1_p50_ms") and extra.get("fanout_10_p50_ms"):
        doc["fanout_10_over_1"] = round(extra["fanout_10_p50_ms"] / extra["fanout_1_p50_ms"], 2)
    errors = sum(figures[p]["errors"] for p in PATHS)
    print_targets(doc)
    print(json.dumps(doc, separators=(",", ":")))
    if errors:
        sys.exit(f"{errors} requests failed (see errors above); the figures are not valid")


if __name__ == "__main__":
    main()
