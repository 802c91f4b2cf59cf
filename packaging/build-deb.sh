#!/usr/bin/env bash
# Builds dmr-appliance's wheel, sdist and Debian package into dist/, offline, from a clean
# copy of the checkout (tracked and new files, nothing that .gitignore excludes), then runs
# lintian on the result and prints what it says. One .deb for Debian 12 and 13: its
# dependencies are Debian's packages of both releases (docs/packaging.md).
#
# Usage: packaging/build-deb.sh [--version X] [--deb-only] [--with-changes] [--out DIR]
#        packaging/build-deb.sh --lintian FILE.changes
#   --version X     build version X instead of dmr_appliance.__version__ (an upgrade test's
#                   "higher version"); only the build copy is changed, never a tracked file
#   --deb-only      skip the wheel and sdist
#   --with-changes  also copy the .changes and the files it names (.dsc, source tarball,
#                   .buildinfo) into DIR: what lintian checks, for another release's lintian
#   --out DIR       where the artefacts go (default dist/)
#   --lintian F     build nothing: run this machine's lintian on F as a build does (the
#                   system test runs Debian 13's this way, in a Debian 13 container)
# Needs the Debian build tools of `scripts/setup.sh --system`. As root it builds in a
# network namespace of its own (unshare -n), which proves that nothing is downloaded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
version="" deb_only=0 with_changes=0 lint_only="" out="$ROOT/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --deb-only) deb_only=1; shift ;;
    --with-changes) with_changes=1; shift ;;
    --lintian) lint_only=${2:?--lintian needs a .changes file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Debian's tools and Python only: a pyenv or virtualenv python3 first on PATH would
# otherwise be the interpreter pybuild builds with.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck}"

# lintian on a .changes (the source and the binary package), as every build runs it: the
# overrides are the package's own (packaging/debian/*.lintian-overrides); info tags are
# shown; an error or a warning fails.
run_lintian() {
  local changes=$1 log rc
  command -v lintian >/dev/null || { echo "build-deb.sh: lintian missing: run scripts/setup.sh --system" >&2; return 1; }
  echo "build-deb.sh: lintian ($(lintian --version))"
  log=$(mktemp)
  set +e
  lintian --display-info --fail-on error,warning "$changes" >"$log" 2>&1
  rc=$?
  set -e
  # (lintian's own remark about running as root is not a finding about the package)
  sed -i '/running with root privileges is not recommended/d' "$log"
  if [ -s "$log" ]; then sed 's/^/  /' "$log"; else echo "  lintian: no tags (errors, warnings, info; overrides in packaging/debian/*.lintian-overrides)"; fi
  rm -f "$log"
  if [ "$rc" != 0 ]; then
    echo "build-deb.sh: lintian reported errors or warnings (exit $rc)" >&2
    return 1
  fi
}

if [ -n "$lint_only" ]; then
  [ -f "$lint_only" ] || { echo "build-deb.sh: no such file: $lint_only" >&2; exit 2; }
  run_lintian "$lint_only"
  exit
fi

for tool in dpkg-buildpackage dh_python3 lintian; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool missing: run scripts/setup.sh --system" >&2; exit 1; }
done
python3 -c 'import build' 2>/dev/null \
  || { echo "build-deb.sh: python3-build missing: run scripts/setup.sh --system" >&2; exit 1; }

init_py="$ROOT/dmr_appliance/__init__.py"
upstream=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$init_py")
[ -n "$upstream" ] || { echo "build-deb.sh: no __version__ in $init_py" >&2; exit 1; }
version=${version:-$upstream}
# One version for Python (PEP 440) and Debian (native: no revision, so no '-').
if ! [[ "$version" =~ ^[0-9]+(\.[0-9]+)*(\.post[0-9]+|\+[0-9a-z]+(\.[0-9a-z]+)*)?$ ]]; then
  echo "build-deb.sh: version '$version' must be N.N.N, optionally .postN or +local (PEP 440 and Debian)" >&2
  exit 2
fi

# Offline: as root, in an empty network namespace; otherwise on trust.
offline=()
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then offline=(unshare -n); fi

# A work folder of this build's own: builds may run side by side in one checkout (the
# system test builds its two versions at once). Removed when the build succeeds; kept, and
# named, if not.
mkdir -p "$ROOT/build" "$out"
work=$(mktemp -d "$ROOT/build/deb.XXXXXX")
on_exit() {
  local status=$?
  if [ "$status" = 0 ]; then rm -rf "$work"; else echo "build-deb.sh: failed (exit $status); its files and logs: $work" >&2; fi
}
trap on_exit EXIT
src="$work/dmr-appliance-$version"
mkdir -p "$src"

# The clean copy: what `git clone` would give, plus files not yet committed.
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$src" -xf -
  epoch=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
else
  tar -C "$ROOT" --exclude-vcs --exclude='./.venv*' --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$src" -xf -
  epoch=$(date +%s)
fi
export SOURCE_DATE_EPOCH=$epoch

if [ "$version" != "$upstream" ]; then
  sed -i "s/^__version__ = \".*\"$/__version__ = \"$version\"/" "$src/dmr_appliance/__init__.py"
fi

# debian/ lives under packaging/ in the repository; the build wants it at the top. The
# distribution is "stable", no release's name: the one .deb is for Debian 12 and 13.
cp -a "$src/packaging/debian" "$src/debian"
cat >"$src/debian/changelog" <<EOF
dmr-appliance ($version) stable; urgency=medium

  * Release $version (packaging/build-deb.sh).

 -- dmr-appliance developers <dmr-appliance@example.org>  $(date -R -u -d "@$epoch")
EOF

if [ "$deb_only" = 0 ]; then
  echo "build-deb.sh: wheel and sdist (python3 -m build --no-isolation, Debian's setuptools)"
  (cd "$src" && "${offline[@]}" python3 -m build --no-isolation --outdir "$work/python" . >"$work/python-build.log" 2>&1) \
    || { tail -n 40 "$work/python-build.log" >&2; exit 1; }
  rm -f "$out"/dmr_appliance-"$version"-*.whl "$out"/dmr-appliance-"$version".tar.gz "$out"/dmr_appliance-"$version".tar.gz
  cp "$work"/python/* "$out"/
fi

echo "build-deb.sh: dmr-appliance $version (dpkg-buildpackage${offline:+, no network})"
(cd "$src" && "${offline[@]}" dpkg-buildpackage -us -uc --build=full >"$work/dpkg-buildpackage.log" 2>&1) \
  || { tail -n 60 "$work/dpkg-buildpackage.log" >&2; exit 1; }
deb="dmr-appliance_${version}_all.deb"
cp "$work/$deb" "$out/"

changes=$(ls "$work"/dmr-appliance_"${version}"_*.changes)
if [ "$with_changes" = 1 ]; then
  # the .changes and each file its Files: field names (md5sum size section priority name)
  awk '/^Files:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $5 }' "$changes" \
    | while read -r f; do cp "$work/$f" "$out/"; done
  cp "$changes" "$out/"
fi

run_lintian "$changes"
echo "build-deb.sh: built $out/$deb"
