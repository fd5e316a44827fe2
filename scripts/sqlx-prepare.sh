#!/usr/bin/env bash
# Regenerates sqlx's offline query data (.sqlx/) from a throwaway PostgreSQL with the migrations
# applied; with --check it fails instead when the committed data is not what the code needs.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=()
[ "${1:-}" = "--check" ] && mode=(--check)
command -v cargo-sqlx >/dev/null || cargo install --locked sqlx-cli --version 0.8.6 --no-default-features --features postgres,rustls

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d -t riskplatform-sqlx-XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/initdb" -A trust -U risk --no-sync -D "$dir/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
trap '"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
psql -h 127.0.0.1 -p "$port" -U risk -d postgres -qc "CREATE DATABASE risk"
export DATABASE_URL="postgres://risk@127.0.0.1:$port/risk" SQLX_OFFLINE=false
cargo sqlx migrate run --source migrations >/dev/null
cargo sqlx prepare --workspace "${mode[@]}" -- --all-targets
