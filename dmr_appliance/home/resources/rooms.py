"""/v1/rooms: every known room with its policy and member count; mark one signed (admin)."""

from __future__ import annotations

import falcon

from dmr_appliance import web
from dmr_appliance.home import rooms
from dmr_appliance.home.access import ADMIN, allow
from dmr_appliance.home.deps import HomeDeps


@falcon.before(allow(ADMIN))
class Rooms:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"rooms": [room.to_json() for room in rooms.listing(self.home.store)]}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, room: str) -> None:
        resp.media = rooms.get(self.home.store, rooms.check_room(room)).to_json()

    def on_put_item(self, req: falcon.Request, resp: falcon.Response, room: str) -> None:
        # Tokens issued from now on carry the new policy; those already out keep theirs.
        room = rooms.check_room(room)
        signed = rooms.validate_policy(
            web.json_body(req, self.home.config.limits.max_request_bytes)
        )
        resp.media = rooms.set_signed(self.home.store, room, signed).to_json()
