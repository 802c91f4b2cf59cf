"""The relay's operational endpoints: /healthz, /readyz, /openapi.json (/metrics: metrics.py)."""

from __future__ import annotations

from importlib import resources

import falcon

from dmr_appliance.relay import draining
from dmr_appliance.relay.sync_state import SyncState


class Health:
    """Alive: the process answers. Says nothing about home or recipients."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Ready once a sync document is held (from home, or saved by an earlier run), and not
    while draining."""

    def __init__(self, state: SyncState, drain: draining.Flag | None = None) -> None:
        self.state = state
        self.drain = drain

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.drain is not None:  # 503 draining / not-ready, as POST /v1/messages answers
            self.drain.refuse_if_set()
        snapshot = self.state.current()
        resp.media = {"status": "ready", "sync_version": snapshot.version}


class OpenApi:
    """The relay's OpenAPI document, kept in the package and read once."""

    def __init__(self) -> None:
        self.body = (resources.files("dmr_appliance") / "openapi" / "relay.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body
