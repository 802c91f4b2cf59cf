"""``HomeClient``: home's API over HTTPS with the caller's client certificate, for every
caller: the sender SDK, the admin CLI and the relay's sync agent.

``base_url`` is where home's ``/v1`` lives: through a router that is
``https://ROUTER/v1/home`` (the router maps ``/v1/home/<rest>`` to home's ``/v1/<rest>``).
Given several (one per router), calls go through ``Failover``: a call that fails at one
goes to the next at once, and the client keeps to the one that answered. Which failures
pass on is the caller's choice: by default only a connection that never reached home
(refused, timed out, TLS), as a refusal from home is the same from every router; with
``any_failure_fails_over`` every one (the agent: a router may answer 502 while another
reaches home, and a refused peer or document at one URL says nothing of the next).

Answers: 2xx is the result, 304 is None, anything else is a ``HomeRefused``, the
``DmrError`` its problem document describes (``wire.problem``, with ``retry_after``);
no URL reachable is ``Unavailable`` (``home-unreachable``) naming each. Whatever the
caller's checks or its TLS context raise comes out as it is. No retries here: callers
wait by their ``wire.retry.RetryPolicy`` (the sender's reports, the agent's sync loop).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import TimeoutSauce  # urllib3's Timeout, as requests takes it

from dmr_appliance import sync_signature
from dmr_appliance.errors import DmrError, Unavailable
from dmr_appliance.wire.failover import Failover
from dmr_appliance.wire.mtls import session as mtls_session
from dmr_appliance.wire.problem import Problem, read_problem

DEFAULT_TIMEOUT = 10.0

Timeout = float | tuple[float, float]  # seconds: both, or (connect, read)
OnFailure = Callable[[str, str, Exception], None]  # (call, base URL, error)


class HomeRefused(DmrError):
    """Home, or a router before it, answered with something other than a result."""

    def __init__(self, problem: Problem) -> None:
        error = problem.error(default_code="home-error")
        detail = problem.detail or f"home answered {problem.status} {problem.title}".rstrip()
        super().__init__(detail, code=error.code, status=error.status, title=error.title)
        self.problem = problem
        self.retry_after = problem.retry_after  # seconds home asked to wait, if any


@dataclass(frozen=True)
class SyncAnswer:
    """Home's sync document as it came: the exact bytes its signature covers."""

    body: bytes
    etag: str | None
    signature: str | None

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


class HomeClient:
    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        cert: Path | str | None = None,
        key: Path | str | None = None,
        ca: Path | str | None = None,
        session: requests.Session | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        any_failure_fails_over: bool = False,
        on_failure: OnFailure | None = None,
    ) -> None:
        """Without ``session``, one is made for ``cert``/``key``/``ca`` (``wire.mtls``);
        given one, its caller made it for the same certificate. ``on_failure`` hears of
        every URL a call failed at (the agent logs and counts them)."""
        self.failover = Failover([base_url] if isinstance(base_url, str) else base_url)
        self.timeout = timeout
        if session is None:
            if cert is None or key is None or ca is None:
                raise ValueError("HomeClient needs cert, key and ca, or a session")
            session = mtls_session(ca, cert, key)
        self.session = session
        self.session.headers.update(headers or {})
        self.any_failure_fails_over = any_failure_fails_over
        self.on_failure = on_failure

    @property
    def base_url(self) -> str:
        """The base URL calls go to now (the last one that answered)."""
        return self.failover.current

    # -- participants (admin) ----------------------------------------------------------

    def create_participant(self, pid: str, endpoint: str, rooms: list[str]) -> dict[str, Any]:
        return self._json(
            "POST", "participants", json={"id": pid, "endpoint": endpoint, "rooms": rooms}
        )

    def list_participants(
        self, *, status: str | None = None, room: str | None = None
    ) -> list[dict[str, Any]]:
        params = _params(status=status, room=room)
        return self._json("GET", "participants", params=params)["participants"]

    def get_participant(self, pid: str) -> dict[str, Any]:
        return self._json("GET", f"participants/{_seg(pid)}")

    def set_participant_status(self, pid: str, action: str) -> dict[str, Any]:
        """``action``: suspend, reinstate or revoke (permanent)."""
        return self._json("POST", f"participants/{_seg(pid)}/{_seg(action)}")

    def delete_participant(self, pid: str) -> None:
        self._json("DELETE", f"participants/{_seg(pid)}")

    # -- rooms (admin) -----------------------------------------------------------------

    def list_rooms(self) -> list[dict[str, Any]]:
        """Every room home knows (held by a participant or with a policy)."""
        return self._json("GET", "rooms")["rooms"]

    def get_room(self, room: str) -> dict[str, Any]:
        return self._json("GET", f"rooms/{_seg(room)}")

    def set_room_signed(self, room: str, signed: bool) -> dict[str, Any]:
        """Mark ``room`` signed (relays refuse its unsigned messages) or not; tokens issued
        from then on carry it."""
        return self._json("PUT", f"rooms/{_seg(room)}", json={"signed": signed})

    # -- tokens, cards, keys -----------------------------------------------------------

    def issue_token(
        self,
        *,
        participant: str | None = None,
        certificate: str | None = None,
        lifetime: int | None = None,
    ) -> dict[str, Any]:
        """A participant asks with no arguments; an admin names the participant and sends
        its certificate (PEM), which home checks against the CA and CRL."""
        body = _params(participant=participant, certificate=certificate, lifetime=lifetime)
        return self._json("POST", "tokens", json=body or None)

    def revoke_token(self, jti: str) -> dict[str, Any]:
        return self._json("POST", f"tokens/{_seg(jti)}/revoke")

    def get_card(self, pid: str) -> dict[str, Any]:
        return self._json("GET", f"cards/{_seg(pid)}")

    def list_keys(self) -> list[dict[str, Any]]:
        return self._json("GET", "keys")["keys"]

    def rotate_keys(self) -> dict[str, Any]:
        return self._json("POST", "keys/rotate")

    # -- relays: sync and heartbeats ---------------------------------------------------

    def sync(
        self,
        *,
        etag: str | None = None,
        wait: int = 0,
        accept: Callable[[SyncAnswer], Any] | None = None,
    ) -> Any:
        """The sync document, or None while it is still ``etag`` after ``wait`` seconds
        (a long poll: the read timeout is the client's plus ``wait``). ``accept`` sees
        each answer at the URL that gave it, and its result is returned; what it raises
        fails that URL (the agent checks the document and its signature there)."""

        def answer(resp: requests.Response) -> Any:
            if resp.status_code == 304:
                return None
            got = SyncAnswer(
                resp.content, resp.headers.get("ETag"), resp.headers.get(sync_signature.HEADER)
            )
            return accept(got) if accept is not None else got

        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
        return self._call(
            "sync",
            "GET",
            "sync",
            answer,
            timeout=(connect, read + wait),
            params={"wait": wait} if wait else None,
            headers={"If-None-Match": etag} if etag else {},
        )

    def heartbeat(
        self,
        *,
        instance: str,
        address: str,
        version: str,
        sync_version: int,
        counters: Mapping[str, int] | None = None,
        sync_age: float | None = None,
        leaving: bool = False,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """One beat (the shape home/instances.py takes); returns the beat sent. With a
        ``deadline`` (``time.monotonic()``) every URL together must be done by then."""
        beat: dict[str, Any] = {
            "instance": instance,
            "address": address,
            "version": version,
            "sync_version": sync_version,
            "counters": dict(counters or {}),
        }
        if sync_age is not None:
            beat["sync_age"] = sync_age
        if leaving:
            beat["leaving"] = True
        self._call(
            "leave" if leaving else "heartbeat",
            "POST",
            "heartbeats",
            _accept_json,
            json=beat,
            deadline=deadline,
        )
        return beat

    def list_instances(self) -> list[dict[str, Any]]:
        return self._json("GET", "instances")["instances"]

    def forget_instance(self, name: str) -> None:
        self._json("DELETE", f"instances/{_seg(name)}")

    # -- failures ----------------------------------------------------------------------

    def report_failure(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", "failures", json=dict(report))

    def list_failures(
        self,
        *,
        status: str | None = None,
        room: str | None = None,
        sender: str | None = None,
        limit: int | None = None,
        per_sender: int | None = None,
    ) -> list[dict[str, Any]]:
        params = _params(
            status=status, room=room, limit=limit, per_sender=per_sender, **{"from": sender}
        )
        return self._json("GET", "failures", params=params)["failures"]

    def failure_counts(
        self, *, room: str | None = None, sender: str | None = None
    ) -> list[dict[str, Any]]:
        """Open and resolved reports per sender (a participant: its own)."""
        params = _params(room=room, limit=1, **{"from": sender})
        return self._json("GET", "failures", params=params)["senders"]

    def get_failure(self, message_id: str, sender: str | None = None) -> dict[str, Any]:
        """A report; ``sender`` names whose when several senders reported one id (admin)."""
        return self._json("GET", f"failures/{_seg(message_id)}", params=_params(**{"from": sender}))

    def resolve_failure(
        self, message_id: str, note: str, sender: str | None = None
    ) -> dict[str, Any]:
        return self._json(
            "POST",
            f"failures/{_seg(message_id)}/resolve",
            json={"note": note},
            params=_params(**{"from": sender}),
        )

    # -- plumbing ----------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(path.split("/")[0], method, path, _accept_json, **kwargs)

    def _call(
        self,
        call: str,
        method: str,
        path: str,
        accept: Callable[[requests.Response], Any],
        *,
        timeout: Timeout | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """``accept(answer)`` of the first base URL that gives a usable one, from the
        current one on; ``call`` names the call to ``on_failure``."""
        tried: list[tuple[str, Exception]] = []

        def attempt(base: str) -> Any:
            resp = self.session.request(
                method,
                f"{base}/{path}",
                allow_redirects=False,
                timeout=_within(deadline, timeout or self.timeout),
                **kwargs,
            )
            if resp.status_code != 304 and not 200 <= resp.status_code < 300:
                raise HomeRefused(
                    read_problem(resp.status_code, resp.headers, resp.content, resp.reason or "")
                )
            return accept(resp)

        def passes_on(base: str, exc: Exception) -> bool:
            tried.append((base, exc))
            if self.on_failure is not None:
                self.on_failure(call, base, exc)
            return self.any_failure_fails_over or isinstance(
                exc, requests.ConnectionError | requests.Timeout
            )

        try:
            return self.failover.call(attempt, passes_on)
        except requests.RequestException as exc:
            raise Unavailable(_unreachable(tried), code="home-unreachable") from exc
        except OSError as exc:  # requests reads the certificate files only when it sends
            raise DmrError(f"cannot use the TLS files: {exc}", code="tls-file-missing") from exc


def _accept_json(resp: requests.Response) -> Any:
    if resp.status_code in (204, 304):
        return None
    try:
        return resp.json()
    except ValueError as exc:  # e.g. a proxy's HTML page: something in between is wrong
        raise Unavailable(
            f"home at {resp.url} answered {resp.status_code} without JSON", code="home-bad-answer"
        ) from exc


def _within(deadline: float | None, timeout: Timeout) -> Timeout | TimeoutSauce:
    """``timeout``, or with a deadline what is left of it for connecting and reading
    together (requests passes urllib3's Timeout on as it is)."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("no time left to reach home", code="home-unreachable")
    return TimeoutSauce(total=left)


def _unreachable(tried: list[tuple[str, Exception]]) -> str:
    if len(tried) == 1:
        return f"home at {tried[0][0]} is unreachable: {tried[0][1]}"
    return "home is unreachable through " + "; ".join(f"{b} ({e})" for b, e in tried)


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")
