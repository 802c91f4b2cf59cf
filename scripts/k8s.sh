#!/usr/bin/env bash
# The Kubernetes manifests' suite (tests/k8s): kustomize renders, strict schemas, checkov,
# the project's own rules and their negative cases, then the image run as the manifests say.
# Makes (or reuses) .venv-k8s from requirements/k8s.txt, builds the image from a fresh .deb
# as a release does (packaging/build-image.sh: on Debian 13 slim, made from Debian's mirror
# by packaging/build-base.sh where no registry is reachable), and runs pytest there.
# Needs the tools of scripts/setup.sh --system (docker, debootstrap).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/.venv-k8s
say() { printf 'k8s.sh: %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || { say "creating $VENV"; /usr/bin/python3 -m venv "$VENV"; }
mkdir -p build
# One resolver run: the project's own dependencies and the tools' pins must agree.
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/k8s.txt -e . \
  >build/k8s-venv.log 2>&1 || { cat build/k8s-venv.log; exit 1; }

image=$(packaging/build-image.sh --tag k8s-dmr-appliance | tail -n 1)
say "image $image ($("${DOCKER:-/usr/bin/docker}" run --rm --entrypoint sh "$image" -c '. /etc/os-release; echo "$PRETTY_NAME"'))"
DMR_K8S_TESTS=1 DMR_K8S_IMAGE=$image \
  "$VENV/bin/python" -m pytest -q -m k8s -p no:cacheprovider -rA tests/k8s "$@"
