"""relay_wrk.py's services beside the local stack: C (the no-op app under the relay's
gunicorn settings, behind a gate and a router rendered from the product's templates)
and the benchmark nginx (adapter, B's hops, the recipient)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from _wrk import Hop, nginx_conf

from dmr_appliance import render, serving
from dmr_appliance.local.processes import NginxProcess, ProcessGroup, free_port
from dmr_appliance.local.stack import HOST, RECIPIENT, Stack

BENCH = Path(__file__).resolve().parent


@dataclasses.dataclass
class Ports:
    relay: int = dataclasses.field(default_factory=free_port)  # adapter -> the router
    noop: int = dataclasses.field(default_factory=free_port)  # adapter -> C's router
    passthrough: int = dataclasses.field(default_factory=free_port)  # adapter -> B
    recipient: int = dataclasses.field(default_factory=free_port)


@contextlib.contextmanager
def noop_service(stack: Stack, root: Path, workers: int, threads: int) -> Iterator[tuple[int, int]]:
    """C: gunicorn (the relay's argv) + a relay gate + a router, each as the stack runs its
    own. Yields (C's router port, gunicorn's process group)."""
    relay = stack.relay_config(stack.relay_names[0])
    gate = dataclasses.replace(relay.gate, socket=root / "gunicorn.sock", prefix=root / "gate")
    cfg = dataclasses.replace(
        relay,
        instance="noop",
        bind=f"{HOST}:{free_port()}",
        state_dir=root,
        gate=gate,
        workers=workers,
        threads=threads,
    )
    router = dataclasses.replace(
        stack.router_config(),
        listen=free_port(),
        relays=[cfg.bind],
        prefix=root / "router",
        stub_status_bind="",
        pid_file=root / "router" / "nginx.pid",
    )
    for d in (gate.prefix, router.prefix):
        d.mkdir(parents=True, exist_ok=True)
    argv = serving.gunicorn_argv(
        "noop_app:app", socket=gate.socket, workers=workers, threads=threads, name="dmr-bench-noop"
    )
    app = ProcessGroup(
        "noop",
        argv,
        log_path=root / "noop.log",
        env={"PYTHONPATH": str(BENCH)},
        stop_signal=signal.SIGINT,
    )  # gunicorn's quick shutdown
    gate_nginx = NginxProcess(
        render.write_gate("relay", cfg, root / "gate.conf"),
        prefix=gate.prefix,
        pid_file=gate.prefix / "nginx.pid",
        log_path=root / "gate.log",
        name="noop-gate",
    )
    router_nginx = NginxProcess(
        render.write(router, root / "router.conf"),
        prefix=router.prefix,
        pid_file=router.pid_file,
        log_path=root / "router.log",
        name="noop-router",
    )
    started: list[ProcessGroup] = []
    try:
        for service in (app, gate_nginx, router_nginx):
            service.start()
            started.append(service)
        _wait_socket(gate.socket)
        assert app.pid is not None
        yield router.listen, app.pid
    finally:
        for service in reversed(started):
            service.stop()


def _wait_socket(path: Path, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"the no-op app did not bind {path} within {timeout:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def bench_nginx(
    stack: Stack, root: Path, ports: Ports, c_router: int, token: str
) -> Iterator[None]:
    """The adapter (plain HTTP in, the participant's certificate and token out), B's two
    pass-through hops, and the recipient, in one nginx."""
    prefix = root / "bench-nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    participant = stack.cert("participant", "alice")
    hop1, hop2 = free_port(), free_port()
    hops = [
        Hop(ports.relay, f"{HOST}:{stack.ports['router']}", participant, plain=True, token=token),
        Hop(ports.noop, f"{HOST}:{c_router}", participant, plain=True, token=token),
        Hop(ports.passthrough, f"{HOST}:{hop1}", participant, plain=True, token=token),
        Hop(hop1, f"{HOST}:{hop2}", stack.cert("router", "router")),
        Hop(hop2, f"{HOST}:{ports.recipient}", stack.cert("relay", stack.relay_names[0])),
    ]
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_conf(prefix, stack.ca, stack.cert("server", RECIPIENT), hops, ports.recipient)
    )
    nginx = NginxProcess(
        conf,
        prefix=prefix,
        pid_file=prefix / "nginx.pid",
        log_path=root / "bench-nginx.log",
        name="bench-nginx",
    )
    nginx.start()
    try:
        yield
    finally:
        nginx.stop()
