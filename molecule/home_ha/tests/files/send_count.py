"""On the participants' host: alice sends COUNT messages to bob through the routers at RATE
a second (one Sender: its token and bob's card are renewed when they expire); one JSON
result per message in OUT, then a line {"renewals": {...}} when the Sender counts them.

Usage: python3 send_count.py COUNT RATE OUT ROUTER_URL...
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dmr_appliance.client import Sender

PKI = "/etc/dmr-appliance/pki"
count, rate, out = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
lock = threading.Lock()
sender = Sender(
    sys.argv[4:],
    cert=f"{PKI}/participant/alice.pem",
    key=f"{PKI}/participant/alice.key",
    ca=f"{PKI}/ca.pem",
)


def one(n: int) -> None:
    result = sender.send("lobby", ["bob"], {"ha": n})
    with lock, out.open("a") as fh:
        fh.write(json.dumps(result.to_json()) + "\n")


began = time.monotonic()
with ThreadPoolExecutor(max_workers=16) as pool:
    for n in range(count):
        pool.submit(one, n)
        time.sleep(max(0.0, began + (n + 1) / rate - time.monotonic()))
sender.close()
