"""Home's Falcon app: wiring only. ``create_app`` takes its dependencies; ``get_app``
reads the configuration (``DMR_CONFIG`` plus ``DMR_*`` variables) and builds them."""

from __future__ import annotations

import os

import falcon

from dmr_appliance import config as config_mod
from dmr_appliance import logs, web
from dmr_appliance.config import HomeConfig
from dmr_appliance.home.access import Identify
from dmr_appliance.home.resources import (
    credentials,
    failures,
    instances,
    keys,
    participants,
    service,
    status,
    sync,
)
from dmr_appliance.home.services import Services
from dmr_appliance.home.store import Store


def create_app(config: HomeConfig, store: Store) -> falcon.App:
    home = Services.build(config, store)
    app = falcon.App(middleware=[
        web.RequestContext(),
        home.metrics,
        Identify(web.Identifier.from_files(config.tls.ca, config.tls.crl)),
    ])
    web.install_error_handlers(app)

    people = participants.Participants(home)
    app.add_route("/v1/participants", people)
    app.add_route("/v1/participants/{pid}", people, suffix="item")
    for action in ("suspend", "reinstate", "revoke"):
        app.add_route(f"/v1/participants/{{pid}}/{action}", people, suffix=action)

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
    app.add_route("/v1/instances", instances.Instances(home))

    reports = failures.Failures(home)
    app.add_route("/v1/failures", reports)
    app.add_route("/v1/failures/{mid}", reports, suffix="item")
    app.add_route("/v1/failures/{mid}/resolve", reports, suffix="resolve")

    health = service.Health(home)
    app.add_route("/healthz", health)
    app.add_route("/readyz", health, suffix="ready")
    app.add_route("/metrics", service.Metrics(home))
    app.add_route("/openapi.json", service.OpenApi(home))
    app.add_route("/", status.StatusPage(home))
    return app


def get_app() -> falcon.App:
    config = config_mod.load(HomeConfig, os.environ.get("DMR_CONFIG"))
    logs.configure(config.log_level, instance=config.instance)
    return create_app(config, Store(config.database))
