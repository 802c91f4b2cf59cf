#!/usr/bin/env bash
# Builds the container image (packaging/Containerfile) from the Debian package and prints
# its tag, dmr-appliance:<package version>, on the last line.
#
# Usage: packaging/build-image.sh [--deb FILE] [--base IMAGE] [--tag NAME]
#   --deb FILE    the .deb to install (default: build one with build-deb.sh --deb-only)
#   --base IMAGE  Debian base image (default debian:trixie-slim, Debian 13; Debian 12:
#                 debian:bookworm-slim)
#   --tag NAME    image name without the version (default dmr-appliance)
# Where no registry is reachable, a debian:RELEASE-slim that cannot be pulled is made here
# instead, from Debian's mirror (packaging/build-base.sh RELEASE).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
deb="" base=debian:trixie-slim name=dmr-appliance
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb=${2:?--deb needs a file}; shift 2 ;;
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --tag) name=${2:?--tag needs a name}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
if [ -z "$deb" ]; then
  "$ROOT/packaging/build-deb.sh" --deb-only --out "$context" >&2
  deb=$(ls "$context"/dmr-appliance_*_all.deb)
else
  cp "$deb" "$context/"
fi
if [[ "$base" =~ ^debian:(trixie|bookworm)-slim$ ]] && ! "$DOCKER" image inspect "$base" >/dev/null 2>&1 \
    && ! "$DOCKER" pull -q "$base" >/dev/null 2>&1; then
  echo "build-image.sh: $base cannot be pulled; making it from Debian's mirror (packaging/build-base.sh)" >&2
  base=$("$ROOT/packaging/build-base.sh" "${BASH_REMATCH[1]}" | tail -n 1)
fi
version=$(dpkg-deb -f "$deb" Version)
tag="$name:$version"
echo "build-image.sh: building $tag from $(basename "$deb") on $base" >&2
"$DOCKER" build -q -f "$ROOT/packaging/Containerfile" \
  --build-arg "BASE=$base" --build-arg "DEB=$(basename "$deb")" --build-arg "VERSION=$version" \
  -t "$tag" "$context" >&2
echo "$tag"
