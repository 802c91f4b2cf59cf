"""Who may call what: the client kinds a responder admits, as a Falcon ``before`` hook.

The caller's identity is the gate's peer, or whom a router peer vouches for
(``web.client_identity``,
read lazily so open routes like /healthz never parse it). A participant must also be
registered and active: a suspended or revoked one gets nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon

from dmr_appliance import web
from dmr_appliance.errors import AuthError
from dmr_appliance.home import participants

ADMIN, RELAY, PARTICIPANT = "admin", "relay", "participant"
ANY_KIND = (ADMIN, RELAY, PARTICIPANT)


class Identify:
    """Middleware: gives each request ``context.identify()``, the caller or None."""

    def __init__(self, identify: web.Identifier) -> None:
        self.identify = identify

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Once per request: web.CheckCaller and the route's allow() hook both ask.
        req.context.identify = functools.cache(functools.partial(self.identify, req))
        req.context.identifier = self.identify


def allow(*kinds: str) -> Callable[..., None]:
    """``@falcon.before(allow(...))``: 403 problem unless the caller is one of ``kinds``."""

    def hook(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        caller = web.require(req.context.identify(), *kinds)
        if caller.kind == PARTICIPANT:
            found = participants.find(resource.home.store, caller.name)
            if found is None or found.status != "active":
                state = found.status if found else "not registered"
                raise AuthError(f"participant {caller.name!r} is {state}",
                                code="participant-not-active")
            req.context.participant = found
        req.context.caller = caller

    return hook
