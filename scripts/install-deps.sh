#!/usr/bin/env bash
# Installs what the tests start on loopback: PostgreSQL, PgBouncer, Redis, Prometheus (Debian
# packages), kubectl, wrk for the benchmarks, and sqlx's CLI. Idempotent: skips what is already there.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v kubectl >/dev/null || need+=(kubernetes-client)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages start system services where an init system runs; tests use their own
# instances on free ports, so stop any that came up to keep the machine quiet.
for svc in postgresql pgbouncer redis-server prometheus; do
  service "$svc" stop >/dev/null 2>&1 || true
done
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# sqlx's CLI regenerates and checks the committed offline query data (.sqlx/).
command -v cargo-sqlx >/dev/null || cargo install --locked sqlx-cli --version 0.8.6 --no-default-features --features postgres,rustls
