"""Re-sending what failed: a sender's own open failure reports at home, sent again
(``retry_failed(sender)``; ``dmr send --retry-failed``). Built on ``Sender``, which
knows nothing of it.

Each is sent with its message id, to the recipients that failed, with its payload,
content type and headers, under a fresh validity window (the first may have run out
while the recipient was down); recipients deduplicate by sender and message id, so a
recipient that did get the first try after all processes it once. Only this sender's own
reports are listed (home keys them by sender and id). Each one that is now delivered
to all of them is resolved at home by this sender, the note saying how. One that fails
again is reported again (home merges the attempts) and stays open; one refused for good
stays open too, for an operator to decide.
"""

from __future__ import annotations

import logging
from typing import Any

from dmr_appliance import logs
from dmr_appliance.client.result import SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.errors import DmrError

_log = logs.get_logger("dmr.sender")


def retry_failed(sender: Sender, limit: int = 100) -> list[SendResult]:
    """Re-send ``sender``'s open failures at home (oldest report first), same message
    ids; each delivered one is resolved there. One result each."""
    listed = sender.home.list_failures(status="open", sender=sender.participant, limit=limit)
    listed.sort(key=lambda f: (f["first_reported_at"], f["message_id"]))  # ULIDs: in order
    return [resend(sender, sender.home.get_failure(item["message_id"])) for item in listed]


def resend(sender: Sender, failure: dict[str, Any]) -> SendResult:
    envelope, mid = failure["envelope"], failure["message_id"]
    payload = {"payload_b64": envelope["payload_b64"]} if "payload_b64" in envelope else {}
    logs.log_event(
        _log,
        "send.resend",
        message_id=mid,
        room=failure["room"],
        to=failure["to"],
        reports=failure["reports"],
    )
    result = sender.send(
        failure["room"],
        failure["to"],
        envelope.get("payload"),
        content_type=envelope.get("content_type", "application/json"),
        headers=envelope.get("headers") or {},
        message_id=mid,
        **payload,
    )
    result.resent = True
    if result.ok:
        note = (
            f"re-sent by {sender.participant} with the same message id: delivered to "
            f"{', '.join(result.delivered)}"
        )
        try:
            sender.home.resolve_failure(mid, note)
            result.resolved = True
        except DmrError as exc:  # home down: it stays open, and a re-send is harmless
            result.report_error = f"delivered, not marked resolved: {exc.code}: {exc.detail}"
            logs.log_event(
                _log,
                "send.resolve-failed",
                logging.WARNING,
                message_id=mid,
                error=result.report_error,
            )
    return result
