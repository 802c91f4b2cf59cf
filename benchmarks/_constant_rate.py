"""A constant-rate load generator (wrk2's idea): request i is due at start + i / rate, and
its latency counts from when it was due, not from when it was sent, so a slow answer
cannot hide the requests it delayed (coordinated omission). Plain HTTP to the adapter,
one kept-alive http.client connection per thread. Debian has no wrk2.

Proof that it keeps pace: it drives B (nginx) at the same rate in the same run, and
prints the rate it achieved against each path and B's latency (its own floor)."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse

from _common import note, rank

THREADS = 32  # enough in flight for the rate x latency these runs see


def constant_rate(
    url: str, body: bytes, rate: float, seconds: float
) -> tuple[float, list[float], int]:
    """(achieved rate, latencies from due time in s, non-200 answers)."""
    parts = urllib.parse.urlsplit(url)
    total = max(1, int(rate * seconds))
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    next_index = iter(range(total))
    start = time.perf_counter() + 0.05
    headers = {"Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                done = time.perf_counter()
                with lock:
                    latencies.append(done - due)
                    failures[0] += response.status != 200
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - start), sorted(latencies), failures[0]


def at_half_rate(
    relay_url: str, b_url: str, body: bytes, rate: float, seconds: float
) -> dict[str, float]:
    """p50/p99 of the relay path and of B at ``rate`` requests/s."""
    found: dict[str, float] = {"half_rate_target": round(rate)}
    for name, url in (("B", b_url), ("relay", relay_url)):
        achieved, lat, failed = constant_rate(url, body, rate, seconds)
        p50, p99 = rank(lat, 0.50) * 1000, rank(lat, 0.99) * 1000
        note(
            f"{name} at half the relay's max",
            f"target {rate:.0f}/s achieved {achieved:.0f}/s"
            f"  p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
            f"({failed} not 200)",
        )
        found |= {
            f"half_rate_{name}_achieved": round(achieved),
            f"half_rate_{name}_p50_ms": round(p50, 2),
            f"half_rate_{name}_p99_ms": round(p99, 2),
            f"half_rate_{name}_errors": failed,
        }
        if name == "relay":
            found["_relay_messages"] = len(lat)
    return found
