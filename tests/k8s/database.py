"""The stand-in for the CloudNativePG Cluster dmr-home-db, as a shell script for Debian's
postgresql: tests/k8s/test_image_run_postgres.py runs it in a container (paths as here),
tests/integration/test_k8s_postgres_home.py on this host without docker (``on_host``)."""

from __future__ import annotations

# The stand-in for the Cluster: initdb once, TLS with its server certificate (home checks
# it, verify-full, against dmr-home-store's ca.crt), the owner dmr_home with the password
# of dmr-home-store, scram over TLS only, as the Cluster's pg_hba would have it.
START_DATABASE = r"""
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
d=/var/lib/dmr-pg
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$d" /run/postgresql
chown postgres: "$d" /run/postgresql
cd "$d"
if [ ! -s "$d/data/PG_VERSION" ]; then
  install -o postgres -m 0600 /pki/server/home-db.pem "$d/server.crt"
  install -o postgres -m 0600 /pki/server/home-db.key "$d/server.key"
  as_postgres "$bin/initdb" -D "$d/data" -U postgres -E UTF8 >/dev/null
  printf 'local all postgres trust\nhostssl dmr_home dmr_home all scram-sha-256\n' \
    > "$d/data/pg_hba.conf"
  as_postgres "$bin/pg_ctl" -D "$d/data" -w -o "-c listen_addresses=''" start
  as_postgres "$bin/psql" -h /run/postgresql -U postgres -v ON_ERROR_STOP=1 \
    -v pw="$(cat /pki/store/password)" <<'SQL'
CREATE ROLE dmr_home LOGIN PASSWORD :'pw';
CREATE DATABASE dmr_home OWNER dmr_home;
SQL
  as_postgres "$bin/pg_ctl" -D "$d/data" -w stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  "$bin/postgres" -D "$d/data" -c listen_addresses='*' \
  -c ssl=on -c ssl_cert_file="$d/server.crt" -c ssl_key_file="$d/server.key"
"""


def on_host(pki: str, data: str, sockets: str, port: int) -> str:
    """START_DATABASE with its paths on this host, on a TCP port of loopback only."""
    script = START_DATABASE.replace("/pki/", f"{pki}/").replace("/var/lib/dmr-pg", data)
    script = script.replace("/run/postgresql", sockets)
    script = script.replace("listen_addresses=''\"", f"listen_addresses='' -k {sockets}\"")
    return script.replace(
        "listen_addresses='*'", f"listen_addresses='127.0.0.1' -c port={port} -k {sockets}"
    )
