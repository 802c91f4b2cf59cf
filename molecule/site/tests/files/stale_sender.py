"""On the participants' host: mallory's Sender sends one message (it now holds a token and
bob's card), writes READY, waits for GO, then sends COUNT more with those same
credentials, one at a time: what reaches the relays after home revoked her. One JSON
result per message after the first in OUT.

Usage: python3 stale_sender.py COUNT READY GO OUT ROUTER_URL...
"""

import json
import sys
import time
from pathlib import Path

from dmr_appliance.client import Sender

PKI = "/etc/dmr-appliance/pki"
count, ready, go, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
sender = Sender(
    sys.argv[5:],
    cert=f"{PKI}/participant/mallory.pem",
    key=f"{PKI}/participant/mallory.key",
    ca=f"{PKI}/ca.pem",
)
first = sender.send("lobby", ["bob"], {"step": 4, "n": "before"})
ready.write_text(json.dumps(first.to_json()))
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
with out.open("w") as results:
    for n in range(count):
        result = sender.send("lobby", ["bob"], {"step": 4, "n": n})
        results.write(json.dumps(result.to_json()) + "\n")
sender.close()
