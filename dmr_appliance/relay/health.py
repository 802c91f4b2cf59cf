"""The relay's operational endpoints: /healthz, /readyz, /openapi.json (/metrics: metrics.py)."""

from __future__ import annotations

from importlib import resources

import falcon

from dmr_appliance.relay.trust import TrustState


class Health:
    """Alive: the process answers. Says nothing about home or recipients."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Ready once a sync document is held (from home, or saved by an earlier run)."""

    def __init__(self, trust: TrustState) -> None:
        self.trust = trust

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snapshot = self.trust.current()  # 503 not-ready, as POST /v1/messages answers
        resp.media = {"status": "ready", "sync_version": snapshot.version}


class OpenApi:
    """The relay's OpenAPI document, kept in the package and read once."""

    def __init__(self) -> None:
        self.body = (resources.files("dmr_appliance") / "openapi" / "relay.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body
