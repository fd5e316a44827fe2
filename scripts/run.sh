#!/usr/bin/env bash
# The main job: runs the operator against the cluster in KUBECONFIG. Without KUBECONFIG it starts
# a local cluster whose pods really run (scripts/local-cluster.sh: kube-testenv, the local
# controller-manager, kubelet and Prometheus) with a PostgreSQL for the pods
# (scripts/local-database.sh), installs the CRD, applies the example RiskPlatform with that
# database's credentials and runs the operator in the foreground (Ctrl-C stops it and the whole
# local cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KUBECONFIG:-}" ]; then
  # The kubelet runs the images the operator deploys as these binaries.
  cargo build --release --workspace --bins
  dir="$(mktemp -d -t riskplatform-cluster-XXXXXX)"
  trap 'scripts/local-database.sh down "$dir" || true; scripts/local-cluster.sh down "$dir" >/dev/null 2>&1 || true' EXIT
  LOCALCLUSTER_BIN_DIR="$(pwd)/target/release" scripts/local-cluster.sh up "$dir" --prometheus
  export KUBECONFIG="$dir/kube/kubeconfig"
  scripts/local-database.sh up "$dir"
  local_database=true
  echo "started a local cluster: export KUBECONFIG=$KUBECONFIG; Service ports: scripts/local-cluster.sh ports $dir"
else
  cargo build --release -p riskplatform-operator
fi
kubectl apply --validate=false -f crds/
kubectl wait --for condition=established --timeout=30s crd/riskplatforms.riskplatform.io
kubectl apply --validate=false -f examples/riskplatform.yaml
if [ "${local_database:-false}" = true ]; then
  # The example's placeholder password becomes the local database's real one.
  scripts/local-database.sh secret "$dir" default risk-db-credentials
  # The operator runs on this host, where the local cluster's Prometheus answers on loopback.
  kubectl patch riskplatform risk --type merge \
    -p "{\"spec\":{\"prometheus\":{\"url\":\"$(cat "$dir/prometheus.url")\"}}}"
  # This host does not resolve the cluster's Service names (the local cluster's pods find them in
  # /etc/hosts), so the operator's database check, which runs where the operator runs, is off
  # here; installed by the chart, the operator runs as a pod and checks the database.
  export RISK_OPERATOR_DATABASE_CHECK_SECONDS="${RISK_OPERATOR_DATABASE_CHECK_SECONDS:-0}"
fi
echo "operator starting; in another shell: KUBECONFIG=$KUBECONFIG kubectl get riskplatforms"
exec_status=0
./target/release/riskplatform-operator "$@" || exec_status=$?
exit "$exec_status"
