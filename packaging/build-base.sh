#!/usr/bin/env bash
# Makes a Debian "slim" base image on this machine, as Debian's own images are made
# (debootstrap --variant=minbase from Debian's mirror, then `docker import`), for a machine
# that reaches Debian's mirror but no container registry; prints its tag,
# dmr-base/RELEASE-slim, on the last line. packaging/build-image.sh uses it when the public
# debian:RELEASE-slim cannot be pulled. Reuses the image when it exists (--rebuild: anew).
#
# Usage: packaging/build-base.sh [trixie|bookworm] [--rebuild]     (default trixie)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
release=trixie rebuild=0
for arg in "$@"; do
  case "$arg" in
    trixie|bookworm) release=$arg ;;
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-base.sh: '$arg' is not trixie, bookworm or --rebuild" >&2; exit 2 ;;
  esac
done
tag=dmr-base/$release-slim
if [ "$rebuild" = 0 ] && "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
  echo "build-base.sh: reusing $tag" >&2
  echo "$tag"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base.sh: debootstrap missing: run scripts/setup.sh --system" >&2; exit 1; }

work=$(mktemp -d /var/tmp/dmr-base.XXXXXX)
# debootstrap mounts proc and sys in the root file system while it works: a cleanup must
# never cross into them.
cleanup() {
  for mnt in $(awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
echo "build-base.sh: debootstrap --variant=minbase $release from $MIRROR" >&2
debootstrap --variant=minbase "$release" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
cat >"$rootfs/etc/apt/sources.list" <<LIST
deb $MIRROR $release main
deb $MIRROR $release-updates main
deb ${MIRROR%/debian}/debian-security $release-security main
LIST
# What Debian's slim images leave out or set (debuerreotype): no apt lists or caches, no
# Recommends, no docs or man pages from later installs, an empty machine-id.
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/99no-recommends"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
mkdir -p "$rootfs/var/lib/apt/lists/partial"
: >"$rootfs/etc/machine-id"
echo "build-base.sh: importing as $tag" >&2
tar -C "$rootfs" --one-file-system -c . | "$DOCKER" import -c 'CMD ["bash"]' - "$tag" >/dev/null
echo "$tag"
