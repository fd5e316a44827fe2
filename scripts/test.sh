#!/usr/bin/env bash
# The test command: formatting, lints, every Rust test (unit and integration against real
# components started on loopback), and the Helm chart tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# Queries are checked against the committed .sqlx data, never against a database that happens to
# be around.
unset DATABASE_URL
export SQLX_OFFLINE=true
# A one-off build gains nothing from incremental caches, and they would double target/'s size.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== sqlx offline data matches the queries and migrations"
bash scripts/sqlx-prepare.sh --check
echo "== cargo build (integration tests run the workspace's binaries as processes)"
cargo build --workspace --bins --locked
echo "== cargo nextest"
status=0
cargo nextest run --workspace --locked --no-fail-fast -E 'not binary(platform_autoscale)' || status=$?
# It measures one API pod's capacity and then replays load against the fleet, so nothing else
# may share the machine's two cores with it; its figures are printed even when it passes.
echo "== live autoscaling run (alone)"
cargo nextest run -p riskplatform-tests --locked --no-fail-fast --test platform_autoscale \
  --success-output immediate || status=$?
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ -x tests/helm/run.sh ]; then
  echo "== helm chart tests"
  bash tests/helm/run.sh
fi
