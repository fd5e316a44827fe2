#!/usr/bin/env bash
# A PostgreSQL playing the user's database for a local cluster (scripts/local-cluster.sh) that is
# up in DIR: Debian's server on the cluster's pod-bridge gateway (10.244.N.1:5432, reachable from
# every pod and from this host), password authentication (SCRAM) with a password generated here,
# and, in the cluster, a Service `postgres` in namespace `databases` without a selector whose
# EndpointSlice points at it, the way an external database is given a cluster name. The example
# RiskPlatform's host, postgres.databases.svc, then resolves in the pods.
#
#   scripts/local-database.sh up DIR     # prints the password file; Secret: see `secret`
#   scripts/local-database.sh secret DIR NAMESPACE NAME   # creates/updates the credentials Secret
#   scripts/local-database.sh stop DIR | start DIR   # stop or start the server, data kept (faults)
#   scripts/local-database.sh rotate DIR   # a new password for risk on the server (then: secret)
#   scripts/local-database.sh down DIR
set -euo pipefail

die() { echo "local-database: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 up DIR | secret DIR NAMESPACE NAME | stop DIR | start DIR | rotate DIR | down DIR"
command="$1"; dir="$(realpath -m "$2")"; shift 2
[ -e "$dir/index" ] || die "$dir holds no local cluster (scripts/local-cluster.sh up $dir)"
index="$(cat "$dir/index")"
gateway="10.244.$index.1"
# The cluster's DIR is root's alone (mktemp -d), which the postgres user cannot enter: the
# database lives in a directory of its own, recorded in DIR.
db="$(cat "$dir/database.path" 2>/dev/null || true)"
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
[ -x "$bin/postgres" ] || die "PostgreSQL is not installed: run scripts/install-deps.sh"
export KUBECONFIG="$dir/kube/kubeconfig"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

# Only on this cluster's gateway, never on 127.0.0.1: two clusters (or a PostgreSQL left
# running by an earlier one) would otherwise contend for the same loopback port.
start_server() {
  local holder
  holder="$(ss -Hltnp "src $gateway:5432" 2>/dev/null || true)"
  [ -z "$holder" ] || die "$gateway:5432 is already taken (a PostgreSQL of an earlier cluster left running?): $holder"
  as_postgres "$bin/pg_ctl" -D "$db/data" -l "$db/postgres.log" -w \
    -o "-c listen_addresses=$gateway -p 5432 -k $db" start >/dev/null \
    || die "PostgreSQL did not start; its log: $db/postgres.log"
}

up() {
  # The kubelet creates the bridge as it starts; PostgreSQL can only listen once it exists.
  for _ in $(seq 1 150); do ip -4 addr show "lcbr$index" 2>/dev/null | grep -q "$gateway" && break; sleep 0.2; done
  ip -4 addr show "lcbr$index" 2>/dev/null | grep -q "$gateway" || die "no bridge lcbr$index with $gateway"
  [ -z "$db" ] || die "$dir already has a database in $db"
  db="$(mktemp -d -t riskplatform-db-XXXXXX)"
  echo "$db" >"$dir/database.path"
  umask 077
  printf '%s' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$db/password"
  chown -R postgres:postgres "$db"
  as_postgres "$bin/initdb" -A scram-sha-256 -U risk --pwfile="$db/password" -E UTF8 -D "$db/data" >"$db/initdb.log"
  cat >>"$db/data/pg_hba.conf" <<EOF
host all all 10.244.$index.0/24 scram-sha-256
EOF
  start_server
  PGPASSWORD="$(cat "$db/password")" psql -h "$gateway" -p 5432 -U risk -d postgres -qc "CREATE DATABASE risk" \
    || die "could not create the database risk"

  kubectl create namespace databases --dry-run=client -o yaml | kubectl apply --validate=false -f - >/dev/null
  kubectl apply --validate=false -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: { name: postgres, namespace: databases }
spec:
  ports: [{ name: postgres, port: 5432, targetPort: 5432 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: postgres-host
  namespace: databases
  labels: { kubernetes.io/service-name: postgres }
addressType: IPv4
ports: [{ name: postgres, port: 5432, protocol: TCP }]
endpoints: [{ addresses: ["$gateway"], conditions: { ready: true } }]
EOF
  echo "# PostgreSQL for the pods: postgres.databases.svc:5432 ($gateway:5432), user risk, database risk"
  echo "# its password is in $db/password (mode 0600)"
}

secret() {
  [ $# -eq 2 ] || die "usage: $0 secret DIR NAMESPACE NAME"
  kubectl -n "$1" create secret generic "$2" --from-literal=username=risk \
    --from-file=password="$db/password" --dry-run=client -o yaml | kubectl apply --validate=false -f - >/dev/null
}

stop_server() {
  [ -n "$db" ] || die "$dir has no database (run: $0 up $dir)"
  as_postgres "$bin/pg_ctl" -D "$db/data" -m fast -w stop >/dev/null
}

# The administrator's side of a password rotation: the role's password changes on the server
# (sessions already authenticated stay open) and the file holds the new one.
rotate() {
  [ -n "$db" ] || die "$dir has no database (run: $0 up $dir)"
  umask 077
  new="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  PGPASSWORD="$(cat "$db/password")" psql -h "$gateway" -p 5432 -U risk -d postgres -v ON_ERROR_STOP=1 -q \
    -v pw="$new" <<<"ALTER ROLE risk PASSWORD :'pw';" || die "could not change the password"
  printf '%s' "$new" >"$db/password.new"
  chown postgres:postgres "$db/password.new"
  mv "$db/password.new" "$db/password"
}

down() {
  [ -n "$db" ] || return 0
  [ -d "$db/data" ] && as_postgres "$bin/pg_ctl" -D "$db/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$db" "$dir/database.path"
}

case "$command" in
  up) up ;;
  secret) secret "$@" ;;
  stop) stop_server ;;
  start) [ -n "$db" ] || die "$dir has no database (run: $0 up $dir)"; start_server ;;
  rotate) rotate ;;
  down) down ;;
  *) die "unknown command $command (up, secret, stop, start, rotate, down)" ;;
esac
