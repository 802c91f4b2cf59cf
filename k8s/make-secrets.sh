#!/usr/bin/env bash
# Writes the files k8s/secrets/'s secretGenerator reads into k8s/secrets/pki/ (git-ignored):
# the deployment CA and CRL, home's, the relays' and the router's certificates and keys,
# and the admin's and participants' client certificates, which stay on this machine.
#
# Usage: k8s/make-secrets.sh [--namespace NS] [--router-name HOST]... [--participant ID]...
#   --namespace NS      where the manifests run (default dmr): names the Services' DNS names
#   --router-name HOST  the router's public host name (repeatable; default dmr.example.org)
#   --participant ID    also issue a participant certificate (repeatable)
# Runs `dmr` from PATH (a virtualenv with this project, or the Debian package). Existing
# keys are kept: run `dmr pki renew --dir k8s/secrets/pki` to renew, `dmr pki revoke` to revoke.
set -euo pipefail
PKI=${DMR_K8S_PKI:-$(cd "$(dirname "$0")" && pwd)/secrets/pki}
ns=dmr routers=() participants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) ns=${2:?}; shift 2 ;;
    --router-name) routers+=("${2:?}"); shift 2 ;;
    --participant) participants+=("${2:?}"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-secrets.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#routers[@]} = 0 ] && routers=(dmr.example.org)

service_names() {  # service_names NAME: the DNS names a Service gets in the namespace
  printf -- '--dns\n%s\n--dns\n%s.%s.svc\n--dns\n%s.%s.svc.cluster.local\n' "$1" "$1" "$ns" "$1" "$ns"
}
issue() {  # issue KIND NAME [dmr pki issue options]: keeps an existing certificate
  local kind=$1 name=$2; shift 2
  if [ -e "$PKI/$kind/$name.pem" ]; then echo "kept $PKI/$kind/$name.pem"; return; fi
  dmr pki issue --dir "$PKI" --kind "$kind" --name "$name" "$@"
}

dmr pki init --dir "$PKI"
mapfile -t home_dns < <(service_names dmr-home)
mapfile -t relay_dns < <(service_names dmr-relay)
mapfile -t router_dns < <(service_names dmr-router)
router_public=()
for host in "${routers[@]}"; do router_public+=(--dns "$host"); done
issue server home "${home_dns[@]}"
issue relay relay "${relay_dns[@]}"
issue router router "${router_public[@]}" "${router_dns[@]}"
issue admin admin
for id in "${participants[@]}"; do issue participant "$id"; done
echo "make-secrets.sh: $PKI is ready: kubectl apply -k k8s/secrets (the CA key ca.key stays here)"
