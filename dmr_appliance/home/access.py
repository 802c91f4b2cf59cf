"""Who may call what: the client kinds a responder admits, as a Falcon ``before`` hook.

The caller's identity is the gate's peer, or whom a router peer vouches for
(``identity.Verifier.caller``,
read lazily so open routes like /healthz never parse it). A participant must also be
registered and active: a suspended or revoked one gets nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon

from dmr_appliance import identity
from dmr_appliance.errors import AuthError
from dmr_appliance.home import participants

ADMIN, RELAY, PARTICIPANT = "admin", "relay", "participant"
ANY_KIND = (ADMIN, RELAY, PARTICIPANT)


class CallerOnce:
    """Middleware: gives each request ``context.find_caller()``, the caller or None, worked
    out once (identity.CheckCaller and the route's allow() hook both ask), and
    ``context.verifier`` for certificates handed over in a body."""

    def __init__(self, verifier: identity.Verifier) -> None:
        self.verifier = verifier

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.find_caller = functools.cache(functools.partial(self.verifier.caller, req))
        req.context.verifier = self.verifier


def allow(*kinds: str) -> Callable[..., None]:
    """``@falcon.before(allow(...))``: 403 problem unless the caller is one of ``kinds``."""

    def hook(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        caller = identity.require(req.context.find_caller(), *kinds)
        if caller.kind == PARTICIPANT:
            found = participants.find(resource.home.store, caller.name)
            if found is None or found.status != "active":
                state = found.status if found else "not registered"
                raise AuthError(
                    f"participant {caller.name!r} is {state}", code="participant-not-active"
                )
            req.context.participant = found
        req.context.caller = caller

    return hook
