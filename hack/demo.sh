#!/usr/bin/env bash
# poolnet's main job on the embedded default, no Azure account needed:
#   1. a real control plane on 127.0.0.1 (kube-apiserver + etcd + kube-controller-manager),
#   2. armsim on 127.0.0.1 (HTTPS, its own CA) seeded with an AKS-like world
#      (crates/armsim/fixtures/aks-demo.yaml: cluster aks-demo, pools game and kubenet,
#      a BYO subnet NSG, a kubenet route table, the AKS NSG with cloud-controller rules),
#   3. Node objects for the pools' VMSS instances (no kubelets: the nodes never run pods),
#   4. poolnet-operator against both, with leader election,
#   5. poolnet's admission webhooks (config/webhook/, registered by url on 127.0.0.1; the
#      operator issues the serving certificate and writes its CA bundle into them),
#   6. the samples in config/samples/: waits for every NodePoolNetwork to be Ready, then the
#      echoserver HostPortPolicy and Deployment, whose pods get cluster-unique host ports;
#      shows what poolnet wrote, in Kubernetes and in ARM; then arena-pool.yaml, whose agent
#      pool poolnet creates from its template (docs/node-pools.md).
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
(cd "$repo" && cargo build --quiet -p poolnet-operator -p armsim -p kubectl-poolnet)

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

say "Registering poolnet's admission webhooks (config/webhook/, called by url on 127.0.0.1)"
webhook_port=$(free_port)
"$target/debug/poolnet-operator" webhook-config --url-base "https://127.0.0.1:$webhook_port" \
    -f "$repo/config/webhook/webhooks.yaml" >"$dir/webhooks.yaml"
run kubectl apply --server-side -f "$dir/webhooks.yaml"

say "Starting poolnet-operator"
admin_port=$(free_port)
POD_NAMESPACE=poolnet-system POD_NAME=demo-operator \
    "$target/debug/poolnet-operator" \
    --arm-endpoint "https://127.0.0.1:$port" --arm-ca-file "$dir/armsim-ca.pem" --arm-static-token demo \
    --admin-addr "127.0.0.1:$admin_port" --resync 30s \
    --allowed-scope /subscriptions/00000000-1111-2222-3333-444444444444 \
    --webhook-addr "127.0.0.1:$webhook_port" --webhook-extra-names 127.0.0.1 \
    >"$dir/operator.log" 2>&1 &
echo $! >"$dir/operator.pid"
echo "operator log: $dir/operator.log"
# Ready once its caches are synced and its webhook certificate is served; then the CA
# bundle it wrote into the configurations lets the API server call it.
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null &&
        [[ -n $(kubectl get validatingwebhookconfiguration poolnet-validation \
            -o jsonpath='{.webhooks[0].clientConfig.caBundle}') ]]; then
        break
    fi
    sleep 0.2
done
run curl -s "http://127.0.0.1:$admin_port/readyz"
echo

say "Applying the NodePoolNetwork samples"
run kubectl apply --server-side -f "$repo/config/samples/game-pool.yaml" -f "$repo/config/samples/kubenet-pool.yaml"
if ! run kubectl wait --for=condition=Ready nodepoolnetworks --all --timeout=120s; then
    kubectl get nodepoolnetworks -o yaml || true
    echo "--- operator log ($dir/operator.log), last lines:"
    tail -50 "$dir/operator.log"
    exit 1
fi

say "The echoserver HostPortPolicy, then its Deployment"
echo="$repo/config/samples/echoserver-hostportpolicy.yaml"
# The namespace and the policy first: the operator labels the namespace so the API server
# sends its pods to poolnet before the Deployment creates any.
run kubectl apply --server-side -f "$echo" -l 'app!=echoserver-hostport'
if ! run kubectl wait --for=condition=Ready hostportpolicy/echoserver -n games --timeout=120s; then
    kubectl get hostportpolicy -n games -o yaml || true
    tail -50 "$dir/operator.log"
    exit 1
fi
run kubectl apply --server-side -f "$echo" -l app=echoserver-hostport
for _ in $(seq 1 150); do
    [[ $(kubectl get pods -n games --no-headers 2>/dev/null | wc -l) -ge 3 ]] && break
    sleep 0.2
done
# The pods never run (no kubelets), but they were admitted with their host ports.
run kubectl get pods -n games -o custom-columns='POD:.metadata.name,HOSTPORTS:.spec.containers[0].ports[*].hostPort'
pod=$(kubectl get pods -n games -o jsonpath='{.items[0].metadata.name}')
run kubectl get pod "$pod" -n games -o jsonpath='{range .spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}'
for _ in $(seq 1 100); do
    [[ $(kubectl get hpp echoserver -n games -o jsonpath='{.status.podCount}') == 3 ]] && break
    sleep 0.2
done
run kubectl get hostportpolicies -n games

say "What kubectl shows"
run kubectl get nodepoolnetworks
run kubectl get npn game -o jsonpath='{range .status.nodes[*]}{.nodeName}{"\t"}{.publicIP}{"\n"}{end}'
run kubectl get npn game -o jsonpath='{range .status.securityGroups[*].rules[*]}{.name}{"\tpriority "}{.priority}{"\t"}{.protocol}{" "}{.destinationPortRanges}{"\n"}{end}'
run kubectl get npn kubenet -o jsonpath='{.status.routeTable}{"\n"}'
run kubectl describe npn game
# The kubectl plugin, as kubectl runs it when kubectl-poolnet is on PATH (make dist; krew).
plugin() { printf '$ kubectl poolnet %s\n' "$*"; "$target/debug/kubectl-poolnet" "$@"; }
plugin status game

say "A node pool poolnet creates from spec.nodePool.template (config/samples/arena-pool.yaml)"
run kubectl apply --server-side -f "$repo/config/samples/arena-pool.yaml"
if ! run kubectl wait --for=condition=Ready npn/arena --timeout=120s; then
    kubectl get npn arena -o yaml || true
    tail -50 "$dir/operator.log"
    exit 1
fi
# The pool's two VMs join the cluster as AKS names them.
{ node arena 0; node arena 1; } | kubectl apply --server-side -f - >/dev/null
for _ in $(seq 1 150); do
    [[ $(kubectl get npn arena -o jsonpath='{.status.nodes[*].publicIP}' | wc -w) == 2 ]] && break
    sleep 0.2
done
run kubectl get npn arena
run kubectl get npn arena -o jsonpath='{.status.owned.agentPoolId}{"\n"}{.status.agentPool}{"\n"}'
plugin status arena

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
