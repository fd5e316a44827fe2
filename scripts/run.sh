#!/usr/bin/env bash
# The main job: runs the operator against the cluster in KUBECONFIG. Without KUBECONFIG it starts
# a local Kubernetes API server (../shared/kube-testenv), installs the CRD, applies the example
# RiskPlatform and runs the operator in the foreground (Ctrl-C stops it and the API server).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p riskplatform-operator
if [ -z "${KUBECONFIG:-}" ]; then
  assets="${RISKPLATFORM_KUBE_ASSETS:-$(pwd)/../shared/kube-testenv}"
  dir="$(mktemp -d -t riskplatform-kube-XXXXXX)"
  "$assets/start" "$dir" >/dev/null
  export KUBECONFIG="$dir/kubeconfig"
  trap '"$assets/stop" "$dir" >/dev/null 2>&1 || true' EXIT
  echo "started a local Kubernetes API server: export KUBECONFIG=$KUBECONFIG"
fi
kubectl apply --validate=false -f crds/
kubectl wait --for condition=established --timeout=30s crd/riskplatforms.riskplatform.io
kubectl apply --validate=false -f examples/riskplatform.yaml
echo "operator starting; in another shell: KUBECONFIG=$KUBECONFIG kubectl get riskplatforms"
exec_status=0
./target/release/riskplatform-operator "$@" || exec_status=$?
exit "$exec_status"
