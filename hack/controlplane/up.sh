#!/usr/bin/env bash
# Starts a control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1 in the
# background, for humans and the demo. Same code as the test fixture (poolnet-controlplane).
#
# env: POOLNET_CONTROLPLANE_DIR  state dir: kubeconfig, certs, logs (default /tmp/poolnet-controlplane)
#      POOLNET_APISERVER_PORT    fixed API server port (default: a free one)
# stdout: `export KUBECONFIG=...` once /readyz answers.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${POOLNET_CONTROLPLANE_DIR:-/tmp/poolnet-controlplane}

log() { printf 'controlplane: %s\n' "$*" >&2; }

if [[ -f $state/pid ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    log "already running (pid $(cat "$state/pid")); stop it with hack/controlplane/down.sh"
    echo "export KUBECONFIG=$state/kubeconfig"
    exit 0
fi

POOLNET_K8S_BIN_DIR=$("$here/build.sh")
export POOLNET_K8S_BIN_DIR
(cd "$repo" && cargo build --quiet -p poolnet-tests --bin poolnet-controlplane)
bin=${CARGO_TARGET_DIR:-$repo/target}/debug/poolnet-controlplane

mkdir -p "$state"
rm -f "$state/ready"
# Own session: the control plane must outlive this script and the terminal.
setsid "$bin" up --dir "$state" >"$state/controlplane.log" 2>&1 </dev/null &
echo $! >"$state/pid"

for _ in $(seq 1 1200); do
    if [[ -f $state/ready ]]; then
        log "ready at $(cat "$state/ready") (logs in $state)"
        echo "export KUBECONFIG=$state/kubeconfig"
        exit 0
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        log "failed to start:"
        cat "$state/controlplane.log" >&2
        rm -f "$state/pid"
        exit 1
    fi
    sleep 0.1
done
log "not ready after 120s; see $state/controlplane.log"
exit 1
