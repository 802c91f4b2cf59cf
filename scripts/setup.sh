#!/usr/bin/env bash
# Installs what dmr-appliance needs on a fresh Debian 12 machine (run as root), idempotently:
# Debian packages, then three virtualenvs with the package installed in editable mode:
#   .venv           current PyPI releases
#   .venv-debian12  the versions Debian 12 ships (requirements/debian12.txt)
#   .venv-debian13  the versions Debian 13 ships (requirements/debian13.txt), on this machine's Python
# Options: --test adds the test tools; --system adds what the container tests need (docker, debootstrap, debhelper).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_system=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --system) want_system=1 ;;
    *) echo "setup.sh: unknown option $arg (use --test and/or --system)" >&2; exit 2 ;;
  esac
done

export DEBIAN_FRONTEND=noninteractive
# wrk: the load generator of benchmarks/relay_wrk.py (its smoke test runs in the suite).
# prometheus-nginx-exporter: the router's figures, which the local stack serves when present.
apt_pkgs=(python3 python3-venv python3-dev nginx openssl ca-certificates curl wrk
  prometheus-nginx-exporter)
# prometheus: promtool checks and unit-tests the alert rules; chromium renders the status page.
# postgresql, the release's own (15 on Debian 12, 17 on Debian 13), and libpq5, which psycopg
# loads: home's tests on PostgreSQL start their own server from its binaries
# (dmr_appliance/local/postgres.py); no cluster is started.
[ "$want_test" = 1 ] && apt_pkgs+=(prometheus chromium postgresql libpq5)
[ "$want_system" = 1 ] && apt_pkgs+=(docker.io debootstrap debhelper dh-python python3-all python3-setuptools
  lintian gnupg apt-utils pybuild-plugin-pyproject python3-build python3-wheel python3-falcon python3-gunicorn python3-jwt
  python3-cryptography python3-requests python3-urllib3 python3-jinja2 python3-prometheus-client fakeroot build-essential)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # nginx must not start as a system service here: the stack runs its own instance.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

make_venv() {  # make_venv DIR SETUPTOOLS_SPEC [pip args...]
  local dir=$1 setuptools=$2; shift 2
  if [ ! -x "$dir/bin/python" ]; then
    echo "setup: creating $dir"
    /usr/bin/python3 -m venv "$dir"
  fi
  "$dir/bin/pip" install -q --disable-pip-version-check --upgrade pip "$setuptools" wheel
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
}

test_reqs=()
[ "$want_test" = 1 ] && test_reqs=(-r requirements/test.txt)
make_venv .venv setuptools -e . "${test_reqs[@]}"
if [ "$want_test" = 1 ]; then
  # gunicorn 20.1 imports pkg_resources, gone from setuptools 81; Debian 12 ships 66.
  make_venv .venv-debian12 "setuptools<81" -r requirements/debian12.txt "${test_reqs[@]}"
  .venv-debian12/bin/pip install -q --disable-pip-version-check --no-deps -e .
  # Debian 13 ships setuptools 78.1.1 (pinned in its file).
  make_venv .venv-debian13 "setuptools==78.1.1" -r requirements/debian13.txt "${test_reqs[@]}"
  .venv-debian13/bin/pip install -q --disable-pip-version-check --no-deps -e .
fi
echo "setup: done"
