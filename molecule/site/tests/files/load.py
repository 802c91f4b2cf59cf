"""On the participants' host: alice sends to bob at RATE messages a second through the
routers (Sender: retries, failover, failure reports) until the file STOP exists, then
waits for every send to end; one JSON result per message in OUT.

Usage: python3 load.py --rate 10 --out FILE --stop FILE ROUTER_URL...
"""

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dmr_appliance.client import Sender

PKI = "/etc/dmr-appliance/pki"

parser = argparse.ArgumentParser()
parser.add_argument("--rate", type=float, default=10.0)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--stop", type=Path, required=True)
parser.add_argument("routers", nargs="+")
args = parser.parse_args()

lock = threading.Lock()
sender = Sender(
    args.routers,
    cert=f"{PKI}/participant/alice.pem",
    key=f"{PKI}/participant/alice.key",
    ca=f"{PKI}/ca.pem",
)


def one(n: int) -> None:
    result = sender.send("lobby", ["bob"], {"load": n})
    with lock, args.out.open("a") as out:
        out.write(json.dumps(result.to_json()) + "\n")


with ThreadPoolExecutor(max_workers=32) as pool:
    n, began = 0, time.monotonic()
    while not args.stop.exists():
        pool.submit(one, n)
        n += 1
        time.sleep(max(0.0, began + n / args.rate - time.monotonic()))
sender.close()
