#!/usr/bin/env bash
# Builds the Ansible collection dmr.appliance (galaxy.yml) into a tarball and prints its
# path on the last line. It holds the roles (without their Molecule scenarios), the
# playbooks, the example and one-host inventories, meta/, docs/, README.md, LICENSE and
# CHANGELOG.md, copied from what git tracks or would track (a clone's files: never a CA key
# or anything else .gitignore excludes) into a staging folder, which
# `ansible-galaxy collection build` packs.
#
# Usage: scripts/build-collection.sh [--out DIR]
#   --out DIR  where dmr-appliance-VERSION.tar.gz goes (default dist/)
# Uses .venv-ansible's ansible-galaxy when it exists (scripts/molecule.sh makes it), else
# the one on PATH (Debian 12's ansible-core will do).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
out="$ROOT/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-collection.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

galaxy=$ROOT/.venv-ansible/bin/ansible-galaxy
[ -x "$galaxy" ] || galaxy=$(command -v ansible-galaxy) \
  || { echo "build-collection.sh: ansible-galaxy missing (apt install ansible-core)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
(
  cd "$ROOT"
  git ls-files -z --cached --others --exclude-standard -- \
    galaxy.yml meta roles playbooks inventories/example inventories/local docs \
    README.md LICENSE CHANGELOG.md \
    | while IFS= read -r -d '' f; do
        case "$f" in roles/*/molecule/*) continue ;; esac
        [ -f "$f" ] && printf '%s\0' "$f"
      done \
    | tar --null -T - -cf -
) | tar -C "$stage" -xf -

for f in galaxy.yml meta/runtime.yml README.md LICENSE; do
  [ -f "$stage/$f" ] || { echo "build-collection.sh: $f missing" >&2; exit 1; }
done
ANSIBLE_NOCOLOR=1 "$galaxy" collection build --force --output-path "$out" "$stage" >&2
version=$(sed -n 's/^version: *//p' "$stage/galaxy.yml")
echo "$out/dmr-appliance-$version.tar.gz"
