"""The relay's Falcon app: wiring only (the request path is in messages.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import falcon

from dmr_appliance import config, envelope, identity, logs, web
from dmr_appliance.relay import draining, health
from dmr_appliance.relay.delivery import Deliverer
from dmr_appliance.relay.messages import Messages
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SyncState


def create_app(
    cfg: config.RelayConfig,
    state: SyncState,
    deliverer: Deliverer,
    meters: RelayMetrics | None = None,
    drain: draining.Flag | None = None,
) -> falcon.App:
    meters = meters if meters is not None else deliverer.meters
    verifier = identity.Verifier.from_files(cfg.tls.ca, cfg.tls.crl)
    # POST /v1/messages identifies its caller itself (and counts a refusal by its problem).
    checked = identity.CheckCaller(verifier, skip=frozenset({"/v1/messages"}))
    app = falcon.App(middleware=[web.RequestContext(), meters.requests, checked])
    web.install_error_handlers(app)
    limits = envelope.EnvelopeLimits(max_message_bytes=cfg.limits.max_message_bytes)
    app.add_route(
        "/v1/messages",
        Messages(
            state,
            deliverer,
            meters,
            verifier=verifier,
            limits=limits,
            drain=drain,
        ),
    )
    app.add_route("/healthz", health.Health())
    app.add_route("/readyz", health.Ready(state, drain))
    app.add_route("/metrics", meters.exposition(state, cfg))
    app.add_route("/openapi.json", health.OpenApi())
    return app


def get_app(environ: Mapping[str, str] = os.environ) -> falcon.App:
    """The app as gunicorn runs it: config from ``DMR_CONFIG`` and ``DMR_*`` variables."""
    cfg = config.load(config.RelayConfig, environ.get("DMR_CONFIG"), environ)
    logs.configure(cfg.log_level, instance=cfg.instance, queued=True)
    state = SyncState.in_dir(cfg.state_dir, issuer=cfg.issuer, leeway=cfg.tokens.leeway)
    meters = RelayMetrics()
    return create_app(
        cfg,
        state,
        Deliverer.from_config(cfg, meters),
        meters,
        draining.Flag(draining.flag_path(cfg.gate.socket)),
    )
