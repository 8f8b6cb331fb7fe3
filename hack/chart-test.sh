#!/usr/bin/env bash
# `make chart-test`: proves charts/poolnet on the local control plane.
#   1. helm lint --strict with the defaults and every charts/poolnet/ci/*-values.yaml; values
#      the schema or the templates must refuse are refused;
#   2. the default render has config/'s names and exactly config/rbac/'s rules;
#   3. every ci render passes `kubectl apply --dry-run=server` in a namespace enforcing and
#      warning at the restricted Pod Security level (any warning fails);
#   4. every operator flag (`poolnet-operator --help`) is set by some ci render;
#   5. helm install (release `edge`, so every name differs from the binary's defaults):
#      CRDs established with the keep policy, the Deployment's pods admitted as restricted,
#      RBAC checked with SubjectAccessReviews (kubectl auth can-i);
#   6. helm upgrade with a changed CRD description: the CRD follows, the caBundle the operator
#      wrote survives;
#   7. the operator binary out of cluster, with the chart's flags and the chart's
#      ServiceAccount token (TokenRequest), against armsim: it injects its CA into the
#      chart's webhook configurations and the samples go Ready;
#   8. helm uninstall: the release's objects go, the CRDs stay.
#
# env: CHART_TEST_KEEP=1 leaves the control plane, armsim and the operator running.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
chart=$repo/charts/poolnet
target=${CARGO_TARGET_DIR:-$repo/target}
started=$SECONDS
SUB=00000000-1111-2222-3333-444444444444
NODE_RG=mc_rg-poolnet-demo_aks-demo_westeurope
NS=poolnet-system
RELEASE=edge
FULL=edge-poolnet
SA=system:serviceaccount:$NS:$FULL-operator

say() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
fail() { printf 'chart-test: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok: %s\n' "$*"; }

helm_bin=$("$here/helm/build.sh")
k8s_bin=$("$here/controlplane/build.sh")
work=$(mktemp -d /tmp/poolnet-chart-test.XXXXXX)
export POOLNET_CONTROLPLANE_DIR=$work/controlplane
pids=()

cleanup() {
    local rc=$?
    if [[ ${CHART_TEST_KEEP:-0} == 1 ]]; then
        echo "kept: KUBECONFIG=$POOLNET_CONTROLPLANE_DIR/kubeconfig, logs in $work"
        return
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    "$here/controlplane/down.sh" >/dev/null 2>&1 || true
    if ((rc == 0)); then rm -rf "$work"; else echo "logs kept in $work" >&2; fi
}
trap cleanup EXIT

helm() { "$helm_bin" --kubeconfig "$POOLNET_CONTROLPLANE_DIR/kubeconfig" "$@"; }
kubectl() { "$k8s_bin/kubectl" --kubeconfig "$POOLNET_CONTROLPLANE_DIR/kubeconfig" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ci_values() { find "$chart/ci" -name '*-values.yaml' | sort; }

say "Building poolnet-operator, armsim and the control-plane runner"
# One invocation with up.sh's package set, so its own build finds everything fresh.
(cd "$repo" && cargo build --quiet --locked -p poolnet-tests -p poolnet-operator -p armsim \
    --bin poolnet-controlplane --bin poolnet-operator --bin armsim)
operator_bin=$target/debug/poolnet-operator

say "1. helm lint --strict"
helm lint --strict "$chart" >"$work/lint.log" || { cat "$work/lint.log"; fail "helm lint (defaults)"; }
for v in $(ci_values); do
    helm lint --strict "$chart" -f "$v" >"$work/lint.log" || { cat "$work/lint.log"; fail "helm lint -f $v"; }
done
ok "defaults and $(ci_values | wc -l) ci values files"
# Values that must be refused, and the words the refusal must contain.
refuses() { # expected-words, helm template args...
    local want=$1; shift
    if helm template x "$chart" "$@" >/dev/null 2>"$work/refusal"; then fail "accepted: $*"; fi
    grep -q -- "$want" "$work/refusal" || { cat "$work/refusal"; fail "refusal of $* does not mention: $want"; }
}
refuses "additional properties 'replicas' not allowed" --set replicas=3
refuses "additional properties 'tag2' not allowed" --set image.tag2=x
refuses "not both" --set metrics.serviceMonitor.enabled=true --set metrics.podMonitor.enabled=true
refuses "webhook/certificates" --set webhook.certificates.mode=secret
refuses "apiServer/cidrs" --set networkPolicy.enabled=true
refuses "allowedScopes/0" --set 'allowedScopes[0]=rg-aks'
refuses "leaderElection.enabled=false needs replicaCount: 1" --set leaderElection.enabled=false
refuses "azureWorkloadIdentity/clientId" --set azureWorkloadIdentity.clientId=my-identity
refuses "grafanaDashboard/namespace" --set metrics.grafanaDashboard.namespace=Monitoring_NS
ok "9 invalid values refused with their reason"

say "Starting a local control plane"
"$here/controlplane/up.sh" >/dev/null
kubectl apply --server-side -f "$repo/tests/fixtures/chart/third-party-crds.yaml" >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

# JSON of the objects of `kind` in a YAML stream (stdin), one array.
objects() { kubectl create --dry-run=client --validate=false -o json -f - | jq -cs --arg k "$1" '[.[] | if .kind == "List" then .items[] else . end | select(.kind == $k)]'; }

say "2. The default render matches config/"
helm template poolnet "$chart" -n poolnet-system >"$work/default.yaml"
for pair in Deployment:poolnet-operator ServiceAccount:poolnet-operator Service:poolnet-webhook \
    MutatingWebhookConfiguration:poolnet-host-ports ValidatingWebhookConfiguration:poolnet-validation \
    ClusterRole:poolnet-operator Role:poolnet-operator PodDisruptionBudget:poolnet-operator; do
    kind=${pair%%:*} name=${pair#*:}
    [[ $(objects "$kind" <"$work/default.yaml" | jq -r '.[0].metadata.name') == "$name" ]] ||
        fail "the default render has no $kind $name (config/ names it so)"
done
for kind in ClusterRole Role; do
    file=$repo/config/rbac/$([[ $kind == ClusterRole ]] && echo cluster_role || echo role).yaml
    want=$(objects "$kind" <"$file" | jq -S '.[0].rules')
    got=$(objects "$kind" <"$work/default.yaml" | jq -S '.[0].rules')
    [[ $want == "$got" ]] || { diff <(echo "$want") <(echo "$got") || true; fail "$kind rules differ from $file"; }
done
# CEL does not care about line breaks: compare the match conditions with whitespace folded.
webhooks='[.[0].webhooks[] | if .matchConditions then .matchConditions |= map(.expression |= (gsub("\\s+"; " ") | gsub("\\( "; "(") | gsub(" \\)"; ")"))) else . end]'
for kind in MutatingWebhookConfiguration ValidatingWebhookConfiguration; do
    want=$(objects "$kind" <"$repo/config/webhook/webhooks.yaml" | jq -S "$webhooks")
    got=$(objects "$kind" <"$work/default.yaml" | jq -S "$webhooks")
    [[ $want == "$got" ]] || { diff <(echo "$want") <(echo "$got") || true; fail "$kind webhooks differ from config/webhook"; }
done
ok "names, RBAC rules and webhooks as in config/"
# The Grafana dashboard ConfigMap carries the chart's dashboard unchanged, where the sidecar
# looks (its label, the folder annotation, the namespace asked for).
helm template poolnet "$chart" -n poolnet-system -f "$chart/ci/aks-values.yaml" \
    --set metrics.grafanaDashboard.namespace=monitoring >"$work/dashboard.yaml"
cm=$(objects ConfigMap <"$work/dashboard.yaml" | jq -c '[.[] | select(.metadata.name == "poolnet-grafana-dashboard")][0]')
[[ $(jq -r '.metadata.namespace' <<<"$cm") == monitoring ]] || fail "the dashboard ConfigMap is not in the namespace asked for"
[[ $(jq -r '.metadata.labels.grafana_dashboard' <<<"$cm") == 1 ]] || fail "the dashboard ConfigMap lacks the sidecar label"
[[ $(jq -r '.metadata.annotations.grafana_folder' <<<"$cm") == Platform ]] || fail "the dashboard ConfigMap lacks the folder annotation"
diff <(jq -S . "$chart/dashboards/poolnet.json") <(jq -r '.data["poolnet.json"]' <<<"$cm" | jq -S .) >/dev/null ||
    fail "the dashboard in the ConfigMap differs from charts/poolnet/dashboards/poolnet.json"
objects ConfigMap <"$work/default.yaml" | jq -e 'map(select(.metadata.name | endswith("grafana-dashboard"))) | length == 0' >/dev/null ||
    fail "the default render has a dashboard ConfigMap (it is opt-in)"
ok "Grafana dashboard ConfigMap: opt-in, the chart's JSON unchanged, label, folder and namespace"

say "3. Every ci render: kubectl apply --dry-run=server, Pod Security restricted (warnings fail)"
restricted_ns() {
    kubectl create namespace "$1" --dry-run=client -o yaml |
        kubectl label --local -f - -o yaml \
            pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted |
        kubectl apply --server-side -f - >/dev/null
}
for v in $(ci_values); do
    name=$(basename "$v" -values.yaml)
    ns=ci-$name
    restricted_ns "$ns"
    # Objects the ci values refer to but do not create.
    kubectl create secret generic armsim-token -n "$ns" --from-literal=token=x --dry-run=client -o yaml |
        kubectl apply --server-side -f - >/dev/null
    helm template poolnet "$chart" -n "$ns" -f "$v" >"$work/$name.yaml"
    if ! kubectl apply --dry-run=server -n "$ns" -f "$work/$name.yaml" >"$work/$name.out" 2>"$work/$name.err"; then
        cat "$work/$name.err"; fail "$v: dry-run refused"
    fi
    if grep -q "Warning" "$work/$name.err"; then cat "$work/$name.err"; fail "$v: warnings"; fi
    ok "$name: $(wc -l <"$work/$name.out") objects accepted, no warnings"
done
# The check itself: the same Deployment without one restricted setting draws a warning.
sed 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: true/' "$work/default.yaml" |
    kubectl apply --dry-run=server -n ci-default -f - >/dev/null 2>"$work/weakened.err" || true
grep -q 'Warning: would violate PodSecurity "restricted' "$work/weakened.err" ||
    { cat "$work/weakened.err"; fail "a weakened Deployment drew no Pod Security warning: the check above proves nothing"; }
ok "a Deployment with allowPrivilegeEscalation: true draws the restricted warning (the check works)"

say "4. Every operator flag is reachable from values"
"$operator_bin" --help >"$work/help.txt"
flags=$(grep -oE '^\s+(-[a-zA-Z], )?--[a-z0-9-]+' "$work/help.txt" | grep -oE -- '--[a-z0-9-]+' | grep -vE -- '^--(help|version)$' | sort -u)
# Flags the chart sets through the environment (downward API or a Secret) instead of args.
env_flag() { grep -E "^\s+--$1 " -A8 "$work/help.txt" | grep -oE "env: [A-Z_]+" | head -1 | cut -d' ' -f2; }
set_by_chart=$(cat "$work"/*.yaml "$work/default.yaml" | grep -oE -- '- --[a-z0-9-]+=' | grep -oE -- '--[a-z0-9-]+' | sort -u)
missing=()
for f in $flags; do
    grep -qx -- "$f" <<<"$set_by_chart" && continue
    env=$(env_flag "${f#--}")
    [[ -n $env ]] && grep -q "name: $env\$" "$work"/*.yaml && continue
    missing+=("$f")
done
((${#missing[@]} == 0)) || fail "flags no ci render sets: ${missing[*]} (add a value and set it in a ci file)"
ok "$(wc -w <<<"$flags") flags, each set by a ci render (args or env)"

say "5. helm install (release $RELEASE in $NS)"
port=$(free_port)
"$target/debug/armsim" --listen "127.0.0.1:$port" --seed "$repo/crates/armsim/fixtures/aks-demo.yaml" \
    --tls --ca-out "$work/armsim-ca.pem" >"$work/armsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ -s $work/armsim-ca.pem ]] && grep -q listening "$work/armsim.log" && break; sleep 0.1; done
restricted_ns "$NS"
kubectl create secret generic armsim-token -n "$NS" --from-literal=token=chart-test >/dev/null
install_values=(
    --set "arm.endpoint=https://127.0.0.1:$port" --set-file "arm.caBundle=$work/armsim-ca.pem"
    --set arm.staticTokenSecret.name=armsim-token
    --set "allowedScopes[0]=/subscriptions/$SUB"
    --set "webhook.certificates.self.extraNames[0]=127.0.0.1" --set resync=30s
)
helm install "$RELEASE" "$chart" -n "$NS" "${install_values[@]}" >"$work/install.txt"
grep -q "system:serviceaccount:$NS:$FULL-operator" "$work/install.txt" || { cat "$work/install.txt"; fail "NOTES.txt does not name the federated credential subject"; }
for crd in nodepoolnetworks hostportpolicies hostportclaims hostportblocks; do
    kubectl wait --for=condition=Established "crd/$crd.poolnet.dev" --timeout=60s >/dev/null
    [[ $(kubectl get crd "$crd.poolnet.dev" -o jsonpath='{.metadata.annotations.helm\.sh/resource-policy}') == keep ]] ||
        fail "CRD $crd.poolnet.dev lacks helm.sh/resource-policy: keep"
done
ok "4 CRDs established, annotated keep"
for _ in $(seq 1 300); do
    [[ $(kubectl get pods -n "$NS" -l app.kubernetes.io/instance=$RELEASE --no-headers 2>/dev/null | wc -l) -ge 2 ]] && break
    sleep 0.2
done
[[ $(kubectl get pods -n "$NS" -l app.kubernetes.io/instance=$RELEASE --no-headers | wc -l) -ge 2 ]] ||
    { kubectl get events -n "$NS" | tail -5; fail "the Deployment's two pods were not admitted in a restricted namespace"; }
ok "2 operator pods admitted under enforce=restricted (they never run: no nodes)"

can() { kubectl auth can-i "$@" --as="$SA" >/dev/null 2>&1; }
wrong=()
allowed=(
    "get leases -n $NS" "create leases -n $NS" "update leases -n $NS"
    "create secrets -n $NS" "watch secrets -n $NS"
    "watch nodepoolnetworks.poolnet.dev" "patch nodepoolnetworks.poolnet.dev"
    "patch nodepoolnetworks.poolnet.dev --subresource=status"
    "update nodepoolnetworks.poolnet.dev --subresource=finalizers"
    "list hostportpolicies.poolnet.dev -n team-a" "patch hostportpolicies.poolnet.dev --subresource=status -n team-a"
    "create hostportclaims.poolnet.dev" "delete hostportclaims.poolnet.dev"
    "patch hostportclaims.poolnet.dev --subresource=status"
    "create hostportblocks.poolnet.dev" "update hostportblocks.poolnet.dev" "delete hostportblocks.poolnet.dev"
    "patch hostportblocks.poolnet.dev --subresource=status"
    "watch pods -A" "list pods -n team-a" "list namespaces" "patch namespaces" "watch nodes"
    "create events.events.k8s.io -n team-a" "patch events -n team-a"
    "get mutatingwebhookconfigurations/$FULL-host-ports" "patch mutatingwebhookconfigurations/$FULL-host-ports"
    "get validatingwebhookconfigurations/$FULL-validation" "patch validatingwebhookconfigurations/$FULL-validation"
)
denied=(
    "get secrets -n team-a" "list secrets -A" "get secrets -n kube-system"
    "update leases -n kube-system" "delete leases -n $NS"
    "create pods -n team-a" "patch pods -n team-a" "delete pods -n team-a" "patch nodes"
    "delete nodepoolnetworks.poolnet.dev" "create hostportpolicies.poolnet.dev -n team-a"
    "patch mutatingwebhookconfigurations/poolnet-host-ports" "patch mutatingwebhookconfigurations/istio-sidecar-injector"
    "get mutatingwebhookconfigurations/istio-sidecar-injector" "patch validatingwebhookconfigurations/gatekeeper-validating"
    "delete validatingwebhookconfigurations" "create customresourcedefinitions.apiextensions.k8s.io"
)
for a in "${allowed[@]}"; do
    # shellcheck disable=SC2086
    can $a || wrong+=("denied: $a")
done
for d in "${denied[@]}"; do
    # shellcheck disable=SC2086
    can $d && wrong+=("allowed: $d")
done
((${#wrong[@]} == 0)) || fail "RBAC of the chart's ServiceAccount: $(printf '\n  %s' "${wrong[@]}")"
ok "RBAC: ${#allowed[@]} needed permissions granted, ${#denied[@]} others refused (SubjectAccessReview)"

say "6. helm upgrade with a changed CRD"
# The operator writes the CA bundle (self mode); here its ServiceAccount writes a stand-in,
# as the operator would, to see that the upgrade leaves it alone.
token=$(kubectl create token "$FULL-operator" -n "$NS" --duration=1h)
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --raw --minify -o json |
    jq --arg t "$token" '.users[0].user = {token: $t} | .contexts[0].context.namespace = "'"$NS"'"' >"$work/operator.kubeconfig"
as_operator() { "$k8s_bin/kubectl" --kubeconfig "$work/operator.kubeconfig" "$@"; }
bundle=$(base64 -w0 <"$work/armsim-ca.pem")
as_operator patch validatingwebhookconfiguration "$FULL-validation" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$bundle\"}]" >/dev/null
cp -r "$chart" "$work/chart-next"
marker="Changed by the chart-test upgrade."
crd_file=$work/chart-next/templates/crds/nodepoolnetworks.poolnet.dev.yaml
# The first description's text starts with the marker (quoted or plain scalar alike).
sed -i -E "0,/^(\s*description: '?)/s//\1$marker /" "$crd_file"
grep -qF "$marker" "$crd_file" || fail "could not change a description in $crd_file"
helm upgrade "$RELEASE" "$work/chart-next" -n "$NS" "${install_values[@]}" >/dev/null
# Read into a file first: under pipefail, `kubectl ... | grep -q` fails whenever grep exits
# before kubectl has written everything (SIGPIPE), which a large CRD makes likely.
kubectl get crd nodepoolnetworks.poolnet.dev -o json >"$work/crd-after-upgrade.json"
grep -qF "$marker" "$work/crd-after-upgrade.json" || fail "helm upgrade did not update the CRD"
ok "the CRD carries the new description"
[[ $(kubectl get validatingwebhookconfiguration "$FULL-validation" -o jsonpath='{.webhooks[0].clientConfig.caBundle}') == "$bundle" ]] ||
    fail "helm upgrade dropped the caBundle written by the operator"
ok "the caBundle written outside helm survived the upgrade"

say "7. The operator, out of cluster, with the chart's flags and ServiceAccount token, against armsim"
admin_port=$(free_port)
webhook_port=$(free_port)
kubectl get deployment "$FULL-operator" -n "$NS" -o json >"$work/deployment.json"
mapfile -t args < <(jq -r --arg admin "127.0.0.1:$admin_port" --arg webhook "127.0.0.1:$webhook_port" \
    --arg ca "$work/armsim-ca.pem" '.spec.template.spec.containers[0].args[]
      | if startswith("--admin-addr=") then "--admin-addr=" + $admin
        elif startswith("--webhook-addr=") then "--webhook-addr=" + $webhook
        elif startswith("--arm-ca-file=") then "--arm-ca-file=" + $ca
        else . end' "$work/deployment.json")
static_token=$(kubectl get secret armsim-token -n "$NS" -o jsonpath='{.data.token}' | base64 -d)
# The API server calls the webhooks by url here (no Service reaches this process).
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
    name=$(kubectl get "$kind" -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{.items[0].metadata.name}')
    kubectl get "$kind" "$name" -o yaml >"$work/$kind.yaml"
    "$operator_bin" webhook-config --url-base "https://127.0.0.1:$webhook_port" -f "$work/$kind.yaml" |
        kubectl replace -f - >/dev/null
done
KUBECONFIG=$work/operator.kubeconfig POD_NAMESPACE=$NS POD_NAME=chart-test-operator \
    POOLNET_ARM_STATIC_TOKEN=$static_token "$operator_bin" "${args[@]}" >"$work/operator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    validation_bundle=$(kubectl get validatingwebhookconfiguration "$FULL-validation" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null &&
        [[ -n $validation_bundle && $validation_bundle != "$bundle" ]] &&
        [[ $(kubectl get mutatingwebhookconfiguration "$FULL-host-ports" -o jsonpath='{.webhooks[1].clientConfig.caBundle}') != "" ]] &&
        break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null || { tail -30 "$work/operator.log"; fail "the operator is not ready"; }
[[ $(kubectl get mutatingwebhookconfiguration "$FULL-host-ports" -o jsonpath='{.webhooks[1].clientConfig.caBundle}') != "" ]] ||
    { tail -30 "$work/operator.log"; fail "the operator did not write its CA into $FULL-host-ports"; }
[[ $validation_bundle != "$bundle" ]] ||
    { tail -30 "$work/operator.log"; fail "the operator did not replace the stand-in CA in $FULL-validation"; }
ok "ready; its CA is in $FULL-host-ports and $FULL-validation (names from the values)"
[[ $(kubectl get lease "$FULL-operator" -n "$NS" -o jsonpath='{.spec.holderIdentity}') == chart-test-operator ]] ||
    fail "the operator does not hold the Lease $FULL-operator in $NS"
ok "it holds the Lease $FULL-operator in $NS"
node() { # pool, instance
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: aks-$1-47472799-vmss00000$2
  labels:
    kubernetes.azure.com/agentpool: $1
    kubernetes.io/os: linux
spec:
  providerID: azure:///subscriptions/$SUB/resourceGroups/$NODE_RG/providers/Microsoft.Compute/virtualMachineScaleSets/aks-$1-47472799-vmss/virtualMachines/$2
---
EOF
}
{ node game 0; node game 1; node game 2; node kubenet 0; node kubenet 1; } | kubectl apply --server-side -f - >/dev/null
# Through the validating webhook, served by this process with its self-managed certificate.
kubectl apply --server-side -f "$repo/config/samples/game-pool.yaml" -f "$repo/config/samples/kubenet-pool.yaml" >/dev/null
if ! kubectl wait --for=condition=Ready nodepoolnetworks --all --timeout=120s >/dev/null; then
    kubectl get nodepoolnetworks -o yaml | tail -40
    tail -30 "$work/operator.log"
    fail "the samples did not become Ready"
fi
ok "samples game and kubenet Ready (admitted by the webhook, reconciled against armsim)"
# The running operator serves every family the shipped dashboard queries, and per-subscription
# ARM figures for the subscription the samples live in.
curl -sf "http://127.0.0.1:$admin_port/metrics" >"$work/metrics.txt" || fail "GET /metrics"
missing=()
for series in $(jq -r '.. | .expr? // empty' "$chart/dashboards/poolnet.json" | grep -oE 'poolnet_[a-z_]+' | sort -u); do
    family=$series
    grep -q "^# TYPE $family " "$work/metrics.txt" || family=$(sed -E 's/_(total|bucket|sum|count)$//' <<<"$series")
    grep -q "^# TYPE $family " "$work/metrics.txt" || missing+=("$series")
done
((${#missing[@]} == 0)) || fail "the operator's /metrics lacks what the dashboard queries: ${missing[*]}"
grep -qE "^poolnet_arm_subscription_requests_total\{subscription=\"$SUB\",class=\"write\"\} [1-9]" "$work/metrics.txt" ||
    { grep poolnet_arm_subscription "$work/metrics.txt" || true; fail "no ARM writes counted for subscription $SUB"; }
ok "/metrics has every family the Grafana dashboard queries, and ARM writes for subscription $SUB"
# Deleting them runs poolnet's clean-up while the operator still runs.
kubectl delete nodepoolnetworks --all --timeout=120s >/dev/null
ok "samples deleted (finalizers done)"
kill "${pids[-1]}" && wait "${pids[-1]}" 2>/dev/null || true

say "8. helm uninstall"
helm uninstall "$RELEASE" -n "$NS" >/dev/null
left=$(kubectl get deployment,serviceaccount,role,rolebinding,service,poddisruptionbudget,configmap -n "$NS" \
    -l app.kubernetes.io/instance=$RELEASE -o name)
left+=$(kubectl get clusterrole,clusterrolebinding,mutatingwebhookconfiguration,validatingwebhookconfiguration \
    -l app.kubernetes.io/instance=$RELEASE -o name | grep -v customresourcedefinition || true)
[[ -z $left ]] || fail "left after uninstall: $left"
for crd in nodepoolnetworks hostportpolicies hostportclaims hostportblocks; do
    kubectl get crd "$crd.poolnet.dev" >/dev/null || fail "helm uninstall deleted CRD $crd.poolnet.dev (crds.keep)"
done
ok "the release's objects are gone; the 4 CRDs stay (crds.keep)"

say "chart-test passed"
