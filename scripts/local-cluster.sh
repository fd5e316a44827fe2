#!/usr/bin/env bash
# A local cluster whose pods really run: kube-testenv (API server + etcd), the local
# controller-manager (controllers, scheduler, Service proxy, kube-state-metrics) and, when built,
# the local kubelet; optionally a Prometheus scraping it all through kubernetes_sd_configs.
#
#   scripts/local-cluster.sh up DIR [--prometheus]   start; prints KUBECONFIG and Service ports
#   scripts/local-cluster.sh ports DIR               list every Service's host ports on 127.0.0.1
#   scripts/local-cluster.sh down DIR                stop exactly what `up DIR` started
#
# Binaries come from LOCALCLUSTER_BIN_DIR (default target/debug: run `cargo build --workspace --bins`).
# Each cluster claims an index N (0..=99) with an exclusive flock on /tmp/localcluster-N.lock, held
# by the processes it starts (they inherit the descriptor) and released when `down` ends them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
assets="${RISKPLATFORM_KUBE_ASSETS:-$root/../shared/kube-testenv}"
bin_dir="${LOCALCLUSTER_BIN_DIR:-$root/target/debug}"

die() { echo "local-cluster: $*" >&2; exit 1; }

# Waits up to $2 seconds for file $1 to exist.
wait_for_file() {
  local file="$1" deadline=$((SECONDS + $2))
  until [ -s "$file" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() { # name, command...: runs it in the background, logs to DIR/NAME.log, records its pid
  local name="$1"; shift
  "$@" >"$dir/$name.log" 2>&1 &
  echo "$name $!" >>"$dir/pids"
}

ports() {
  KUBECONFIG="$dir/kube/kubeconfig" kubectl get services --all-namespaces -o \
    jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} clusterIP={.spec.clusterIP} host-ports={.metadata.annotations.localcluster\.riskplatform\.io/host-ports}{"\n"}{end}'
}

up() {
  local prometheus=false
  [ "${1:-}" = "--prometheus" ] && prometheus=true
  if $prometheus && ! command -v prometheus >/dev/null; then
    die "--prometheus needs Debian's prometheus (scripts/install-deps.sh installs it)"
  fi
  [ -x "$bin_dir/local-controller-manager" ] || die "$bin_dir/local-controller-manager is not built: cargo build --workspace --bins"
  [ ! -e "$dir/pids" ] || die "$dir is already up (run: $0 down $dir)"
  mkdir -p "$dir/state"
  local index="" lock_fd
  for n in $(seq 0 99); do
    exec {lock_fd}>"/tmp/localcluster-$n.lock"
    if flock -n "$lock_fd"; then index="$n"; break; fi
    exec {lock_fd}>&-
  done
  [ -n "$index" ] || die "all 100 local cluster indexes are taken"
  echo "$index" >"$dir/index"
  : >"$dir/pids"

  "$assets/start" "$dir/kube" >/dev/null || die "kube-testenv failed to start (see $dir/kube)"
  local kubeconfig="$dir/kube/kubeconfig"
  local flags=(--kubeconfig "$kubeconfig" --state-dir "$dir/state" --index "$index")
  start controller-manager "$bin_dir/local-controller-manager" "${flags[@]}"
  wait_for_file "$dir/state/kube-state-metrics.port" 30 || die "the controller-manager did not start: $(tail -5 "$dir/controller-manager.log")"
  if [ -x "$bin_dir/local-kubelet" ]; then
    start kubelet "$bin_dir/local-kubelet" "${flags[@]}" --cadvisor-port 0 --bin-dir "$bin_dir"
    wait_for_file "$dir/state/kubelet.port" 30 || die "the kubelet did not start: $(tail -5 "$dir/kubelet.log")"
  else
    echo "local-cluster: no $bin_dir/local-kubelet: pods are scheduled but nothing runs them" >&2
  fi
  if $prometheus; then
    local port config="$dir/state/prometheus/prometheus.yml"; port="$(free_port)"
    # Debian's Prometheus is built without Kubernetes discovery; the controller-manager then
    # serves the same pod targets and meta labels through file_sd.
    if ! promtool check config "$config" >/dev/null 2>&1; then
      config="$dir/state/prometheus/prometheus-file-sd.yml"
      echo "local-cluster: this Prometheus lacks kubernetes_sd_configs: using $config" >&2
    fi
    # On the pod bridge's gateway when there is one, so pods (an in-cluster operator) reach it
    # as the host does; the kubelet creates the bridge as it starts.
    local address=127.0.0.1 gateway="10.244.$index.1"
    if [ -x "$bin_dir/local-kubelet" ]; then
      for _ in $(seq 1 150); do ip -4 addr show "lcbr$index" 2>/dev/null | grep -q "$gateway" && break; sleep 0.2; done
      ip -4 addr show "lcbr$index" 2>/dev/null | grep -q "$gateway" || die "the kubelet made no bridge lcbr$index with $gateway"
      address="$gateway"
    fi
    start prometheus prometheus --config.file="$config" \
      --storage.tsdb.path="$dir/prometheus-data" --web.listen-address="$address:$port"
    echo "http://$address:$port" >"$dir/prometheus.url"
  fi
  exec {lock_fd}>&-
  echo "export KUBECONFIG=$kubeconfig"
  echo "# cluster index $index: pod CIDR 10.244.$index.0/24, service CIDR 10.96.$index.0/24"
  echo "# kube-state-metrics: http://127.0.0.1:$(cat "$dir/state/kube-state-metrics.port")/metrics"
  if $prometheus; then echo "# prometheus: $(cat "$dir/prometheus.url")"; fi
  echo "# Service host ports (127.0.0.1:<host port>): $0 ports $dir"
}

down() {
  [ -e "$dir/pids" ] || die "$dir is not up"
  # Stop in reverse order of start; the kubelet gets time to stop its pods gracefully.
  tac "$dir/pids" | while read -r name pid; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -KILL "$pid" 2>/dev/null; then echo "local-cluster: $name did not stop in 30 s; killed" >&2; fi
  done
  "$assets/stop" "$dir/kube" >/dev/null 2>&1 || true
  local index lock_fd; index="$(cat "$dir/index")"
  # The index is free again once its processes are gone; a cluster starting meanwhile would take
  # it and make its own lcbrN, which deleting the links would remove under its pods. So the links
  # go only while this holds the index's lock; whoever holds it instead owns them (a kubelet of
  # the index recreates its bridge as it starts).
  exec {lock_fd}>"/tmp/localcluster-$index.lock"
  if flock -w 30 "$lock_fd"; then
    for link in "lcsvc$index" "lcbr$index"; do
      if ip link show "$link" >/dev/null 2>&1; then ip link del "$link"; fi
    done
  else
    echo "local-cluster: index $index is locked by another holder; its links are left to it" >&2
  fi
  exec {lock_fd}>&-
  rm -f "$dir/pids"
}

[ $# -ge 2 ] || die "usage: $0 up DIR [--prometheus] | ports DIR | down DIR"
command="$1"; dir="$(realpath -m "$2")"; shift 2
case "$command" in
  up) up "$@" ;;
  ports) ports ;;
  down) down ;;
  *) die "unknown command $command (up, ports, down)" ;;
esac
