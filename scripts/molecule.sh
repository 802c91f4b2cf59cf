#!/usr/bin/env bash
# The Ansible roles' test suite: lint, the supported-release check, every role's Molecule
# scenarios on Debian 13, the whole site on seven Debian 12 hosts (molecule/site: faults,
# central logs, firewall, a rolling upgrade) and on one fresh Debian 13 container from the
# collection dmr.appliance (its local inventory), and home on PostgreSQL under Patroni
# with its failovers (molecule/home_ha, eight Debian 13 hosts). Run as root:
#
#   bash scripts/molecule.sh [ROLE|site|home_ha...]      e.g. bash scripts/molecule.sh dmr_router
#
# It makes (or reuses) .venv-ansible with ansible, molecule, molecule-plugins[docker],
# pytest-testinfra, ansible-lint, yamllint and this project (the control node's `dmr pki`),
# builds the Debian 13 and 12 systemd images once per machine (tests/system/image.sh), the
# release once per run (scripts/release.sh into build/molecule/release/: the wheel, the
# .deb every scenario installs, the collection the site-local test installs from its
# tarball, the image, loaded and run; SHA256SUMS checked), then runs ansible-lint and
# yamllint, every scenario of every role (the default, then the others: dmr_package's repo installs from
# the signed apt repository built by packaging/build-repo.sh), home_ha and the one-host
# site, two at a time in two phases whose containers never share a name (docker driver: converge,
# idempotence, verify with testinfra: a check-mode pass with no change, the bad-input
# cases; then destroy), and the seven-host site alone. Logs: build/molecule/logs/.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
# Needs the tools of scripts/setup.sh --system (docker.io, debootstrap, debhelper, lintian).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/.venv-ansible
OUT=$ROOT/build/molecule
LOGS=$OUT/logs
passed=0 failed=0
failures=()

say() { printf 'molecule.sh: %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - $1 ))s; }
record() {  # record NAME RC SECONDS_START [SECONDS_END]
  local took="$(( ${4:-$(date +%s)} - $3 ))s"
  grep -E "^$1: " "$LOGS/$1.log" 2>/dev/null | sed 's/^/    /'  # its figures, if it prints any
  if [ "$2" = 0 ]; then
    passed=$((passed + 1)); say "PASS $1 ($took)"
  else
    failed=$((failed + 1)); failures+=("$1"); say "FAIL $1 ($took); log: $LOGS/$1.log"
    # pytest's verdicts first: the log's tail is mostly molecule's destroy play
    grep -E '^\s*(E   |FAILED [^-]|ERROR at )' "$LOGS/$1.log" | head -n 40 | sed 's/^/    /'
    tail -n 25 "$LOGS/$1.log" | sed 's/^/    /'
  fi
}
finish() {
  [ ${#failures[@]} -gt 0 ] && say "failed: ${failures[*]}"
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}

mkdir -p "$LOGS"
started=$(date +%s)

# --- tools ------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  /usr/bin/python3 -m venv "$VENV" || { failed=1; failures+=(venv); finish; }
fi
"$VENV/bin/pip" install -q --disable-pip-version-check ansible molecule 'molecule-plugins[docker]' \
  pytest-testinfra ansible-lint yamllint -e "$ROOT" >"$LOGS/venv.log" 2>&1 \
  || { cat "$LOGS/venv.log"; failed=1; failures+=(venv); finish; }
# Run by its full path (.venv-ansible/bin/ansible-lint), ansible-lint finds its bin/ off
# PATH, puts it there itself and warns "PATH altered": its entry point puts it there first,
# as activating the virtualenv would. (pip writes the entry point again on an upgrade.)
DSA_WARNING="ignore:DSA is deprecated"  # see the comment in the entry point below
cat >"$VENV/bin/ansible-lint" <<EOF
#!$VENV/bin/python3
# Written by scripts/molecule.sh: ansible-lint with this virtualenv's bin/ first on PATH.
import os
import sys
import warnings

os.environ["PATH"] = os.pathsep.join(["$VENV/bin", os.environ.get("PATH", "")])
# ansible's own SSH agent module imports DSA, which cryptography 51 deprecates: not ours to
# change, and ansible-lint (which records every warning while it runs) would report it as
# one of this project's. So ansible.cli is imported first with that one warning ignored
# (a module warns only on its first import), and child processes ignore it too.
os.environ["PYTHONWARNINGS"] = "$DSA_WARNING"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import ansible.cli  # noqa: F401
from ansiblelint.__main__ import _run_cli_entrypoint

sys.exit(_run_cli_entrypoint())
EOF
export PATH="$VENV/bin:$PATH"
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE=1 ANSIBLE_FORCE_COLOR=false PY_COLORS=0 NO_COLOR=1
export PYTHONWARNINGS="$DSA_WARNING"  # molecule's ansible-playbook runs too

# The roles' scenarios and the one-host site run on Debian 13 (stable), the seven-host
# site on Debian 12 (oldstable): each release converges the whole site once.
for release in trixie bookworm; do
  tag=$(tests/system/image.sh --release "$release" 2>"$LOGS/image-$release.log" | tail -n 1) \
    || { cat "$LOGS/image-$release.log"; failed=1; failures+=("image-$release"); finish; }
  printf -v "image_$release" %s "$tag"
done

# The release, as scripts/release.sh builds it: every scenario installs its .deb, the
# site-local test its collection; its image is loaded and run once here.
say "building the release (scripts/release.sh: wheel, .deb, collection, image)"
rm -rf "$OUT/release"
{ scripts/release.sh --allow-dirty --out "$OUT/release" \
    && (cd "$OUT/release" && sha256sum --quiet -c SHA256SUMS) \
    && loaded=$(docker load -q -i "$OUT"/release/dmr-appliance_*_image.tar.gz) \
    && docker run --rm "${loaded#Loaded image: }" --version; } >"$LOGS/release.log" 2>&1 \
  || { cat "$LOGS/release.log"; failed=1; failures+=(release); finish; }
DMR_MOLECULE_DEB=$(ls "$OUT"/release/dmr-appliance_*_all.deb | head -n 1)
DMR_MOLECULE_COLLECTION=$(ls "$OUT"/release/dmr-appliance-*.tar.gz | head -n 1)
export DMR_MOLECULE_DEB DMR_MOLECULE_COLLECTION
say "tools ready in $(elapsed "$started"): $image_trixie, $image_bookworm, $(basename "$DMR_MOLECULE_DEB"), $(basename "$DMR_MOLECULE_COLLECTION")"

# --- lint -------------------------------------------------------------------------------------
t=$(date +%s); ansible-lint >"$LOGS/ansible-lint.log" 2>&1; record ansible-lint $? "$t"
t=$(date +%s); yamllint . >"$LOGS/yamllint.log" 2>&1; record yamllint $? "$t"
# The control node's dmr-pki-renew.service runs ansible-playbook, which only this venv has.
t=$(date +%s)
DMR_NEEDS_ANSIBLE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  "tests/unit/test_crl_lifecycle.py::test_the_service_command_is_a_valid_playbook_run_that_renews_and_re_signs" \
  >"$LOGS/pki-renew.log" 2>&1
record pki-renew-playbook $? "$t"
# The release tests skip in scripts/test.sh's pytest runs on a fresh machine (no Ansible
# there yet): here they must run, with the collection's tools of this venv.
t=$(date +%s)
DMR_NEEDS_ANSIBLE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/integration/test_release_run.py >"$LOGS/release-run.log" 2>&1
record release-run $? "$t"
# Debian 12 and 13 pass dmr_package's release check; Debian 11 and Ubuntu stop the site.
t=$(date +%s)
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/molecule/platforms.py \
  >"$LOGS/platforms.log" 2>&1
record platforms $? "$t"

# --- every role's scenarios, on Debian 13 --------------------------------------------------
# scenario SPEC: runs one (ROLE for its default scenario, ROLE:SCENARIO for another, or
# site-local) and appends "NAME RC START END" to $OUT/results; recorded after its phase.
scenario() {
  local spec=$1 name t rc
  t=$(date +%s)
  case "$spec" in
    home_ha)  # molecule/home_ha: home on PostgreSQL under Patroni, its failovers
      name=home_ha
      DMR_TEST_IMAGE=$image_trixie molecule test -s home_ha >"$LOGS/$name.log" 2>&1 ;;
    site-local)
      name=site-local
      DMR_TEST_IMAGE=$image_trixie pytest -p no:cacheprovider tests/molecule/site_local.py \
        >"$LOGS/$name.log" 2>&1 ;;
    *:*)
      name=${spec%%:*}-${spec#*:}
      (cd "roles/${spec%%:*}" && DMR_TEST_IMAGE=$image_trixie molecule test -s "${spec#*:}") \
        >"$LOGS/$name.log" 2>&1 ;;
    *)
      name=$spec
      (cd "roles/$spec" && DMR_TEST_IMAGE=$image_trixie molecule test) >"$LOGS/$name.log" 2>&1 ;;
  esac
  rc=$?
  echo "$name $rc $t $(date +%s)" >>"$OUT/results"
}
# phase "SPEC..." "SPEC..." ...: each argument is a lane, its scenarios one after another;
# the lanes run side by side (two cores; most of a scenario's time is apt and systemd).
phase() {
  local lane spec name rc t0 t1
  : >"$OUT/results"
  for lane in "$@"; do
    # shellcheck disable=SC2086  # a lane is a list of words
    (for spec in $lane; do scenario "$spec"; done) &
  done
  wait
  while read -r name rc t0 t1; do record "$name" "$rc" "$t0" "$t1"; done <"$OUT/results"
}
# Each role's default scenario, then its others (dmr_package's repo: installs from the
# signed repository build-repo.sh makes, served over HTTPS).
specs_of() {
  local role=$1 dir
  echo "$role"
  for dir in "roles/$role"/molecule/*/; do
    [ "$(basename "$dir")" = default ] || echo "$role:$(basename "$dir")"
  done
}
if [ $# = 0 ]; then
  # Two lanes whose containers never share a name (dmr_router's scenario runs home,
  # relay-1 and router, as dmr_home's and dmr_relay's do: those wait for the next phase;
  # home_ha's hosts are all ha-*), of about the same length in each phase (home_ha, eight
  # hosts, about as long as the three beside it). The plan must hold every role scenario.
  plan=("dmr_router dmr_package dmr_package:repo" "home_ha" "dmr_pki dmr_home" "site-local dmr_relay")
  all=$(for dir in roles/*/molecule/*/; do specs_of "$(basename "${dir%/molecule/*/}")"; done | sort -u)
  planned=$(printf '%s\n' "${plan[@]}" | tr ' ' '\n' | grep -Ev '^(site-local|home_ha)$' | sort -u)
  if [ "$all" != "$planned" ]; then
    say "the scenario plan misses: $(comm -23 <(echo "$all") <(echo "$planned") | tr '\n' ' ')"
    failed=$((failed + 1)); failures+=(plan)
  fi
  phase "${plan[0]}" "${plan[1]}"
  phase "${plan[2]}" "${plan[3]}"
  run_site=1
else
  run_site=0
  for role in "$@"; do
    if [ "$role" = site ]; then run_site=1; continue; fi  # both site tests
    if [ "$role" = home_ha ]; then phase home_ha; continue; fi
    for spec in $(specs_of "$role"); do phase "$spec"; done
  done
  [ "$run_site" = 1 ] && phase site-local
fi

# --- the whole site on seven hosts: faults, central logs, firewall, a rolling upgrade --------
# (molecule/site at the root). upgrade.yml installs a rebuilt package of a higher version.
if [ "$run_site" = 1 ]; then
  t=$(date +%s)
  upstream=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' dmr_appliance/__init__.py)
  rm -rf "$OUT/deb-next"
  if packaging/build-deb.sh --deb-only --version "$upstream+site1" --out "$OUT/deb-next" \
      >"$LOGS/deb-next.log" 2>&1; then
    DMR_MOLECULE_DEB_NEXT=$(ls "$OUT"/deb-next/dmr-appliance_*_all.deb | head -n 1)
    export DMR_MOLECULE_DEB_NEXT
    DMR_TEST_IMAGE=$image_bookworm molecule test -s site >"$LOGS/site.log" 2>&1
    rc=$?
    grep -E '^site: ' "$LOGS/site.log" | sed 's/^/    /'
    record site "$rc" "$t"
  else
    cat "$LOGS/deb-next.log"; record site 1 "$t"
  fi
fi

say "total $(elapsed "$started")"
finish
