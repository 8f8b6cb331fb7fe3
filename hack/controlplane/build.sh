#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kubectl) and etcd from their Go modules, into a cache outside the work tree.
#
# stdout: exactly one line, the directory holding all four binaries (etcd is a symlink),
#         suitable for POOLNET_K8S_BIN_DIR. Progress goes to stderr.
# env:    POOLNET_CACHE_DIR (default $HOME/.cache/poolnet), POOLNET_K8S_VERSION,
#         POOLNET_ETCD_VERSION (defaults in versions.env).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
k8s_version=${POOLNET_K8S_VERSION:-$K8S_VERSION}
etcd_version=${POOLNET_ETCD_VERSION:-$ETCD_VERSION}
cache=${POOLNET_CACHE_DIR:-$HOME/.cache/poolnet}

k8s_root=$cache/k8s/$k8s_version
etcd_root=$cache/etcd/$etcd_version
k8s_bin=$k8s_root/bin
etcd_bin=$etcd_root/bin

log() { printf 'controlplane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Go picks the toolchain from the module graph otherwise and would try to download one.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
build_flags=(-trimpath -ldflags="-s -w" -p "$(nproc)")

mkdir -p "$cache"
# Parallel test runs or a human and `make` may call this at once: one builder at a time.
exec 9>"$cache/.build.lock"
flock 9

have_all() { local d=$1; shift; for b in "$@"; do [[ -x $d/$b ]] || return 1; done; }

build_k8s() {
    local src=$k8s_root/src out=$k8s_root/bin.partial
    rm -rf "$src" "$out"
    mkdir -p "$src" "$out"
    log "resolving k8s.io/kubernetes@$k8s_version"
    local gomod
    gomod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$k8s_version" | jq -r '.GoMod')
    [[ -f $gomod ]] || die "go mod download did not yield a go.mod for k8s.io/kubernetes@$k8s_version"

    # Kubernetes points its k8s.io/* staging modules at ./staging/src/...; those replaces are
    # ignored for a dependency, so the wrapper maps each one to its published v0.Y.Z release.
    local staging_version=v0.${k8s_version#v1.}
    local staging
    staging=$(go mod edit -json "$gomod" |
        jq -r '.Replace[]? | select(.New.Path | startswith("./staging/src/")) | .Old.Path')
    [[ -n $staging ]] || die "no ./staging/src replace lines found in $gomod"

    local go_directive
    go_directive=$(go mod edit -json "$gomod" | jq -r '.Go')
    (
        cd "$src"
        go mod init poolnet.local/controlplane-build >/dev/null 2>&1
        go mod edit -go="$go_directive" -require="k8s.io/kubernetes@$k8s_version"
        for m in $staging; do
            go mod edit -replace="$m=$m@$staging_version"
        done
        log "$(wc -w <<<"$staging") staging modules replaced with $staging_version"

        # Same version stamping as Kubernetes' own hack/lib/version.sh, so kubectl and the
        # apiserver report the real version instead of v0.0.0-master.
        local minor=${k8s_version#v1.}; minor=${minor%%.*}
        local ldx="" pkg
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldx+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
            ldx+=" -X $pkg.gitTreeState=clean"
        done
        log "building kube-apiserver kube-controller-manager kubectl $k8s_version"
        go build -trimpath -ldflags="-s -w$ldx" -p "$(nproc)" -tags=notest,grpcnotrace \
            -o "$out/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kubectl
    )
    rm -rf "$k8s_bin"
    mv "$out" "$k8s_bin"
}

build_etcd() {
    local src=$etcd_root/src out=$etcd_root/bin.partial
    rm -rf "$src" "$out"
    mkdir -p "$src" "$out"
    (
        cd "$src"
        go mod init poolnet.local/etcd-build >/dev/null 2>&1
        go mod edit -require="go.etcd.io/etcd/server/v3@$etcd_version"
        # etcd's own go.mod replaces its sibling modules with ../api etc.; those are ignored
        # here and its requires already name published versions, so nothing to rewrite.
        log "building etcd $etcd_version"
        go build "${build_flags[@]}" -o "$out/etcd" go.etcd.io/etcd/server/v3
    )
    rm -rf "$etcd_bin"
    mv "$out" "$etcd_bin"
}

start=$SECONDS
built=0
if ! have_all "$etcd_bin" etcd || ! have_all "$k8s_bin" kube-apiserver kube-controller-manager kubectl; then
    command -v go >/dev/null || die "go is required to build the control plane (only when it is not cached yet)"
fi
if ! have_all "$etcd_bin" etcd; then build_etcd; built=1; fi
if ! have_all "$k8s_bin" kube-apiserver kube-controller-manager kubectl; then build_k8s; built=1; fi
ln -sfn "$etcd_bin/etcd" "$k8s_bin/etcd"

if ((built)); then
    log "built in $((SECONDS - start))s"
else
    log "cached binaries reused ($k8s_bin)"
fi
echo "$k8s_bin"
