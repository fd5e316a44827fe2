#!/usr/bin/env bash
# Installs what the tests start on loopback: PostgreSQL, PgBouncer, Redis, Prometheus (Debian
# packages), kubectl, wrk for the benchmarks, sqlx's CLI, and schemathesis (PyPI) for the OpenAPI
# fuzz test. Idempotent: skips what is already there.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v kubectl >/dev/null || need+=(kubernetes-client)
command -v wrk >/dev/null || need+=(wrk)
# The metrics sidecar beside the managed Redis runs as this program on the local cluster.
command -v prometheus-redis-exporter >/dev/null || need+=(prometheus-redis-exporter)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages start system services where an init system runs; tests use their own
# instances on free ports, so stop any that came up to keep the machine quiet.
for svc in postgresql pgbouncer redis-server prometheus prometheus-redis-exporter; do
  service "$svc" stop >/dev/null 2>&1 || true
done
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# sqlx's CLI regenerates and checks the committed offline query data (.sqlx/).
command -v cargo-sqlx >/dev/null || cargo install --locked sqlx-cli --version 0.8.6 --no-default-features --features postgres,rustls
# schemathesis fuzzes the API against its OpenAPI document (tests/tests/api_openapi_fuzz.rs); the
# version is pinned because the test's fixed seed only reproduces the same cases with the same one.
SCHEMATHESIS_VERSION=4.32.5
if ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis==$SCHEMATHESIS_VERSION")
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told otherwise.
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi
# The real Helm library: the chart tests (tests/helm) and the end-to-end tests, which install the
# chart into a local cluster (tests/helm/install.py).
if ! python3 -c 'import helm_sdkpy, yaml, pytest' 2>/dev/null; then
  pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --ignore-requires-python helm-sdkpy cffi pytest pyyaml)
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi
