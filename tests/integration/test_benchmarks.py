"""Each benchmark runs in ``--quick`` mode and prints its figure lines (no timing checks:
the figures belong to the benchmarks, and these machines are shared and noisy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmr_appliance import serving

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NEEDS_NGINX = pytest.mark.skipif(not Path(serving.NGINX).exists(), reason="needs Debian's nginx")

# script -> labels of the figure lines it must print
FIGURES = {
    "delivery.py": ["urllib3 pool (Deliverer._post)", "requests.Session.post (baseline)",
                    "requests - urllib3", "Deliverer.deliver, 10 recipients"],
    "verify.py": ["cold (tokens.verify_*, baseline)", "trust.py, cached (hot path)",
                  "cold - cached"],
    "relay_throughput.py": ["direct to recipient (baseline)", "router -> relay -> recipient",
                            "router + relay add", "relay-1 total"],
    "revocation.py": ["suspend: every relay's sync.json", "suspend: every message refused",
                      "reinstate: every message delivered", "no-op admin call (baseline)"],
}


@pytest.mark.parametrize("script", [
    "delivery.py", "verify.py",
    pytest.param("relay_throughput.py", marks=NEEDS_NGINX),
    pytest.param("revocation.py", marks=NEEDS_NGINX),
])
def test_benchmark_runs_quick_and_prints_its_figures(script):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for label in FIGURES[script]:
        figure = [line for line in lines if line.strip().startswith(label)]
        assert figure and any(ch.isdigit() for ch in figure[0]), (label, done.stdout)
