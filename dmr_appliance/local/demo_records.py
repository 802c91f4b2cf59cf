"""The demo's records and its tally: every message id the Sender was asked to send,
classified by three independent records (the recipient's log, the Sender's results,
home's failure list), never by the demo's own counters (``local/demo.py`` runs it).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_appliance.client.result import SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.envelope import new_message_id
from dmr_appliance.errors import DmrError
from dmr_appliance.wire.home import HomeClient

ROOM = "demo"
LIST_LIMIT = 1000  # home's largest failure-list page


# --- the records ------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every message id the Sender was asked to send, and what ``send`` answered. Thread-safe."""

    asked: list[str] = field(default_factory=list)
    results: dict[str, SendResult] = field(default_factory=dict)
    raised: dict[str, str] = field(default_factory=dict)  # send refused it before any try
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, sender: Sender, to: str, payload: Any) -> str:
        """One message to ``to``; returns its id (the result, or why ``send`` raised, is kept)."""
        message_id = new_message_id()
        with self._lock:
            self.asked.append(message_id)
        try:
            result = sender.send(ROOM, [to], payload, message_id=message_id)
        except DmrError as exc:
            with self._lock:
                self.raised[message_id] = f"{exc.status} {exc.code}: {exc.detail}"
            return message_id
        with self._lock:
            self.results[message_id] = result
        return message_id

    def delivered(self, message_id: str) -> bool:
        """What the Sender said (the tally asks the recipient instead)."""
        with self._lock:
            result = self.results.get(message_id)
        return result is not None and result.ok

    def refusal(self, message_id: str) -> str | None:
        """Why the Sender refused ``message_id`` for good, or None."""
        with self._lock:
            if message_id in self.raised:
                return self.raised[message_id]
            result = self.results.get(message_id)
        if result is None or not result.rejected:
            return None
        return "; ".join(result.recipients[p].reason for p in result.rejected)

    def receipted(self) -> set[str]:
        """Ids whose every recipient's receipt the Sender verified (signed messages only)."""
        with self._lock:
            results = list(self.results.values())
        return {
            r.message_id
            for r in results
            if r.ok and all(o.receipt is not None for o in r.recipients.values())
        }

    def refusals(self) -> dict[str, str]:
        """Message id -> reason, for every message the Sender refused for good."""
        with self._lock:
            asked = list(self.asked)
        return {mid: reason for mid in asked if (reason := self.refusal(mid)) is not None}


def read_deliveries(log_path: Path) -> list[dict[str, Any]]:
    """The demo recipient's JSON-lines log (a torn last line is skipped)."""
    if not log_path.exists():
        return []
    records = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def failed_at_home(admin: HomeClient, senders: Iterable[str], wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` that home's failure list holds (asked one by one past a page)."""
    found: set[str] = set()
    for sender in senders:
        listed = admin.list_failures(sender=sender, limit=LIST_LIMIT)
        found |= {f["message_id"] for f in listed} & wanted
        if len(listed) == LIST_LIMIT:  # maybe truncated: ask for the rest by id
            found |= {mid for mid in wanted - found if _has_failure(admin, mid)}
    return found


def _has_failure(admin: HomeClient, message_id: str) -> bool:
    try:
        admin.get_failure(message_id)
    except DmrError as exc:
        if exc.status == 404:
            return False
        raise
    return True


# --- the tally --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    sent: int
    delivered: int
    refused: int
    reported_failed: int
    unaccounted: int
    duplicates_suppressed: int  # further copies the recipient logged and did not process
    processed_twice: int  # ids the recipient processed more than once (must be 0)
    signed: int  # of the delivered: signed by their sender (the recipient's log says)
    signature_verified: int  # ... whose signature the recipient verified
    receipts_verified: int  # ... whose receipt the Sender verified
    by_relay: dict[str, int]  # processed deliveries by the relay that made them
    refusal_reasons: dict[str, int]
    unaccounted_ids: list[str]


def reconcile(
    asked: Sequence[str],
    refusals: Mapping[str, str],
    deliveries: Iterable[Mapping[str, Any]],
    failed: set[str],
    path: str,
    receipted: set[str] | frozenset[str] = frozenset(),
) -> Tally:
    """Classify every asked id by the records; ``path`` is the recipient's inbox path,
    ``receipted`` the ids whose receipt the Sender verified."""
    wanted = set(asked)
    signed: set[str] = set()
    verified: set[str] = set()
    processed: Counter[str] = Counter()
    copies: Counter[str] = Counter()
    relays: Counter[str] = Counter()
    for record in deliveries:
        mid, status = record.get("id"), record.get("status")
        if mid not in wanted or record.get("path") != path or not _is_2xx(status):
            continue
        if record.get("duplicate"):
            copies[mid] += 1
        else:
            processed[mid] += 1
            relays[str(record.get("relay"))] += 1
            if record.get("signed"):
                signed.add(mid)
            if record.get("signature") == "verified":
                verified.add(mid)
    delivered = set(processed)
    refused = {mid for mid in wanted - delivered if mid in refusals}
    reported = (wanted - delivered - refused) & failed
    missing = sorted(wanted - delivered - refused - reported)
    return Tally(
        sent=len(wanted),
        delivered=len(delivered),
        refused=len(refused),
        reported_failed=len(reported),
        unaccounted=len(missing),
        duplicates_suppressed=sum(copies.values()),
        processed_twice=sum(1 for n in processed.values() if n > 1),
        signed=len(signed),
        signature_verified=len(verified),
        receipts_verified=len(delivered & set(receipted)),
        by_relay=dict(sorted(relays.items())),
        refusal_reasons=dict(Counter(_reason_head(refusals[mid]) for mid in refused)),
        unaccounted_ids=missing[:20],
    )


def _is_2xx(status: object) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def _reason_head(reason: str) -> str:
    """``403 sender-revoked: participant ...`` -> ``403 sender-revoked``."""
    return reason.split(":", 1)[0].strip() or "unknown"
