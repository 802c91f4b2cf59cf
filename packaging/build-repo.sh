#!/usr/bin/env bash
# Builds a signed, flat apt repository in DIR from the packages in dist/ (or --from DIR),
# signed with a key generated for this deployment on first use and kept in DIR/gnupg.
# DIR/gnupg holds the PRIVATE signing key: keep DIR out of version control (dist/ and
# build/ are ignored) and back the key up if targets already trust it.
#
# Usage: packaging/build-repo.sh DIR [--from DIST] [--url URL] [--keyring PATH]
#   --from DIST     where the .deb files are (default dist/)
#   --url URL       the repository's address as targets see it (default file:DIR)
#   --keyring PATH  where targets keep the public key (default DIR/dmr-appliance-archive-keyring.gpg)
# Writes DIR/{*.deb,Packages,Packages.gz,Release,InRelease,Release.gpg}, the public key as
# DIR/dmr-appliance-archive-keyring.gpg (binary) and .asc (armored), DIR/dmr-appliance.list,
# and prints the sources.list line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] && [[ "$1" != -* ]] || { sed -n '7,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mkdir -p "$1"
repo=$(cd "$1" && pwd)
shift
from="$ROOT/dist" url="" keyring=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=${2:?}; shift 2 ;;
    --url) url=${2:?}; shift 2 ;;
    --keyring) keyring=${2:?}; shift 2 ;;
    *) echo "build-repo.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
url=${url:-file:$repo}
keyring=${keyring:-$repo/dmr-appliance-archive-keyring.gpg}

for tool in apt-ftparchive gpg; do
  command -v "$tool" >/dev/null || { echo "build-repo.sh: $tool missing: run scripts/setup.sh --system" >&2; exit 1; }
done
shopt -s nullglob
debs=("$from"/*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "build-repo.sh: no .deb in $from (run packaging/build-deb.sh)" >&2; exit 1; }

export GNUPGHOME="$repo/gnupg"
mkdir -p "$GNUPGHOME" && chmod 0700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT
uid="dmr-appliance repository ($(hostname -s)) <dmr-appliance@localhost>"
if ! gpg --batch --list-secret-keys "$uid" >/dev/null 2>&1; then
  echo "build-repo.sh: generating the repository signing key in $GNUPGHOME"
  gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-generate-key "$uid" ed25519 sign 3y
fi
fpr=$(gpg --batch --with-colons --list-secret-keys "$uid" | awk -F: '$1 == "fpr" { print $10; exit }')

# Every version in dist/ is offered (apt installs the highest); older copies are replaced.
rm -f "$repo"/*.deb
cp "${debs[@]}" "$repo"/
cd "$repo"
# No Codename: the one .deb is for Debian 12 and 13 alike, so the repository names no
# release; Suite "stable" is the changelog's distribution.
apt-ftparchive packages . >Packages
gzip -9n <Packages >Packages.gz
apt-ftparchive \
  -o APT::FTPArchive::Release::Origin=dmr-appliance \
  -o APT::FTPArchive::Release::Label=dmr-appliance \
  -o APT::FTPArchive::Release::Suite=stable \
  -o APT::FTPArchive::Release::Architectures="all amd64 arm64" \
  -o APT::FTPArchive::Release::Description="dmr-appliance packages" \
  release . >Release.new
mv Release.new Release
rm -f InRelease Release.gpg
gpg --batch --quiet --yes --local-user "$fpr" --digest-algo SHA512 --clearsign -o InRelease Release
gpg --batch --quiet --yes --local-user "$fpr" --digest-algo SHA512 --armor --detach-sign -o Release.gpg Release
gpg --batch --quiet --yes --export "$fpr" >dmr-appliance-archive-keyring.gpg
gpg --batch --quiet --yes --armor --export "$fpr" >dmr-appliance-archive-keyring.asc
line="deb [signed-by=$keyring] $url ./"
echo "$line" >dmr-appliance.list
chmod -R a+rX -- *.deb Packages* Release InRelease Release.gpg dmr-appliance-archive-keyring.* dmr-appliance.list

echo "build-repo.sh: $repo signed by $fpr ($(ls -1 -- *.deb | wc -l) package(s))"
echo "build-repo.sh: public key $repo/dmr-appliance-archive-keyring.gpg (.asc: armored)"
echo "$line"
