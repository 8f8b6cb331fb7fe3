#!/usr/bin/env bash
# make dist: release archives of kubectl-poolnet, their sha256, and a krew plugin manifest.
#
# Builds for the host platform only (this machine has no cross toolchains). A release
# pipeline runs it once per platform (linux/darwin/windows, amd64/arm64), or sets
# DIST_TARGETS to rustup targets it has installed, then merges the krew platform entries.
#
#   DIST_BASE_URL  where the archives will be downloadable (the krew manifest's uri);
#                  default: file://<repo>/dist, for `kubectl krew install --manifest=...`
#   DIST_TARGETS   space-separated rustup targets; default: the host's
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="$repo/dist"
base_url="${DIST_BASE_URL:-file://$out}"
host=$(rustc -vV | sed -n 's/^host: //p')
targets="${DIST_TARGETS:-$host}"
mkdir -p "$out"
platforms=""
for t in $targets; do
    case "$t" in
        x86_64-*linux*) os=linux arch=amd64 ;;
        aarch64-*linux*) os=linux arch=arm64 ;;
        x86_64-apple-*) os=darwin arch=amd64 ;;
        aarch64-apple-*) os=darwin arch=arm64 ;;
        x86_64-pc-windows-*) os=windows arch=amd64 ;;
        *) echo "dist: no krew platform for target $t" >&2; exit 1 ;;
    esac
    exe=kubectl-poolnet
    [ "$os" = windows ] && exe=kubectl-poolnet.exe
    cargo build --release --locked -p kubectl-poolnet --target "$t"
    stage=$(mktemp -d)
    cp "$target_dir/$t/release/$exe" "$stage/"
    cp README.md "$stage/README.md"
    printf 'Apache-2.0: see the project repository.\n' >"$stage/LICENSE"
    archive="kubectl-poolnet_v${version}_${os}_${arch}.tar.gz"
    tar -C "$stage" --owner=0 --group=0 --mtime='2026-01-01 00:00:00' -czf "$out/$archive" .
    rm -rf "$stage"
    sum=$(sha256sum "$out/$archive" | cut -d' ' -f1)
    echo "$sum  $archive" >"$out/$archive.sha256"
    platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $base_url/$archive
    sha256: $sum
    bin: $exe
"
    echo "dist: $out/$archive ($sum)"
done
manifest="$out/krew-poolnet.yaml"
awk -v v="$version" -v p="$platforms" '{ gsub("@VERSION@", v); if ($0 == "@PLATFORMS@") printf "%s", p; else print }' \
    hack/dist/krew-poolnet.yaml.in >"$manifest"
echo "dist: $manifest"
