#!/usr/bin/env bash
# Builds (once per machine, then reuses) a Debian base image with systemd as PID 1 that
# the system tests, the Molecule scenarios and the container image build on, as
# ../shared/TESTBED.md describes: no registry is reachable, so the root filesystem comes
# from debootstrap and `docker import`. One image per supported release: Debian 13
# "trixie" (stable) and Debian 12 "bookworm" (oldstable).
# Starts dockerd first if nothing answers (there is no systemd on the host).
#
# Usage: tests/system/image.sh [--release trixie|bookworm] [--rebuild]
#   prints the image tag, dmr-test/RELEASE-systemd, on its last line (default release:
#   bookworm)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              DMR_DOCKERD_LOG (default /var/log/dmr-dockerd.log).
set -euo pipefail

SUPPORTED="trixie bookworm"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${DMR_DOCKERD_LOG:-/var/log/dmr-dockerd.log}
# Debian's docker.io client; another client earlier on PATH may not match the daemon.
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
rebuild=0 release=bookworm
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) rebuild=1; shift ;;
    --release) release=${2:?--release needs trixie or bookworm}; shift 2 ;;
    *) echo "image.sh: unknown option $1 (usage: image.sh [--release trixie|bookworm] [--rebuild])" >&2; exit 2 ;;
  esac
done
case " $SUPPORTED " in
  *" $release "*) ;;
  *) echo "image.sh: release '$release' is not one of: $SUPPORTED" >&2; exit 2 ;;
esac
IMAGE=dmr-test/$release-systemd

log() { echo "image.sh: $*" >&2; }

ensure_dockerd() {
  "$DOCKER" info >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null || { log "dockerd missing: run scripts/setup.sh --system"; exit 1; }
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon outlives this script and the test session that started it.
  setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "dockerd did not answer within 30 s; see $DOCKERD_LOG"
  exit 1
}

cleanup() {
  local dir=$1 mnt
  for mnt in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

build_image() {
  local work rootfs
  work=$(mktemp -d /var/tmp/dmr-image.XXXXXX)
  rootfs=$work/rootfs
  # debootstrap mounts proc and sys inside the root file system while it works: never
  # let a cleanup cross into them.
  # shellcheck disable=SC2064  # expand now: $work is local to this function
  trap "cleanup '$work'" EXIT
  trap "cleanup '$work'; exit 130" INT TERM
  log "debootstrap $release from $MIRROR (about a minute)"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates,curl \
    "$release" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $release main
deb $MIRROR $release-updates main
deb ${MIRROR%/debian}/debian-security $release-security main
EOF
  # The mirror is a snapshot: its Release files are past their Valid-Until.
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99no-check-valid-until"
  # Recommends stay opt-in, as on a minimal server image.
  echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/99no-recommends"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$rootfs/var/lib/apt/lists/partial"
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/lib/dbus/machine-id"
  # Units that make no sense in a container and only slow the boot down.
  for unit in systemd-remount-fs.service getty.target console-getty.service \
              systemd-logind.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done

  log "importing as $IMAGE"
  tar -C "$rootfs" --one-file-system -c . | "$DOCKER" import \
    -c 'ENV container=docker' \
    -c 'CMD ["/lib/systemd/systemd"]' - "$IMAGE" >/dev/null
  cleanup "$work"
  trap - EXIT INT TERM
}

ensure_dockerd
if [ "$rebuild" = 1 ] || ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  build_image
else
  log "reusing $IMAGE"
fi
echo "$IMAGE"
