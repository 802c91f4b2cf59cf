#!/usr/bin/env bash
# Writes the files k8s/secrets/'s secretGenerator reads into k8s/secrets/pki/ (git-ignored):
# the deployment CA and CRL, home's, the relays' and the router's certificates and keys,
# and the admin's and participants' client certificates, which stay on this machine; for
# home on PostgreSQL (k8s/components/postgres-home), store/ (the database password, the
# key-encryption key, the CA home verifies the database with) and the database's server
# certificate (server/home-db.pem, for a CloudNativePG Cluster: README, "Home on PostgreSQL").
#
# Usage: k8s/make-secrets.sh [--namespace NS] [--router-name HOST]... [--participant ID]...
#                            [--db-namespace NS]
#   --namespace NS      where the manifests run (default dmr): names the Services' DNS names
#   --router-name HOST  the router's public host name (repeatable; default dmr.example.org)
#   --participant ID    also issue a participant certificate (repeatable)
#   --db-namespace NS   where the CloudNativePG Cluster dmr-home-db runs (default dmr-db)
# Runs `dmr` from PATH (a virtualenv with this project, or the Debian package). Existing
# keys are kept: run `dmr pki renew --dir k8s/secrets/pki` to renew, `dmr pki revoke` to revoke.
set -euo pipefail
PKI=${DMR_K8S_PKI:-$(cd "$(dirname "$0")" && pwd)/secrets/pki}
ns=dmr db_ns=dmr-db routers=() participants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) ns=${2:?}; shift 2 ;;
    --router-name) routers+=("${2:?}"); shift 2 ;;
    --participant) participants+=("${2:?}"); shift 2 ;;
    --db-namespace) db_ns=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# Home on PostgreSQL: the Secret dmr-home-store (k8s/secrets) from these files, made once.
# The password is the database login's (the Cluster's owner Secret is made from the same
# file); key_file seals the signing keys in the database (32 random bytes, base64);
# ca.crt is what home verifies the database's certificate with: the deployment CA, which
# signs server/home-db.pem for the Cluster (replace it by the provider's CA for a managed
# PostgreSQL). Made at the first run and kept; unused by a home on SQLite.
mkdir -p "$PKI/store"
keep_or_write() {  # keep_or_write FILE COMMAND...: the file's content, made once, 0600
  if [ -s "$1" ]; then return; fi
  (umask 077; "${@:2}" > "$1.tmp") && mv "$1.tmp" "$1"
}
# The password in hex without a newline: the Cluster's owner Secret is made from this file
# as it is (home strips a newline; PostgreSQL would take it as part of the password).
random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
random_base64() { head -c 32 /dev/urandom | base64; }
keep_or_write "$PKI/store/password" random_hex
keep_or_write "$PKI/store/key_file" random_base64
keep_or_write "$PKI/store/ca.crt" cat "$PKI/ca.pem"
mapfile -t db_dns < <(ns=$db_ns service_names dmr-home-db-rw)
issue server home-db "${db_dns[@]}"
echo "make-secrets.sh: $PKI is ready: kubectl apply -k k8s/secrets (the CA key ca.key stays here)"
