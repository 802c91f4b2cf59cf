"""Each benchmark runs in ``--quick`` mode and prints its figure lines (no timing checks:
the figures belong to the benchmarks, and these machines are shared and noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NEEDS_WRK = pytest.mark.skipif(not Path("/usr/bin/wrk").exists(), reason="needs Debian's wrk")

# script -> labels of the figure lines it must print
FIGURES = {
    "delivery.py": [
        "reader: http1.Answer",
        "reader: http.client.HTTPResponse",
        "relay pool, http1 (Deliverer._post)",
        "http.client pool (Deliverer._post) former",
        "urllib3 PoolManager (former)",
        "requests.Session.post (baseline)",
        "http.client - http1",
        "requests - http1",
        "Deliverer.deliver, 10 recipients",
        "former threads, 10 recipients",
        "Deliverer.deliver, 50 recipients",
    ],
    "verify.py": [
        "cold (tokens.verify_*, baseline)",
        "sync_state.py, cached (hot path)",
        "cold - cached",
    ],
    "relay_wrk.py": [
        "relay/B",
        "relay/C",
        "relay CPU µs/message",
        "signed/relay",
        "B at half the relay's max",
        "relay at half the relay's max",
        "fan-out to 1 recipients",
        "fan-out to 10 recipients",
        "fan-out to 50 recipients",
        "relay worker RSS after",
        "relay RSS growth",
        "router-gate connections closed",
        "relay/C req/s",  # the targets' lines (issue 28), each with its figure
        "relay CPU / C CPU",
        "p99 ms at half max",
        "fan-out 10/1 p50",
        "closed router-gate conns",
    ],
    "signatures.py": [
        "1 KiB: relay: parse_envelope (baseline)",
        "1 KiB: sign (proof.signature.sign)",
        "1 KiB: verify_delivery (recipient)",
        "1 KiB: receipt: issue (ReceiptSigner)",
        "1 KiB: receipt: verify (proof.receipt)",
        "1 KiB: x5c check share of verify",
        "64 KiB: sign (proof.signature.sign)",
        "64 KiB: verify_delivery (recipient)",
    ],
    "participant_revocation.py": [
        "suspend: every relay's sync.json",
        "suspend: every message refused",
        "reinstate: every message delivered",
        "no-op admin call (baseline)",
    ],
}
RELAY_WRK_KEYS = [
    f"{path}_{figure}"
    for path in ("B", "C", "relay", "signed")
    for figure in ("rps", "errors", "p50_ms", "p99_ms", "p999_ms")
] + [
    "relay_cpu_us",
    "C_cpu_us",
    "relay_over_B",
    "relay_over_C",
    "relay_cpu_over_C_cpu",
    "signed_cpu_us",
    "signed_over_relay",
    "signed_cpu_over_relay_cpu",
    "relay_closed_per_round",
    "relay_keepalive_slots",
    "fanout_10_over_1",
    "half_rate_relay_p50_ms",
    "half_rate_relay_p99_ms",
    "half_rate_B_achieved",
    "fanout_1_p50_ms",
    "fanout_10_p50_ms",
    "fanout_50_p50_ms",
    "rss_start_mib",
    "rss_growth_pct",
]


@pytest.mark.parametrize(
    "script",
    [
        "delivery.py",
        "verify.py",
        "signatures.py",
        pytest.param("participant_revocation.py", marks=pytest.mark.needs_nginx),
        pytest.param("relay_wrk.py", marks=[pytest.mark.needs_nginx, NEEDS_WRK, pytest.mark.once]),
    ],
)
def test_benchmark_runs_quick_and_prints_its_figures(script):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for label in FIGURES[script]:
        figure = [line for line in lines if line.strip().startswith(label)]
        assert figure and any(ch.isdigit() for ch in figure[0]), (label, done.stdout)
    if script == "relay_wrk.py":  # the last line: one JSON object with every figure
        doc = json.loads(lines[-1])
        for key in RELAY_WRK_KEYS:
            assert isinstance(doc.get(key), int | float), (key, lines[-1])
