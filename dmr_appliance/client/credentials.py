"""The sender's access token and recipients' address cards, from home, cached.

Home is not in the real-time path: a sender renews its token at three quarters of its
lifetime (sooner for a short one) and refreshes a card shortly before it expires, but
while home is unreachable it keeps using what it holds until that really expires.
Thread-safe: one ``Sender`` may serve many threads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from dmr_appliance import logs
from dmr_appliance.errors import DmrError
from dmr_appliance.timefmt import parse_time
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.outcome import transient

RENEW_AT = 0.75  # share of a token's lifetime after which it is renewed
CARD_MARGIN = 60.0  # seconds before its expiry a card is refreshed
STILL_USABLE = 5.0  # a credential this close to expiry is not sent, even when home is down

_log = logs.get_logger("dmr.sender")


def renew_after(lifetime: float) -> float:
    """Seconds after issue at which a token of ``lifetime`` seconds is renewed: at
    RENEW_AT of it, but early enough that it stays usable for STILL_USABLE more seconds
    (a home outage at renewal time is then ridden out even by a short-lived token)."""
    return max(0.0, min(RENEW_AT * lifetime, lifetime - 2 * STILL_USABLE))


@dataclass(frozen=True)
class _Held:
    value: str
    refresh_at: float  # time.time() after which home is asked again
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at

    def usable(self, now: float) -> bool:
        return now < self.expires_at - STILL_USABLE


class TokenSource:
    """The participant's own access token (bound by home to the certificate it presents)."""

    def __init__(self, home: HomeClient) -> None:
        self.home = home
        self._held: _Held | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        """A usable token; raises DmrError when home refuses or is down and none is held."""
        with self._lock:
            now = time.time()
            held = self._held
            if held is not None and held.fresh(now):
                return held.value
            try:
                self._held = self._fetch(now)
            except DmrError as exc:
                if held is None or not held.usable(now) or not transient(exc):
                    raise
                logs.log_event(
                    _log,
                    "send.token-stale",
                    logging.WARNING,
                    code=exc.code,
                    detail=exc.detail,
                    expires_in=round(held.expires_at - now),
                )
                return held.value
            return self._held.value

    def invalidate(self, token: str) -> None:
        """The relay refused ``token``: the next ``get`` asks home (unless already renewed)."""
        with self._lock:
            if self._held is not None and self._held.value == token:
                self._held = None

    def _fetch(self, now: float) -> _Held:
        doc = self.home.issue_token()
        expires = parse_time(doc["expires_at"]).timestamp()
        return _Held(doc["access_token"], now + renew_after(expires - now), expires)


class CardCache:
    """Recipients' address cards by participant id, each until shortly before it expires."""

    def __init__(self, home: HomeClient) -> None:
        self.home = home
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def get(self, pid: str) -> str:
        """The card of ``pid``; raises DmrError (refused, or home down and none usable)."""
        now = time.time()
        with self._lock:
            held = self._held.get(pid)
        if held is not None and held.fresh(now):
            return held.value
        try:
            doc = self.home.get_card(pid)
        except DmrError as exc:
            if held is None or not held.usable(now) or not transient(exc):
                raise
            logs.log_event(_log, "send.card-stale", logging.WARNING, to=pid, code=exc.code)
            return held.value
        expires = parse_time(doc["expires_at"]).timestamp()
        fresh = _Held(doc["card"], max(now, expires - CARD_MARGIN), expires)
        with self._lock:
            self._held[pid] = fresh
        return fresh.value

    def forget(self, pid: str) -> None:
        with self._lock:
            self._held.pop(pid, None)
