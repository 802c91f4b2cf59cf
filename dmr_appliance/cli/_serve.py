"""`dmr home|relay serve` and `dmr home|relay gate`: check the config, then exec gunicorn
or the gate's nginx in place (systemd then supervises that process itself)."""

from __future__ import annotations

import argparse

from dmr_appliance import config, logs, metrics, serving


def register_serve(
    sub: argparse._SubParsersAction, kind: str, *, help_text: str, serve_help: str
) -> argparse._SubParsersAction:
    """The kind's command with serve, gate and probe; its verbs, for the kind's own."""
    parser = sub.add_parser(kind, help=help_text)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    service = serving.APP_SERVICES[kind]
    serve = verbs.add_parser("serve", help=serve_help)
    config_option(serve, kind)
    serve.set_defaults(func=run_serve, service=service)
    gate = verbs.add_parser(
        "gate",
        help=f"run the gate (nginx: TLS, client certificates, CRL) in front of {kind}",
        description=f"Render the gate's nginx.conf from {kind}.toml, check it with nginx -t, "
        "then run nginx in the foreground (replaces this process). With --reload, render "
        "and check again and signal the running gate to reload (a new CRL, new "
        "certificates): requests in flight finish, none fails.",
    )
    config_option(gate, kind)
    gate.add_argument(
        "--reload", action="store_true", help="reload the running gate instead of starting one"
    )
    gate.add_argument(
        "--watch-crl",
        action="store_true",
        help="keep nginx as a child and reload it when the CRL file's content "
        "changes (containers: a Secret the kubelet refreshes; hosts use "
        "dmr-crl.path)",
    )
    gate.set_defaults(func=run_gate, service=service)
    probe = verbs.add_parser(
        "probe",
        help=f"ask {kind}'s gunicorn for /healthz or /readyz on its unix socket",
        description=f"GET PATH from {kind}'s gunicorn over its unix socket (bypassing the "
        "gate), print the answer and exit 0 on 200, 1 otherwise: a liveness or readiness "
        "check of the app itself (a Kubernetes exec probe, a systemd watchdog script).",
    )
    config_option(probe, kind)
    probe.add_argument("path", nargs="?", default="/healthz", choices=["/healthz", "/readyz"])
    probe.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    probe.set_defaults(func=run_probe, service=service)
    return verbs


def config_option(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument(
        "--config",
        default=str(config.ETC / f"{kind}.toml"),
        help=f"{kind}.toml (default: %(default)s)",
    )


def run_serve(args: argparse.Namespace) -> int:
    service: serving.AppService = args.service
    settings = config.load(service.settings, args.config)  # fail here, not in every worker
    env = metrics.prepare_directory(metrics.directory(settings.gate.socket))
    serving.exec_gunicorn(serving.service_argv(service, settings), config_path=args.config, env=env)
    return 0  # not reached: gunicorn replaced this process


def run_gate(args: argparse.Namespace) -> int:
    service: serving.AppService = args.service
    settings = config.load(service.settings, args.config)
    if args.reload:
        pid = serving.reload_gate(service, settings)
        print(f"{service.kind} gate (pid {pid}): reloading with {serving.gate_conf(settings)}")
        return 0
    if args.watch_crl:
        logs.configure(settings.log_level, instance=settings.instance)
        return serving.supervise_gate(service, settings)
    serving.exec_gate(service, settings)
    return 0  # not reached: nginx replaced this process


def run_probe(args: argparse.Namespace) -> int:
    settings = config.load(args.service.settings, args.config)
    try:
        status, body = serving.unix_get(settings.gate.socket, args.path, args.timeout)
    except OSError as exc:
        print(f"{args.service.kind} {args.path}: cannot reach {settings.gate.socket}: {exc}")
        return 1
    print(f"{args.service.kind} {args.path}: {status} {body.strip()[:4096]}")
    return 0 if status == 200 else 1
