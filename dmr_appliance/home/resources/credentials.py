"""/v1/tokens and /v1/cards: access tokens bound to a certificate, and address cards."""

from __future__ import annotations

from typing import Any

import falcon

from dmr_appliance import web
from dmr_appliance.errors import AuthError, Conflict, InvalidRequest
from dmr_appliance.home import credentials, participants
from dmr_appliance.home.access import ADMIN, PARTICIPANT, allow
from dmr_appliance.home.deps import HomeDeps
from dmr_appliance.home.participants import Participant

MAX_PEM = 8192  # a P-256 certificate in PEM is under 1 KiB
TOKEN_FIELDS = {"participant", "certificate", "lifetime"}


class Tokens:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    @falcon.before(allow(PARTICIPANT, ADMIN))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self._body(req)
        if req.context.caller.kind == ADMIN:
            who, thumbprint, ceiling = self._for_admin(req, body)
        else:
            who, thumbprint, ceiling = self._for_participant(req, body)
        lifetime = _lifetime(body, default=self.home.config.tokens.access_ttl, ceiling=ceiling)
        resp.status = falcon.HTTP_201
        resp.media = self.home.signer.access_token(who, thumbprint, lifetime)

    @falcon.before(allow(ADMIN))
    def on_post_revoke(self, req: falcon.Request, resp: falcon.Response, jti: str) -> None:
        resp.media = credentials.revoke(self.home.store, jti)

    def _body(self, req: falcon.Request) -> dict[str, Any]:
        if not req.content_length:
            return {}
        body = web.json_body(req, self.home.config.limits.max_request_bytes)
        if not isinstance(body, dict) or set(body) - TOKEN_FIELDS:
            raise InvalidRequest(f"the body is an object with {', '.join(sorted(TOKEN_FIELDS))}")
        return body

    def _for_participant(self, req: falcon.Request, body: dict) -> tuple[Participant, str, int]:
        caller = req.context.caller
        if body.get("participant", caller.name) != caller.name or "certificate" in body:
            raise AuthError(
                "a participant obtains tokens only for itself and the certificate it presents",
                code="forbidden",
            )
        # Bound to the very certificate presented: a stolen token is useless without its key.
        return req.context.participant, caller.thumbprint, self.home.config.tokens.access_ttl

    def _for_admin(self, req: falcon.Request, body: dict) -> tuple[Participant, str, int]:
        pid, pem = body.get("participant"), body.get("certificate")
        if not isinstance(pid, str) or not isinstance(pem, str) or len(pem) > MAX_PEM:
            raise InvalidRequest(
                "an admin names the participant and sends its certificate "
                "(PEM), which home checks against the CA and its CRL"
            )
        # Checked like a presented one: this CA, valid now, not revoked, and really pid's.
        cert = req.context.verifier.certificate(pem)
        if cert.kind != PARTICIPANT or cert.name != pid:
            raise InvalidRequest(
                f"the certificate is {cert.kind} {cert.name!r}, not participant {pid!r}",
                field="certificate",
            )
        return (_active(self.home, pid), cert.thumbprint, self.home.config.tokens.access_max_ttl)


@falcon.before(allow(PARTICIPANT, ADMIN))
class Cards:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        if req.context.caller.kind == PARTICIPANT:
            # Only the rooms both share: a card tells nothing about the target's other rooms,
            # and a participant learns nothing (not even existence) of one outside its rooms.
            target = participants.find(self.home.store, pid)
            mine = req.context.participant.rooms  # loaded by the access hook
            rooms = sorted(set(target.rooms) & set(mine)) if target else []
            if not rooms:
                raise AuthError(f"you share no room with {pid!r}", code="no-shared-room")
            _require_active(target)
        else:
            target = _active(self.home, pid)
            rooms = list(target.rooms)
        resp.media = self.home.signer.card(target, rooms, self.home.config.tokens.card_ttl)


def _active(home: HomeDeps, pid: str) -> Participant:
    return _require_active(participants.get(home.store, pid))


def _require_active(target: Participant) -> Participant:
    if target.status != "active":
        raise Conflict(
            f"participant {target.id!r} is {target.status}", code="participant-not-active"
        )
    return target


def _lifetime(body: dict, *, default: int, ceiling: int) -> int:
    lifetime = body.get("lifetime", default)
    if type(lifetime) is not int or not 1 <= lifetime <= ceiling:
        raise InvalidRequest(f"lifetime must be 1-{ceiling} seconds")
    return lifetime
