"""/v1/failures: failed messages reported by senders. Admins list, show and resolve any;
a participant those it sent (to re-send them: ``dmr send --retry-failed``).

A report is keyed by (sender, message id): ``/v1/failures/{mid}`` is the caller's own
report for a participant; an admin names the sender with ``?from=`` when several
senders reported one id (409 ``failure-ambiguous`` otherwise)."""

from __future__ import annotations

import falcon

from dmr_appliance import logs, web
from dmr_appliance.errors import AuthError, InvalidRequest
from dmr_appliance.home import failures
from dmr_appliance.home.access import ADMIN, PARTICIPANT, allow
from dmr_appliance.home.deps import HomeDeps

STATUSES = ("open", "resolved")
MAX_NOTE = 2000

_log = logs.get_logger("dmr.home.failures")


class Failures:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    @falcon.before(allow(PARTICIPANT, ADMIN))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = failures.validate(self._body(req))
        caller = req.context.caller
        share = None
        if caller.kind == PARTICIPANT:
            if report["from"] != caller.name:
                raise AuthError("a participant reports only messages it sent", code="not-sender")
            share = self.home.config.failures
        doc, created = failures.report(
            self.home.store, report, f"{caller.kind}:{caller.name}", share
        )
        # A line naming the message: `dmr trace ID` finds home's part in its story.
        logs.log_event(
            _log,
            "failure-reported",
            message_id=doc["message_id"],
            room=doc.get("room"),
            sender=doc.get("from"),
            first=created,
            by=f"{caller.kind}:{caller.name}",
        )
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.location = f"/v1/failures/{doc['message_id']}?from={doc['from']}"
        resp.media = doc

    @falcon.before(allow(PARTICIPANT, ADMIN))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        per_sender = req.get_param_as_int("per_sender", min_value=1, max_value=1000)
        sender, room = self._sender(req), req.get_param("room")
        found = failures.listing(
            self.home.store,
            status=status,
            room=room,
            sender=sender,
            limit=limit,
            per_sender=per_sender,
        )
        resp.media = {
            "failures": found,
            "senders": failures.counts(self.home.store, room=room, sender=sender),
        }

    @falcon.before(allow(PARTICIPANT, ADMIN))
    def on_get_item(self, req: falcon.Request, resp: falcon.Response, mid: str) -> None:
        resp.media = failures.get(self.home.store, mid, self._sender(req))

    @falcon.before(allow(PARTICIPANT, ADMIN))
    def on_post_resolve(self, req: falcon.Request, resp: falcon.Response, mid: str) -> None:
        body = self._body(req)
        note = body.get("note") if isinstance(body, dict) else None
        if not isinstance(note, str) or not 0 < len(note) <= MAX_NOTE or set(body) - {"note"}:
            raise InvalidRequest(f'the body is {{"note": text of 1-{MAX_NOTE} characters}}')
        caller = req.context.caller
        resp.media = failures.resolve(
            self.home.store, mid, note, f"{caller.kind}:{caller.name}", self._sender(req)
        )
        logs.log_event(
            _log,
            "failure-resolved",
            message_id=mid,
            sender=resp.media["from"],
            by=f"{caller.kind}:{caller.name}",
        )

    @staticmethod
    def _sender(req: falcon.Request) -> str | None:
        """Whose reports: ``?from=`` for an admin (None: any); a participant's own, always."""
        sender, caller = req.get_param("from"), req.context.caller
        if caller.kind == PARTICIPANT:
            if sender not in (None, caller.name):
                raise AuthError("a participant sees only messages it sent", code="not-sender")
            return str(caller.name)
        return sender

    def _body(self, req: falcon.Request) -> object:
        return web.json_body(req, self.home.config.limits.max_request_bytes)
