#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what is needed, then run
# the complete local stack on loopback (home, relays, nginx router, a recipient) and the
# demo: participants, a batch of messages, a relay killed midway, a revocation, a tally.
# Extra arguments go to `dmr demo` (e.g. --json, --messages 500, --relays 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec .venv/bin/dmr demo "$@"
