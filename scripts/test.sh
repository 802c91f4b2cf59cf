#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
#   ruff (lint and format); pytest on today's PyPI releases (.venv); pytest on Debian 12's and
#   Debian 13's versions (.venv-debian12, .venv-debian13); then the system tests (Debian
#   package in a systemd container), the Kubernetes manifests and image (scripts/k8s.sh), then
#   the Ansible roles (scripts/molecule.sh: lint, one Molecule scenario per role, the local site).
# Set DMR_SKIP_SYSTEM=1 to leave out the container tests on a machine without docker.
set -euo pipefail
cd "$(dirname "$0")/.."

system=1
[ "${DMR_SKIP_SYSTEM:-0}" = 1 ] && system=0
if [ "$system" = 1 ]; then bash scripts/setup.sh --test --system; else bash scripts/setup.sh --test; fi

# setup.sh --test installed postgresql and psycopg in every venv: home's tests on
# PostgreSQL must run, a skip of them is a failure (tests/conftest.py, ``postgres``).
export DMR_NEEDS_POSTGRESQL=1

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

# Each run uses every core (pytest-xdist); --dist loadfile keeps a module's tests on one
# worker, since the integration modules share a local stack (or home) started per module.
echo "== pytest: current PyPI releases (.venv), with the tests marked once"
.venv/bin/python -m pytest -q -m "not system" -p no:cacheprovider -n auto --dist loadfile

# The pinned sets leave out the tests marked `once` (setup.cfg): their subject does not
# depend on the pinned versions (long whole-stack runs, nginx's routing, stdlib-only
# properties, the release's build) and faster tests cover their library-sensitive paths on
# every set; they run in the .venv run above only, so that three sets take about the time
# two took.
echo "== pytest: Debian 12 versions (.venv-debian12)"
.venv-debian12/bin/python -m pytest -q -m "not system and not once" -p no:cacheprovider -n auto --dist loadfile

echo "== pytest: Debian 13 versions (.venv-debian13)"
.venv-debian13/bin/python -m pytest -q -m "not system and not once" -p no:cacheprovider -n auto --dist loadfile

if [ "$system" = 1 ]; then
  echo "== pytest: system tests (the Debian package in Debian 12 and Debian 13 systemd containers)"
  # Debian 12 and Debian 13 side by side, one xdist worker each (their xdist groups); the
  # package and its repository are built once, by whichever worker asks first.
  .venv/bin/python -m pytest -q -m system -p no:cacheprovider -s -n 2 --dist loadgroup tests/system
  echo "== Kubernetes: manifests validated offline, the image run as they say (scripts/k8s.sh)"
  bash scripts/k8s.sh
  echo "== Ansible roles: lint, Molecule scenarios, the local site (scripts/molecule.sh)"
  bash scripts/molecule.sh
fi
