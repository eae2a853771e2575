#!/usr/bin/env bash
# `make run`: the API server (with its controllers and scheduler) and, where a Docker Engine is
# reachable, one node agent running pods as Docker containers. Ctrl-C stops both.
#   run-cluster.sh DATA_DIR PORT NODE_NAME NODE_PORT BIN_DIR
set -euo pipefail
data_dir=$1 port=$2 node_name=$3 node_port=$4 bin=$5
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/apiserver" --data-dir "$data_dir" --secure-port "$port" &
pids+=($!)

# The server is up once it answers; its first start also writes the PKI.
for _ in $(seq 1 600); do
    if curl -sk -o /dev/null "https://127.0.0.1:$port/readyz" 2>/dev/null; then break; fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "the API server exited" >&2; exit 1; fi
    sleep 0.2
done

if docker info >/dev/null 2>&1; then
    node_dir="$data_dir/node-$node_name"
    "$bin/certs" node --pki-dir "$data_dir/pki" --node-name "$node_name" --address 127.0.0.1 \
        --server "https://127.0.0.1:$port" --out-dir "$node_dir" >/dev/null
    "$bin/nodeagent" --kubeconfig "$node_dir/kubelet.kubeconfig" --node-name "$node_name" \
        --runtime docker --address 127.0.0.1 --streaming-port "$node_port" \
        --tls-cert-file "$node_dir/kubelet.crt" --tls-private-key-file "$node_dir/kubelet.key" \
        --client-ca-file "$node_dir/ca.crt" --root-dir "$node_dir/root" &
    pids+=($!)
    echo "node agent: node $node_name runs pods as Docker containers (streaming port $node_port)"
else
    echo "No Docker Engine is reachable ('docker info' failed): the control plane runs without a node," >&2
    echo "so pods are scheduled nowhere and stay Pending." >&2
fi
wait -n "${pids[@]}"
