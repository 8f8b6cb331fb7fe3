#!/usr/bin/env bash
# make dist-check: installs what `make dist` produced the way users will, with krew, and runs it.
#   1. krew (hack/dist/krew-version.env) is built from its Go module once and cached, like helm;
#   2. `kubectl krew install --manifest --archive` into an empty KREW_ROOT: krew checks the
#      manifest and the archive's sha256, unpacks it and links the binary;
#   3. kubectl finds the plugin (`kubectl plugin list`, `kubectl poolnet --version`) and it
#      plans an example (examples/plans/);
#   4. an archive whose sha256 differs from the manifest's is refused (step 2 proves something);
#   5. `krew uninstall` removes it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
# shellcheck source=krew-version.env
source "$here/krew-version.env"
cache=${POOLNET_CACHE_DIR:-$HOME/.cache/poolnet}
krew=$cache/krew/$KREW_VERSION/bin/krew
fail() { printf 'dist-check: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok: %s\n' "$*"; }

if [[ ! -x $krew ]]; then
    command -v go >/dev/null || fail "go is required to build krew (only when it is not cached yet)"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    mkdir -p "$cache"
    exec 9>"$cache/.krew-build.lock"
    flock 9
    if [[ ! -x $krew ]]; then
        src=$(mktemp -d)
        (
            cd "$src"
            go mod init poolnet.local/krew-build >/dev/null 2>&1
            go mod edit -require="sigs.k8s.io/krew@$KREW_VERSION"
            go mod download "sigs.k8s.io/krew@$KREW_VERSION"
            go build -trimpath -ldflags="-s -w -X sigs.k8s.io/krew/internal/version.gitTag=$KREW_VERSION" \
                -o "$src/krew" sigs.k8s.io/krew/cmd/krew
        )
        mkdir -p "$(dirname "$krew")"
        mv "$src/krew" "$krew"
        rm -rf "$src"
    fi
fi
kubectl_bin=$("$repo/hack/controlplane/build.sh")/kubectl

"$here/dist.sh"
manifest=$repo/dist/krew-poolnet.yaml
archive=$(sed -n 's|^ *uri: file://||p' "$manifest" | head -1)
[[ -f $archive ]] || fail "the manifest's uri names no archive ($archive); run with DIST_BASE_URL unset"

work=$(mktemp -d /tmp/poolnet-dist-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
export KREW_ROOT=$work/krew HOME=$work/home
mkdir -p "$HOME"
"$krew" install --manifest="$manifest" --archive="$archive" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; fail "krew install --manifest"; }
[[ -f $KREW_ROOT/receipts/poolnet.yaml ]] || fail "krew wrote no receipt for poolnet"
ok "krew $KREW_VERSION installed poolnet from $(basename "$archive") (manifest and sha256 checked)"

export PATH=$KREW_ROOT/bin:$PATH
"$kubectl_bin" plugin list 2>/dev/null | grep -F "$KREW_ROOT/bin/kubectl-poolnet" >/dev/null ||
    fail "kubectl plugin list does not show kubectl-poolnet"
version=$("$kubectl_bin" poolnet --version)
want=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[[ $version == *"$want"* ]] || fail "kubectl poolnet --version says '$version', the workspace is $want"
example=$(find examples/plans -name 'seed-*.yaml' | sort | head -1)
"$kubectl_bin" poolnet plan -f "$example" >"$work/plan.out" || { cat "$work/plan.out"; fail "kubectl poolnet plan -f $example"; }
ok "kubectl finds the plugin: '$version'; it plans $example"

bad=$work/bad-manifest.yaml
sed -E 's/^( *sha256: ).*/\10000000000000000000000000000000000000000000000000000000000000000/' "$manifest" >"$bad"
if "$krew" install --manifest="$bad" --archive="$archive" >"$work/bad.log" 2>&1; then
    fail "krew accepted an archive whose sha256 differs from the manifest"
fi
grep -qi "sha256" "$work/bad.log" || { cat "$work/bad.log"; fail "the refusal does not mention the sha256"; }
ok "an archive that does not match the manifest's sha256 is refused"

# krew refuses to uninstall without a plugin index; an empty local one (a git repository with
# a plugins/ directory, what `krew update` clones) is enough and needs no network.
index=$KREW_ROOT/index/default
mkdir -p "$index/plugins"
git -C "$index" init -q && git -C "$index" -c user.name=dist-check -c user.email=dist-check@invalid \
    commit -q --allow-empty -m "empty index"
"$krew" uninstall poolnet >"$work/uninstall.log" 2>&1 || { cat "$work/uninstall.log"; fail "krew uninstall"; }
[[ ! -e $KREW_ROOT/bin/kubectl-poolnet ]] || fail "krew uninstall left the binary"
ok "krew uninstall removed it"
