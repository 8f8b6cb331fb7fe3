#!/usr/bin/env bash
# Builds the pinned helm (hack/helm/version.env) from its Go module, helm.sh/helm/v3, into a
# cache outside the work tree, the way hack/controlplane/build.sh builds the control plane.
#
# stdout: exactly one line, the path of the helm binary. Progress goes to stderr.
# env:    POOLNET_CACHE_DIR (default $HOME/.cache/poolnet), POOLNET_HELM_VERSION.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=version.env
source "$here/version.env"
version=${POOLNET_HELM_VERSION:-$HELM_VERSION}
cache=${POOLNET_CACHE_DIR:-$HOME/.cache/poolnet}
root=$cache/helm/$version
bin=$root/bin/helm

log() { printf 'helm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -x $bin ]]; then
    log "cached binary reused ($bin)"
    echo "$bin"
    exit 0
fi
command -v go >/dev/null || die "go is required to build helm (only when it is not cached yet)"

# Go picks the toolchain from the module graph otherwise and would try to download one.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$cache"
# One builder at a time (parallel make targets, a human and CI).
exec 9>"$cache/.helm-build.lock"
flock 9
if [[ -x $bin ]]; then echo "$bin"; exit 0; fi

start=$SECONDS
src=$root/src out=$root/bin.partial
rm -rf "$src" "$out"
mkdir -p "$src" "$out"
(
    cd "$src"
    go mod init poolnet.local/helm-build >/dev/null 2>&1
    go mod edit -require="helm.sh/helm/v3@$version"
    # helm's go.mod has no replace directives, so a wrapper module that requires it resolves
    # exactly helm's own dependency versions.
    go mod download "helm.sh/helm/v3@$version"
    client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go) # v0.Y.Z
    minor=${client_go#v0.}; minor=${minor%%.*}
    # The version stamping of helm's own Makefile: `helm version` reports the real version and
    # the default Kubernetes version of `helm template` / `helm lint` follows client-go.
    ldx="-X helm.sh/helm/v3/internal/version.version=$version"
    ldx+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldx+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
    done
    log "building helm $version (client-go $client_go)"
    go build -trimpath -ldflags="-s -w $ldx" -p "$(nproc)" -o "$out/helm" helm.sh/helm/v3/cmd/helm
)
rm -rf "$root/bin" "$src"
mv "$out" "$root/bin"
log "built in $((SECONDS - start))s"
echo "$bin"
