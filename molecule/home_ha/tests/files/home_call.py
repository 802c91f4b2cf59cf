"""On a host with the admin certificate: one admin call at one home URL (a home instance's
own gate, https://home-N:8700/v1, or a router's /v1/home); prints the Unix time the
request left, then the answer as JSON.

Usage: python3 home_call.py URL revoke PID | rotate | keys
"""

import json
import sys
import time

from dmr_appliance.client import HomeClient

PKI = "/etc/dmr-appliance/pki"
home = HomeClient(
    sys.argv[1],
    cert=f"{PKI}/admin/admin.pem",
    key=f"{PKI}/admin/admin.key",
    ca=f"{PKI}/ca.pem",
)
home.list_keys()  # the TLS connection is up before the clock starts
sent = time.time()
if sys.argv[2] == "revoke":
    answer = home.set_participant_status(sys.argv[3], "revoke")
elif sys.argv[2] == "rotate":
    answer = home.rotate_keys()
else:
    answer = home.list_keys()
print(f"{sent:.3f}")
print(json.dumps(answer))
