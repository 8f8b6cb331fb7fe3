#!/usr/bin/env bash
# poolnet's main job on the embedded default, no Azure account needed:
#   1. a real control plane on 127.0.0.1 (kube-apiserver + etcd + kube-controller-manager),
#   2. armsim on 127.0.0.1 (HTTPS, its own CA) seeded with an AKS-like world
#      (crates/armsim/fixtures/aks-demo.yaml: cluster aks-demo, pools game and kubenet,
#      a BYO subnet NSG, a kubenet route table, the AKS NSG with cloud-controller rules),
#   3. Node objects for the pools' VMSS instances (no kubelets: the nodes never run pods),
#   4. poolnet-operator against both, with leader election,
#   5. the samples in config/samples/, then waits for every NodePoolNetwork to be Ready and
#      shows what poolnet wrote, in Kubernetes and in ARM.
#
# env: DEMO_KEEP=1 leaves everything running (stop with hack/demo.sh stop).
#      DEMO_DIR (default /tmp/poolnet-demo) holds logs, armsim's CA and pids.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
dir=${DEMO_DIR:-/tmp/poolnet-demo}
target=${CARGO_TARGET_DIR:-$repo/target}
SUB=00000000-1111-2222-3333-444444444444
NODE_RG=mc_rg-poolnet-demo_aks-demo_westeurope

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

stop() {
    for p in operator armsim; do
        if [[ -f $dir/$p.pid ]]; then
            kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
            rm -f "$dir/$p.pid"
        fi
    done
    "$here/controlplane/down.sh" >/dev/null 2>&1 || true
}

if [[ ${1:-} == stop ]]; then
    stop
    exit 0
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$dir"
stop
[[ ${DEMO_KEEP:-0} == 1 ]] || trap stop EXIT

say "Building poolnet-operator and armsim"
(cd "$repo" && cargo build --quiet -p poolnet-operator -p armsim)

say "Starting a local control plane"
eval "$("$here/controlplane/up.sh")"
kubectl_bin="$("$here/controlplane/build.sh")/kubectl"
kubectl() { "$kubectl_bin" "$@"; }

say "Starting armsim with the AKS demo fixture"
port=$(free_port)
"$target/debug/armsim" --listen "127.0.0.1:$port" --seed "$repo/crates/armsim/fixtures/aks-demo.yaml" \
    --tls --ca-out "$dir/armsim-ca.pem" >"$dir/armsim.log" 2>&1 &
echo $! >"$dir/armsim.pid"
for _ in $(seq 1 100); do
    [[ -s $dir/armsim-ca.pem ]] && grep -q "listening" "$dir/armsim.log" && break
    sleep 0.1
done
echo "armsim at https://127.0.0.1:$port (log: $dir/armsim.log)"

say "Installing the CRDs and registering the pools' nodes"
run kubectl apply --server-side -f "$repo/config/crd/"
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
node() { # pool, instance
    local name="aks-$1-47472799-vmss00000$2"
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  labels:
    kubernetes.azure.com/agentpool: $1
    kubernetes.io/os: linux
spec:
  providerID: azure:///subscriptions/$SUB/resourceGroups/$NODE_RG/providers/Microsoft.Compute/virtualMachineScaleSets/aks-$1-47472799-vmss/virtualMachines/$2
---
EOF
}
{ node game 0; node game 1; node game 2; node kubenet 0; node kubenet 1; } | kubectl apply --server-side -f - >/dev/null
run kubectl get nodes -L kubernetes.azure.com/agentpool
kubectl create namespace poolnet-system --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null

say "Starting poolnet-operator"
POD_NAMESPACE=poolnet-system POD_NAME=demo-operator \
    "$target/debug/poolnet-operator" \
    --arm-endpoint "https://127.0.0.1:$port" --arm-ca-file "$dir/armsim-ca.pem" --arm-static-token demo \
    --admin-addr "127.0.0.1:$(free_port)" --resync 30s \
    >"$dir/operator.log" 2>&1 &
echo $! >"$dir/operator.pid"
echo "operator log: $dir/operator.log"

say "Applying the samples"
run kubectl apply --server-side -f "$repo/config/samples/game-pool.yaml" -f "$repo/config/samples/kubenet-pool.yaml"
if ! run kubectl wait --for=condition=Ready nodepoolnetworks --all --timeout=120s; then
    kubectl get nodepoolnetworks -o yaml || true
    echo "--- operator log ($dir/operator.log), last lines:"
    tail -50 "$dir/operator.log"
    exit 1
fi

say "What kubectl shows"
run kubectl get nodepoolnetworks
run kubectl get npn game -o jsonpath='{range .status.nodes[*]}{.nodeName}{"\t"}{.publicIP}{"\n"}{end}'
run kubectl get npn game -o jsonpath='{range .status.securityGroups[*].rules[*]}{.name}{"\tpriority "}{.priority}{"\t"}{.protocol}{" "}{.destinationPortRanges}{"\n"}{end}'
run kubectl get npn kubenet -o jsonpath='{.status.routeTable}{"\n"}'
run kubectl describe npn game

say "What ARM holds now (armsim)"
arm_get() { curl -s --cacert "$dir/armsim-ca.pem" -H "Authorization: Bearer demo" "https://127.0.0.1:$port$1"; }
show() { # jq-like summaries without jq: python3 reads the JSON on stdin
    python3 -c "$1"
}
echo "NSG nsg-snet-aks (the bring-your-own subnet NSG): foreign rules kept, poolnet's added"
arm_get "/subscriptions/$SUB/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-snet-aks?api-version=2024-03-01" | show '
import json, sys
for r in json.load(sys.stdin)["properties"]["securityRules"]:
    p = r["properties"]
    ports = p.get("destinationPortRanges") or [p.get("destinationPortRange")]
    print("  %5d  %-34s %s %s" % (p["priority"], r["name"], p["protocol"], ",".join(ports)))
'
echo "Route table rt-kubenet: the cloud provider's node routes kept, poolnet's merged in"
arm_get "/subscriptions/$SUB/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/routeTables/rt-kubenet?api-version=2024-03-01" | show '
import json, sys
for r in json.load(sys.stdin)["properties"]["routes"]:
    p = r["properties"]
    print("  %-45s %-16s %s %s" % (r["name"], p["addressPrefix"], p["nextHopType"], p.get("nextHopIpAddress", "")))
'
echo "ARM requests armsim served, by method and resource type:"
curl -s --cacert "$dir/armsim-ca.pem" "https://127.0.0.1:$port/_armsim/counters" | show '
import json, sys
c = json.load(sys.stdin)["requests"]
for m in sorted(c):
    for t, n in sorted(c[m].items()):
        print("  %-7s %-55s %d" % (m, t, n))
'

if [[ ${DEMO_KEEP:-0} == 1 ]]; then
    say "Still running (KUBECONFIG=$KUBECONFIG); stop with: hack/demo.sh stop"
else
    say "Done; stopping everything"
fi
