"""``HomeClient``: every home API call over HTTPS with the caller's client certificate.

Used by the admin CLI and the sender SDK. ``base_url`` is where home's ``/v1`` lives:
through the router that is ``https://ROUTER/v1/home`` (the router maps
``/v1/home/<rest>`` to home's ``/v1/<rest>``). Given several (one per router), a call
that cannot reach one (a refused or timed-out connection) goes to the next, and the
client keeps to the one that answered. A refusal from home becomes the ``DmrError`` its
problem document describes; a network failure everywhere becomes ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from dmr_appliance.client import mtls
from dmr_appliance.errors import PROBLEM_BASE, DmrError, Unavailable
from dmr_appliance.wire.failover import Failover

DEFAULT_TIMEOUT = 10.0


class HomeClient:
    def __init__(self, base_url: str | Sequence[str], *, cert: Path | str, key: Path | str,
                 ca: Path | str, timeout: float = DEFAULT_TIMEOUT,
                 headers: Mapping[str, str] | None = None,
                 session: requests.Session | None = None) -> None:
        self.failover = Failover([base_url] if isinstance(base_url, str) else base_url)
        self.timeout = timeout
        # Given a session, the caller made it (mtls.session with the same certificate).
        self.session = session or mtls.session(ca, cert, key)
        self.session.headers.update(headers or {})

    @property
    def base_url(self) -> str:
        """The base URL calls go to now (the last one that answered)."""
        return self.failover.current

    # -- participants (admin) ----------------------------------------------------------

    def create_participant(self, pid: str, endpoint: str, rooms: list[str]) -> dict[str, Any]:
        return self._call("POST", "participants",
                          json={"id": pid, "endpoint": endpoint, "rooms": rooms})

    def list_participants(self, *, status: str | None = None,
                          room: str | None = None) -> list[dict[str, Any]]:
        params = _params(status=status, room=room)
        return self._call("GET", "participants", params=params)["participants"]

    def get_participant(self, pid: str) -> dict[str, Any]:
        return self._call("GET", f"participants/{_seg(pid)}")

    def set_participant_status(self, pid: str, action: str) -> dict[str, Any]:
        """``action``: suspend, reinstate or revoke (permanent)."""
        return self._call("POST", f"participants/{_seg(pid)}/{_seg(action)}")

    def delete_participant(self, pid: str) -> None:
        self._call("DELETE", f"participants/{_seg(pid)}")

    # -- tokens, cards, keys -----------------------------------------------------------

    def issue_token(self, *, participant: str | None = None, certificate: str | None = None,
                    lifetime: int | None = None) -> dict[str, Any]:
        """A participant asks with no arguments; an admin names the participant and sends
        its certificate (PEM), which home checks against the CA and CRL."""
        body = _params(participant=participant, certificate=certificate, lifetime=lifetime)
        return self._call("POST", "tokens", json=body or None)

    def revoke_token(self, jti: str) -> dict[str, Any]:
        return self._call("POST", f"tokens/{_seg(jti)}/revoke")

    def get_card(self, pid: str) -> dict[str, Any]:
        return self._call("GET", f"cards/{_seg(pid)}")

    def list_keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "keys")["keys"]

    def rotate_keys(self) -> dict[str, Any]:
        return self._call("POST", "keys/rotate")

    def jwks(self) -> dict[str, Any]:
        return self._call("GET", "jwks")

    # -- relays: sync and heartbeats ---------------------------------------------------

    def sync(self, *, version: int | None = None, wait: int = 0) -> dict[str, Any] | None:
        """The sync document, or None if it is still ``version`` after ``wait`` seconds."""
        headers = {"If-None-Match": f'"{version}"'} if version is not None else {}
        params = {"wait": wait} if wait else None
        return self._call("GET", "sync", params=params, headers=headers,
                          timeout=self.timeout + wait)

    def heartbeat(self, *, instance: str, address: str, version: str, sync_version: int,
                  counters: Mapping[str, int] | None = None) -> dict[str, Any]:
        return self._call("POST", "heartbeats", json={
            "instance": instance, "address": address, "version": version,
            "sync_version": sync_version, "counters": dict(counters or {})})

    def list_instances(self) -> list[dict[str, Any]]:
        return self._call("GET", "instances")["instances"]

    def forget_instance(self, name: str) -> None:
        self._call("DELETE", f"instances/{_seg(name)}")

    # -- failures ----------------------------------------------------------------------

    def report_failure(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "failures", json=dict(report))

    def list_failures(self, *, status: str | None = None, room: str | None = None,
                      sender: str | None = None, limit: int | None = None,
                      per_sender: int | None = None) -> list[dict[str, Any]]:
        params = _params(status=status, room=room, limit=limit, per_sender=per_sender,
                         **{"from": sender})
        return self._call("GET", "failures", params=params)["failures"]

    def failure_counts(self, *, room: str | None = None, sender: str | None = None
                       ) -> list[dict[str, Any]]:
        """Open and resolved reports per sender (a participant: its own)."""
        params = _params(room=room, limit=1, **{"from": sender})
        return self._call("GET", "failures", params=params)["senders"]

    def get_failure(self, message_id: str, sender: str | None = None) -> dict[str, Any]:
        """A report; ``sender`` names whose when several senders reported one id (admin)."""
        return self._call("GET", f"failures/{_seg(message_id)}",
                          params=_params(**{"from": sender}))

    def resolve_failure(self, message_id: str, note: str, sender: str | None = None
                        ) -> dict[str, Any]:
        return self._call("POST", f"failures/{_seg(message_id)}/resolve", json={"note": note},
                          params=_params(**{"from": sender}))

    # -- plumbing ----------------------------------------------------------------------

    def _call(self, method: str, path: str, *, timeout: float | None = None,
              **kwargs: Any) -> Any:
        resp = self._send(method, path, timeout or self.timeout, kwargs)
        if resp.status_code in (204, 304):
            return None
        if not resp.ok:
            raise _refusal(resp)
        try:
            return resp.json()
        except ValueError as exc:  # e.g. a proxy's HTML page: something in between is wrong
            raise Unavailable(f"home at {self.base_url} answered {resp.status_code} without"
                              " JSON", code="home-bad-answer") from exc

    def _send(self, method: str, path: str, timeout: float,
              kwargs: dict[str, Any]) -> requests.Response:
        """The answer of the first base URL that gives one, from the current one on."""
        tried: list[tuple[str, Exception]] = []

        def passes_on(base: str, exc: Exception) -> bool:
            tried.append((base, exc))  # a connection that never reached home: the next
            return isinstance(exc, requests.ConnectionError | requests.Timeout)

        def request(base: str) -> requests.Response:
            return self.session.request(method, f"{base}/{path}", timeout=timeout, **kwargs)

        try:
            return self.failover.call(request, passes_on)
        except requests.RequestException as exc:
            if len(tried) == 1:
                detail = f"home at {tried[0][0]} is unreachable: {tried[0][1]}"
            else:
                detail = "home is unreachable through " + "; ".join(f"{b} ({e})" for b, e in tried)
            raise Unavailable(detail, code="home-unreachable") from exc
        except OSError as exc:  # requests checks the certificate files only when it sends
            raise DmrError(f"cannot use the TLS files: {exc}", code="tls-file-missing") from exc


def _refusal(resp: requests.Response) -> DmrError:
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    problem = str(doc.get("type", ""))
    code = problem[len(PROBLEM_BASE):] if problem.startswith(PROBLEM_BASE) else "home-error"
    detail = doc.get("detail") or f"home answered {resp.status_code} {resp.reason}"
    return DmrError(str(detail), code=code, status=resp.status_code,
                    title=str(doc.get("title") or resp.reason))


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")
