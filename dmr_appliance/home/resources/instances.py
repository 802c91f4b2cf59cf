"""/v1/heartbeats (relays) and /v1/instances (admin: list, forget one)."""

from __future__ import annotations

import falcon

from dmr_appliance import web
from dmr_appliance.home import instances
from dmr_appliance.home.access import ADMIN, RELAY, allow
from dmr_appliance.home.deps import HomeDeps


@falcon.before(allow(RELAY))
class Heartbeats:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = web.json_body(req, self.home.config.limits.max_request_bytes)
        beat = instances.validate_beat(body, req.context.caller.name)
        sync_version = instances.record(
            self.home.store, beat, req.context.caller.name, self.home.config.heartbeats
        )
        resp.media = {"instance": beat["instance"], "sync_version": sync_version}


@falcon.before(allow(ADMIN))
class Instances:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = instances.listing(self.home.store, self.home.config.heartbeats)
        resp.media = {"instances": found}

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        instances.forget(self.home.store, name)
        resp.status = falcon.HTTP_204
