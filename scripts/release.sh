#!/usr/bin/env bash
# Builds a release of dmr-appliance into dist/: the wheel and sdist, the Debian package,
# the Ansible collection dmr.appliance and the container image (a `docker save`d tarball),
# all of one version, dmr_appliance.__version__, with their SHA-256 sums in
# dist/SHA256SUMS; prints one line per artifact (its sum and name).
#
# Usage: scripts/release.sh [--no-deb] [--no-image] [--base IMAGE] [--out DIR] [--allow-dirty]
#   --no-deb       skip the .deb (and so the image, which is built from it)
#   --no-image     skip the image (it needs docker; about a minute here)
#   --base IMAGE   the image's Debian base (default: packaging/build-image.sh's); where no
#                  registry is reachable, the local one:
#                  --base "$(tests/system/image.sh --release trixie | tail -n 1)"
#   --out DIR      where the artifacts go (default dist/)
#   --allow-dirty  build from a tree with uncommitted or untracked files
# Refuses (exit 1, one line) when the versions disagree (dmr_appliance/__init__.py,
# galaxy.yml, k8s/base's image tags, CHANGELOG.md's newest release) or the git tree is
# dirty. Needs the tools of scripts/setup.sh --system (python3-build, the Debian build
# tools, docker) and ansible-galaxy (.venv-ansible's, or Debian's ansible-core).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
deb=1 image=1 base="" out="$ROOT/dist" allow_dirty=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-deb) deb=0; image=0; shift ;;
    --no-image) image=0; shift ;;
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --allow-dirty) allow_dirty=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
refuse() { echo "release.sh: $*" >&2; exit 1; }

# --- one version everywhere ----------------------------------------------------------------
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' dmr_appliance/__init__.py)
[ -n "$version" ] || refuse "no __version__ in dmr_appliance/__init__.py"
galaxy=$(sed -n 's/^version: *//p' galaxy.yml)
changelog=$(sed -n 's/^## \[\([0-9][^]]*\)\] - .*/\1/p' CHANGELOG.md | head -n 1)
images=$(grep -rhoE 'image: *dmr-appliance:[^[:space:]]+' k8s/base | sed 's/.*dmr-appliance://' | sort -u | tr '\n' ' ')
for found in "galaxy.yml:$galaxy" "CHANGELOG.md:$changelog" "k8s/base:${images% }"; do
  [ "${found#*:}" = "$version" ] \
    || refuse "version $version (dmr_appliance/__init__.py) but ${found%%:*} says '${found#*:}'"
done

# --- a committed tree ----------------------------------------------------------------------
if [ "$allow_dirty" = 0 ]; then
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || refuse "not a git checkout (--allow-dirty to build anyway)"
  [ -z "$(git status --porcelain --untracked-files=normal)" ] \
    || refuse "the git tree has uncommitted or untracked files (git status); commit them or pass --allow-dirty"
fi
if [ "$image" = 1 ]; then
  docker=$(command -v /usr/bin/docker || command -v docker) && "$docker" info >/dev/null 2>&1 \
    || refuse "docker is not running (scripts/setup.sh --system starts it), or pass --no-image"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out" "$work/src" "$out"

# --- the wheel and sdist, from a clean copy (what git tracks or would track) ---------------
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -C "$work/src" -xf -
/usr/bin/python3 -c 'import build' 2>/dev/null || refuse "python3-build missing: run scripts/setup.sh --system"
(cd "$work/src" && PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m build --no-isolation --outdir "$work/python" . \
  >"$work/python-build.log" 2>&1) || { tail -n 40 "$work/python-build.log" >&2; refuse "the wheel did not build"; }
cp "$work/python/dmr_appliance-$version-py3-none-any.whl" "$work/out/"
# The sdist under its PEP 625 name: Debian 12's setuptools calls it dmr-appliance-V.tar.gz,
# the collection's own name (ansible-galaxy's namespace-name-version, which Galaxy expects).
cp "$work"/python/dmr[-_]appliance-"$version".tar.gz "$work/out/dmr_appliance-$version.tar.gz"

# --- the Ansible collection ----------------------------------------------------------------
scripts/build-collection.sh --out "$work/out" >"$work/collection.log" 2>&1 \
  || { cat "$work/collection.log" >&2; refuse "the collection did not build"; }

# --- the Debian package and the image built from it ----------------------------------------
if [ "$deb" = 1 ]; then
  packaging/build-deb.sh --deb-only --out "$work/out" >"$work/deb.log" 2>&1 \
    || { tail -n 40 "$work/deb.log" >&2; refuse "the .deb did not build (packaging/build-deb.sh)"; }
fi
if [ "$image" = 1 ]; then
  tag=$(packaging/build-image.sh --deb "$work/out/dmr-appliance_${version}_all.deb" ${base:+--base "$base"} \
        2>"$work/image.log" | tail -n 1) || { cat "$work/image.log" >&2; refuse "the image did not build"; }
  "$docker" save "$tag" | gzip -n >"$work/out/dmr-appliance_${version}_image.tar.gz"
fi

# --- into the output folder, with their sums -----------------------------------------------
(cd "$work/out" && sha256sum -- *) >"$work/SHA256SUMS"
for f in "$work"/out/*; do mv -f "$f" "$out/"; done
mv -f "$work/SHA256SUMS" "$out/SHA256SUMS"
echo "release.sh: dmr-appliance $version in $out (SHA256SUMS):"
cat "$out/SHA256SUMS"
