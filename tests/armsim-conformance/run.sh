#!/usr/bin/env bash
# Fidelity check of armsim against the official Azure SDK for Python.
# Creates ./.venv (git-ignored) if needed, builds armsim, starts it with TLS on a free
# loopback port, runs pytest, and stops armsim. Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
target="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.armsim-conformance-requirements"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

(cd "$root" && cargo build --quiet -p armsim)

tmp="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$target/debug/armsim" \
    --listen "127.0.0.1:$port" \
    --tls --ca-out "$tmp/ca.pem" \
    --seed "$root/crates/armsim/fixtures/aks-demo.yaml" \
    --config "$here/armsim.yaml" \
    >"$tmp/armsim.out" 2>"$tmp/armsim.err" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if grep -q "armsim listening" "$tmp/armsim.out" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "armsim exited early:" >&2
        cat "$tmp/armsim.err" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q "armsim listening" "$tmp/armsim.out" || { echo "armsim did not start" >&2; cat "$tmp/armsim.err" >&2; exit 1; }

export ARMSIM_URL="https://127.0.0.1:$port"
export ARMSIM_CA="$tmp/ca.pem"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"
