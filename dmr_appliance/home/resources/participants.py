"""/v1/participants: the participant list (admin only)."""

from __future__ import annotations

import falcon

from dmr_appliance import web
from dmr_appliance.errors import InvalidRequest
from dmr_appliance.home import participants
from dmr_appliance.home.access import ADMIN, allow
from dmr_appliance.home.deps import HomeDeps, token_horizon


@falcon.before(allow(ADMIN))
class Participants:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        if status is not None and status not in participants.STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(participants.STATUSES)}")
        found = participants.listing(self.home.store, status=status, room=req.get_param("room"))
        resp.media = {"participants": [p.to_json() for p in found]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = web.json_body(req, self.home.config.limits.max_request_bytes)
        created = participants.create(self.home.store, *participants.validate_new(body))
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/participants/{created.id}"
        resp.media = created.to_json()

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        resp.media = participants.get(self.home.store, pid).to_json()

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        participants.delete(self.home.store, pid, refuse_for=token_horizon(self.home.config))
        resp.status = falcon.HTTP_204

    def on_post_suspend(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        resp.media = participants.change_status(self.home.store, pid, "suspend").to_json()

    def on_post_reinstate(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        resp.media = participants.change_status(self.home.store, pid, "reinstate").to_json()

    def on_post_revoke(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        resp.media = participants.change_status(self.home.store, pid, "revoke").to_json()
