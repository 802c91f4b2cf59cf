"""On the router host, as the admin: an acknowledged write through the router every 0.2 s
(a new participant PREFIX-N) and a read of the failures, until the file STOP exists; one
JSON line per call in OUT: {"n", "started" and "t" (Unix times it began and ended), "ok",
"what", "error"}. What was acknowledged must be there afterwards.

Usage: python3 writes.py OUT STOP PREFIX   (each step its own prefix: ids never repeat)
"""

import json
import sys
import time
from pathlib import Path

from dmr_appliance.client import HomeClient

PKI = "/etc/dmr-appliance/pki"
INBOX = "https://ha-recipient:9443/inbox"
out, stop, prefix = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
home = HomeClient(
    "https://127.0.0.1:8443/v1/home",
    cert=f"{PKI}/admin/admin.pem",
    key=f"{PKI}/admin/admin.key",
    ca=f"{PKI}/ca.pem",
    timeout=(2, 10),
)
n = 0
while not stop.exists():
    for what in ("write", "read"):
        record = {"n": n, "what": what, "ok": True, "error": "", "started": round(time.time(), 3)}
        try:
            if what == "write":
                home.create_participant(f"{prefix}-{n}", f"{INBOX}/{prefix}", ["lobby"])
            else:
                home.list_failures(limit=1)
        except Exception as exc:  # every failure is a figure here
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
        record["t"] = round(time.time(), 3)
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    n += 1
    time.sleep(0.2)
