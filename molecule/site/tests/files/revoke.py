"""On router 1, as the admin: revoke a participant at home; print the Unix time the
request left (what the relays' delays are measured from)."""

import sys
import time

from dmr_appliance.client import HomeClient

PKI = "/etc/dmr-appliance/pki"
home = HomeClient(
    "https://127.0.0.1:8443/v1/home",
    cert=f"{PKI}/admin/admin.pem",
    key=f"{PKI}/admin/admin.key",
    ca=f"{PKI}/ca.pem",
)
home.list_keys()  # the TLS connection is up before the clock starts
sent = time.time()
home.set_participant_status(sys.argv[1], "revoke")
print(f"{sent:.3f}")
