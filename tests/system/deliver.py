"""Runs inside the test container, with the packaged dmr_appliance and Debian's requests:
registers two participants through the router as the admin, obtains alice's access
token and bob's address card from home, and sends one message from alice to bob
through nginx. Prints one JSON line: the message id and the relay's answer.

Usage: python3 deliver.py ROUTER_URL PKI_DIR [ENDPOINT]  (exit 0 only when bob's endpoint
got it; ENDPOINT/<participant> is each participant's endpoint, ENDPOINT defaults to
https://localhost:9443/inbox: the demo recipient names the participant by the path's end)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import requests

from dmr_appliance.envelope import build_envelope

RECIPIENT_ENDPOINT = "https://localhost:9443/inbox"
ROOM = "lobby"
READY_WITHIN = 45.0  # seconds for the relay's first sync document


def main(router: str, pki: Path, endpoint: str = RECIPIENT_ENDPOINT) -> int:
    ca = str(pki / "ca.pem")

    def as_(kind: str, name: str) -> requests.Session:
        session = requests.Session()
        session.verify = ca
        session.cert = (str(pki / kind / f"{name}.pem"), str(pki / kind / f"{name}.key"))
        return session

    admin, alice = as_("admin", "admin"), as_("participant", "alice")
    for pid in ("alice", "bob"):
        answer = admin.post(
            f"{router}/v1/home/participants",
            timeout=10,
            json={"id": pid, "endpoint": f"{endpoint}/{pid}", "rooms": [ROOM]},
        )
        if answer.status_code not in (200, 201, 409):
            return fail("create participant", answer)

    answer = alice.post(f"{router}/v1/home/tokens", timeout=10)
    if answer.status_code != 201:
        return fail("access token", answer)
    token = answer.json()["access_token"]
    answer = alice.get(f"{router}/v1/home/cards/bob", timeout=10)
    if answer.status_code != 200:
        return fail("address card", answer)
    card = answer.json()["card"]

    envelope = build_envelope(
        room=ROOM,
        sender="alice",
        cards=[card],
        payload={"text": "hello from the Debian package test"},
    )
    deadline = time.monotonic() + READY_WITHIN
    while True:  # 503: the relay has no sync document yet (nothing was delivered)
        answer = alice.post(
            f"{router}/v1/messages",
            json=envelope,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    if answer.status_code != 200:
        return fail("send", answer)
    print(
        json.dumps(
            {"message_id": envelope["id"], "status": answer.status_code, "answer": answer.json()}
        )
    )
    return 0


def fail(step: str, answer: requests.Response) -> int:
    print(f"{step}: HTTP {answer.status_code}: {answer.text[:2000]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4]))
