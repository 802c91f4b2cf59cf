"""On a relay host: poll the relay's /readyz over its unix socket every 10 ms until its sync
version passes BEFORE; print the Unix time it did (the hosts share one clock)."""

import json
import sys
import time

from dmr_appliance import config, serving

before = int(sys.argv[1])
socket = config.load(config.RelayConfig, "/etc/dmr-appliance/relay.toml").gate.socket
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        status, body = serving.unix_get(socket, "/readyz", 1.0)
        if status == 200 and json.loads(body)["sync_version"] > before:
            print(f"{time.time():.3f}", flush=True)
            sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(0.01)
sys.exit(1)
