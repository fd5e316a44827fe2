#!/usr/bin/env bash
# The main job.
#
# Without KUBECONFIG it runs the product as a user would, on a local cluster whose pods really
# run (scripts/local-cluster.sh: kube-testenv, the local controller-manager, kubelet and
# Prometheus): a PostgreSQL for the pods plays your database (scripts/local-database.sh), the Helm
# chart installs the operator as a pod (through the real Helm library, tests/helm/install.py), and
# the example RiskPlatform is applied with that database's credentials. Once the platform is
# Ready it prints how to reach the API and send it a prediction, then follows the operator's log;
# Ctrl-C stops it and the whole local cluster.
#
# With KUBECONFIG set it installs the CRD and the example into that cluster and runs the operator
# on this host in the foreground (arguments go to the operator).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${KUBECONFIG:-}" ]; then
  cargo build --release -p riskplatform-operator
  kubectl apply --validate=false -f crds/
  kubectl wait --for condition=established --timeout=30s crd/riskplatforms.riskplatform.io
  kubectl apply --validate=false -f examples/riskplatform.yaml
  echo "operator starting; in another shell: KUBECONFIG=$KUBECONFIG kubectl get riskplatforms"
  exec ./target/release/riskplatform-operator "$@"
fi

bash scripts/install-deps.sh >/dev/null
# The kubelet runs the images the chart and the operator deploy as these binaries.
cargo build --release --workspace --bins
dir="$(mktemp -d -t riskplatform-cluster-XXXXXX)"
follower=""
cleanup() {
  [ -z "$follower" ] || kill "$follower" 2>/dev/null || true
  scripts/local-database.sh down "$dir" || true
  scripts/local-cluster.sh down "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
# Ctrl-C reaches every process of the group; without its own trap bash would die of it before
# the EXIT trap stops the database (PostgreSQL runs detached and would be left listening).
trap 'exit 130' INT TERM
LOCALCLUSTER_BIN_DIR="$(pwd)/target/release" scripts/local-cluster.sh up "$dir" --prometheus
export KUBECONFIG="$dir/kube/kubeconfig"
scripts/local-database.sh up "$dir"

echo "== helm upgrade --install rp charts/riskplatform-operator (namespace riskplatform-system)"
python3 tests/helm/install.py --kubeconfig "$KUBECONFIG" --namespace riskplatform-system --release rp \
  --values '{"replicaCount": 1}'
kubectl -n riskplatform-system wait --for=condition=Available --timeout=180s deployment/rp-riskplatform-operator

echo "== kubectl apply -f examples/riskplatform.yaml (with the local database and Prometheus)"
# Then the example's placeholder password becomes the local database's real one (in this order:
# the example's own Secret would overwrite it), and its Prometheus the local cluster's (on the pod
# bridge, where the operator pod reaches it).
kubectl apply --validate=false -f examples/riskplatform.yaml
scripts/local-database.sh secret "$dir" default risk-db-credentials
prometheus_url="$(cat "$dir/prometheus.url")"
kubectl patch riskplatform risk --type merge -p "{\"spec\":{\"prometheus\":{\"url\":\"$prometheus_url\"}}}"
ready=""
for _ in $(seq 1 150); do
  ready="$(kubectl get riskplatform risk -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')"
  [ "$ready" = True ] && break
  sleep 2
done
if [ "$ready" != True ]; then
  kubectl get riskplatform risk -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  echo "run: the platform was not Ready within 300 s" >&2
  exit 1
fi
kubectl get riskplatforms,deployments,statefulsets,pods

# The API Service's host port: the local cluster's Service proxy forwards it to the API pods.
api_port="$(kubectl get service risk-api \
  -o jsonpath='{.metadata.annotations.localcluster\.riskplatform\.io/host-ports}' | tr ',' '\n' | sed -n 's/^80=//p')"
cat <<EOF

The platform is Ready. In another shell:

  export KUBECONFIG=$KUBECONFIG
  api=http://127.0.0.1:$api_port
  curl -s \$api/health/ready

Then create a tenant and send a prediction as README.md ("The two commands") shows.
Prometheus: $prometheus_url    Service ports: scripts/local-cluster.sh ports $dir
Following the operator's log; Ctrl-C stops the platform and the local cluster.
EOF
# The local kubelet keeps container logs in files (it serves no `kubectl logs`). In the
# background, so that Ctrl-C interrupts the wait at once and runs the traps.
tail -n 20 -F "$dir"/state/pods/riskplatform-system_rp-riskplatform-operator-*/operator/*.log &
follower=$!
wait "$follower"
