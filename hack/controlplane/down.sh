#!/usr/bin/env bash
# Stops the control plane started by up.sh (same POOLNET_CONTROLPLANE_DIR).
set -euo pipefail

state=${POOLNET_CONTROLPLANE_DIR:-/tmp/poolnet-controlplane}
pidfile=$state/pid

if [[ ! -f $pidfile ]]; then
    echo "controlplane: not running (no $pidfile)" >&2
    exit 0
fi
pid=$(cat "$pidfile")
if kill -TERM "$pid" 2>/dev/null; then
    # It stops its components and removes its tmpfs data before exiting.
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "controlplane: pid $pid ignored SIGTERM for 30s; killing it" >&2
        # Its components die with it (parent-death signal).
        kill -KILL "$pid"
    fi
fi
rm -f "$pidfile" "$state/ready"
echo "controlplane: stopped" >&2
