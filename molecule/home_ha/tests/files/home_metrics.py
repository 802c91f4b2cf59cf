"""On a home host: home's request counts from its gunicorn's /metrics (unix socket,
bypassing the gate), as JSON {"tokens": N, "cards": N}: the 2xx answers to POST /v1/tokens
and GET /v1/cards/{pid} since home started."""

import json
import re

from dmr_appliance import config, serving

socket = config.load(config.HomeConfig, "/etc/dmr-appliance/home.toml").gate.socket
status, body = serving.unix_get(socket, "/metrics", 5.0)
assert status == 200, status
counts = {"tokens": 0, "cards": 0}
# The labels up to the last "} " (a route template has braces of its own: /v1/cards/{pid}).
line = re.compile(r"^dmr_home_request_duration_seconds_count\{(.*)\} ([0-9.e+]+)$", re.M)
for labels, value in line.findall(body.decode() if isinstance(body, bytes) else body):
    fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    if not fields.get("code", "").startswith("2"):
        continue
    if fields.get("route") == "/v1/tokens" and fields.get("method") == "POST":
        counts["tokens"] += int(float(value))
    if fields.get("route") == "/v1/cards/{pid}" and fields.get("method") == "GET":
        counts["cards"] += int(float(value))
print(json.dumps(counts))
