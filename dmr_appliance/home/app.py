"""Home's Falcon app: wiring only. ``create_app`` takes its dependencies; ``get_app``
reads the configuration (``DMR_CONFIG`` plus ``DMR_*`` variables) and builds them."""

from __future__ import annotations

import os
from collections.abc import Mapping

import falcon

from dmr_appliance import config as config_mod
from dmr_appliance import identity, logs, web
from dmr_appliance.config import HomeConfig
from dmr_appliance.home.access import CallerOnce
from dmr_appliance.home.deps import HomeDeps
from dmr_appliance.home.resources import (
    credentials,
    failures,
    health,
    instances,
    keys,
    participants,
    rooms,
    status_page,
    sync,
)
from dmr_appliance.home.store import open_store


def create_app(home: HomeDeps, verifier: identity.Verifier) -> falcon.App:
    """The app around its built dependencies: nothing is read or written here."""
    app = falcon.App(
        middleware=[
            web.RequestContext(),
            home.metrics.requests,
            CallerOnce(verifier),
            identity.CheckCaller(verifier),
        ]
    )
    web.install_error_handlers(app)

    people = participants.Participants(home)
    app.add_route("/v1/participants", people)
    app.add_route("/v1/participants/{pid}", people, suffix="item")
    for action in ("suspend", "reinstate", "revoke"):
        app.add_route(f"/v1/participants/{{pid}}/{action}", people, suffix=action)

    places = rooms.Rooms(home)
    app.add_route("/v1/rooms", places)
    app.add_route("/v1/rooms/{room}", places, suffix="item")

    tokens = credentials.Tokens(home)
    app.add_route("/v1/tokens", tokens)
    app.add_route("/v1/tokens/{jti}/revoke", tokens, suffix="revoke")
    app.add_route("/v1/cards/{pid}", credentials.Cards(home))

    signing = keys.Keys(home)
    app.add_route("/v1/keys", signing)
    app.add_route("/v1/keys/rotate", signing, suffix="rotate")
    jwks = keys.Jwks(home)
    app.add_route("/v1/jwks", jwks)
    app.add_route("/.well-known/jwks.json", jwks)

    app.add_route("/v1/sync", sync.Sync(home))
    app.add_route("/v1/heartbeats", instances.Heartbeats(home))
    relays = instances.Instances(home)
    app.add_route("/v1/instances", relays)
    app.add_route("/v1/instances/{name}", relays, suffix="item")

    reports = failures.Failures(home)
    app.add_route("/v1/failures", reports)
    app.add_route("/v1/failures/{mid}", reports, suffix="item")
    app.add_route("/v1/failures/{mid}/resolve", reports, suffix="resolve")

    alive = health.Health(home)
    app.add_route("/healthz", alive)
    app.add_route("/readyz", alive, suffix="ready")
    app.add_route("/metrics", health.metrics_endpoint(home))
    app.add_route("/openapi.json", health.OpenApi(home))
    app.add_route("/", status_page.StatusPage(home))
    return app


def get_app(environ: Mapping[str, str] = os.environ) -> falcon.App:
    """The app as gunicorn runs it: config from ``DMR_CONFIG`` and ``DMR_*`` variables;
    the store opened, the signing key made if there is none, the CA and CRL read."""
    config = config_mod.load(HomeConfig, environ.get("DMR_CONFIG"), environ)
    logs.configure(config.log_level, instance=config.instance)
    home = HomeDeps.build(config, open_store(config))
    return create_app(home, identity.Verifier.from_files(config.tls.ca, config.tls.crl))
