"""/v1/keys (admin) and the JWKS (any identified caller)."""

from __future__ import annotations

import falcon

from dmr_appliance.home.access import ADMIN, ANY_KIND, allow
from dmr_appliance.home.deps import HomeDeps


@falcon.before(allow(ADMIN))
class Keys:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"keys": self.home.keyring.listing()}

    def on_post_rotate(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = self.home.keyring.rotate()
        resp.media = {"active": key.kid, "keys": self.home.keyring.listing()}


@falcon.before(allow(*ANY_KIND))
class Jwks:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.home.keyring.jwks()
        resp.cache_control = ["max-age=60"]
