"""What the benchmark scripts share: arguments, timing, figure lines, a PKI, processes.

Every figure a script prints is measured in that run, next to a baseline measured in
the same run (interleaved where that is cheap), because the machines are shared and
noisy: compare the two columns of one run, not figures of different runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3

from dmr_appliance import config, pki, serving
from dmr_appliance.local.stack import Stack

LOCAL_SANS = {"dns": ("localhost",), "ips": ("127.0.0.1",)}
HOST = "127.0.0.1"
LABEL = 40  # width of a figure line's label


# --- arguments and the header ---------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` (a few seconds, for smoke tests)."""
    first, _, rest = (doc or "").strip().partition("\n")
    p = argparse.ArgumentParser(
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    return p


def header(title: str, **settings: object) -> None:
    """What ran where: one line of context for figures from a shared, noisy machine."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# {title}")
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"urllib3 {urllib3.__version__}, {os.cpu_count()} CPUs, load {load}"
    )
    if settings:
        print("# " + ", ".join(f"{k}={v}" for k, v in settings.items()))


# --- timing and figures ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stats:
    """Percentiles of a sample, in seconds."""

    count: int
    median: float
    p90: float
    p99: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        if not seconds:
            raise ValueError("no samples")
        s = sorted(seconds)
        return cls(len(s), statistics.median(s), rank(s, 0.90), rank(s, 0.99), s[0], s[-1])


def rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Seconds taken by each of ``count`` calls."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def interleaved(
    variants: dict[str, Callable[[], object]], count: int, rounds: int, warmup: int = 20
) -> dict[str, list[float]]:
    """Per-call seconds of each variant, run in alternating rounds so that a noisy
    neighbour hurts every variant alike."""
    for call in variants.values():
        timed(call, warmup)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for name, call in variants.items():
            samples[name] += timed(call, per_round)
    return samples


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.1f} ms"


def note(label: str, text: str) -> None:
    """A derived line (a difference, a ratio) aligned with the figure lines."""
    print(f"  {label:<{LABEL}} {text}")


def figure(label: str, stats: Stats, unit: Callable[[float], str] = us, extra: str = "") -> None:
    """One figure line: ``label  median … p90 … p99 … [extra]``."""
    print(
        f"  {label:<{LABEL}} median {unit(stats.median)}  p90 {unit(stats.p90)}  "
        f"p99 {unit(stats.p99)}  (n={stats.count}){'  ' + extra if extra else ''}"
    )


def spread(label: str, stats: Stats, unit: Callable[[float], str] = ms, extra: str = "") -> None:
    """One figure line for few samples: ``label  min … median … max …``."""
    print(
        f"  {label:<{LABEL}} min {unit(stats.low)}  median {unit(stats.median)}  "
        f"max {unit(stats.high)}  (n={stats.count}){'  ' + extra if extra else ''}"
    )


# --- a deployment PKI and TLS -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca(self) -> Path:
        return pki.paths(self.dir).ca

    def pair(self, kind: str, name: str) -> tuple[Path, Path]:
        p = pki.paths(self.dir)
        return p.cert(kind, name), p.key(kind, name)


def make_pki(directory: Path) -> Pki:
    """A deployment CA with a recipient (server), a relay and a participant certificate."""
    pki.init_ca(directory, common_name="dmr benchmark CA")
    pki.issue(directory, "server", "recipient", **LOCAL_SANS)
    pki.issue(directory, "relay", "relay-1", **LOCAL_SANS)
    pki.issue(directory, "participant", "alice")
    return Pki(directory)


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Client TLS as the relay's Deliverer builds it: our certificate, the CA, TLS >= 1.2."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # urllib3 matches the host name itself
    context.load_cert_chain(str(cert), str(key))
    return context


def client_pool(ca: Path, cert: Path, key: Path, connections: int) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        maxsize=connections,
        block=True,
        cert_reqs="CERT_REQUIRED",
        ssl_context=client_context(ca, cert, key),
    )


def thumbprint(cert: Path) -> str:
    return pki.cert_thumbprint(pki.load_certificate(cert.read_bytes()))


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A private temporary directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"dmr-bench-{prefix}-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- processes ------------------------------------------------------------------------


@contextlib.contextmanager
def recipient_process(p: Pki, delay: float = 0.0) -> Iterator[int]:
    """``dmr recipient`` (its own process, so it does not share our GIL); yields its port."""
    cert, key = p.pair("server", "recipient")
    argv = [
        sys.executable,
        "-m",
        "dmr_appliance",
        "recipient",
        "--bind",
        f"{HOST}:0",
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--ca",
        str(p.ca),
        "--delay",
        str(delay),
    ]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # {"event": "listening", "port": ...}
        if not line:
            raise RuntimeError(f"dmr recipient exited with {process.wait(5)}")
        yield int(json.loads(line)["port"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def group_rss(pgid: int) -> dict[int, int]:
    """VmRSS in KiB of every live process in group ``pgid``, by pid."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found[int(entry.name)] = int(line.split()[1])
    return found


# --- the local stack --------------------------------------------------------------------


def require_nginx() -> None:
    """The stack's router is Debian's nginx; say so plainly if it is missing."""
    if not Path(serving.NGINX).exists():
        sys.exit(
            f"this benchmark runs the real router and needs Debian's nginx at "
            f"{serving.NGINX}: apt-get install -y nginx"
        )


class BenchStack(Stack):
    """The local stack with the router's per-certificate rate limits lifted: one client
    certificate sends every message here, and the limiter is not what is measured.
    ``relay_settings`` replace the relays' own (gunicorn workers and threads, say)."""

    def __init__(self, state_dir: Path, relays: int, **relay_settings: Any) -> None:
        super().__init__(state_dir, relays=relays)
        self.relay_settings = {k: v for k, v in relay_settings.items() if v is not None}

    def router_config(self) -> config.RouterConfig:
        unlimited = config.RateLimit(
            rate="100000r/s", burst=100_000, home_rate="100000r/s", home_burst=100_000
        )
        return dataclasses.replace(super().router_config(), rate_limit=unlimited)

    def relay_config(self, name: str) -> config.RelayConfig:
        return dataclasses.replace(super().relay_config(name), **self.relay_settings)


@contextlib.contextmanager
def running_stack(state_dir: Path, relays: int, **relay_settings: Any) -> Iterator[Stack]:
    stack = BenchStack(state_dir, relays, **relay_settings)
    stack.start()
    try:
        yield stack
    finally:
        # A benchmark has nothing to save: home is killed, so that teardown never waits
        # for the relays' long polls it holds; the rest stop as usual.
        stack.services["home"].kill()
        stack.stop()


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a participant sends with: its certificate, an access token, the cards of its
    recipients."""

    cert: Path
    key: Path
    token: str
    cards: tuple[str, ...]
    room: str

    @property
    def card(self) -> str:
        return self.cards[0]


def enroll(
    stack: Stack,
    room: str,
    sender: str = "alice",
    to: Sequence[str] = ("bob",),
    endpoint: str | None = None,
) -> Credentials:
    """Register ``sender`` and the recipients ``to`` at home (``to`` at ``endpoint``, else
    at the stack's recipient); a token for ``sender``, the cards of ``to``."""
    admin = stack.admin_client()
    admin.create_participant(sender, stack.endpoint(sender), [room])
    for pid in to:
        admin.create_participant(pid, endpoint or stack.endpoint(pid), [room])
    cert, key = stack.cert("participant", sender)
    token = admin.issue_token(participant=sender, certificate=cert.read_text())
    cards = tuple(admin.get_card(pid)["card"] for pid in to)
    return Credentials(cert, key, token["access_token"], cards, room)
