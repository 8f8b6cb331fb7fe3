#!/usr/bin/env bash
# Keeps a long-lived cargo target directory (CI's, reused between runs) from filling the disk:
# every build of a test binary leaves a new ~500 MB executable under its own hash, and cargo
# never removes the old ones. Removes, in {debug,release}/{deps,examples}, each executable that
# a newer one of the same name superseded, and incremental caches untouched for two days.
# Nothing a current build uses is removed: cargo rebuilds what it misses.
set -euo pipefail
dir=${1:-${CARGO_TARGET_DIR:-target}}
[[ -d $dir ]] || exit 0
python3 - "$dir" <<'PY'
import os, re, sys, time
root = sys.argv[1]
freed = 0
for profile, sub in [(p, s) for p in ("debug", "release") for s in ("deps", "examples")]:
    deps = os.path.join(root, profile, sub)
    if not os.path.isdir(deps):
        continue
    exes = [f for f in os.listdir(deps)
            if re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{16}", f)
            and os.access(os.path.join(deps, f), os.X_OK)]
    exes.sort(key=lambda f: os.path.getmtime(os.path.join(deps, f)), reverse=True)
    seen = set()
    for f in exes:
        name = f[:-17]
        if name in seen:
            path = os.path.join(deps, f)
            freed += os.path.getsize(path)
            os.remove(path)
            if os.path.exists(path + ".d"):
                os.remove(path + ".d")
        else:
            seen.add(name)
    inc = os.path.join(root, profile, "incremental")
    if sub == "deps" and os.path.isdir(inc):
        cutoff = time.time() - 2 * 86400
        for d in os.listdir(inc):
            p = os.path.join(inc, d)
            if os.path.getmtime(p) < cutoff:
                for base, dirs, files in os.walk(p, topdown=False):
                    for f in files:
                        fp = os.path.join(base, f)
                        freed += os.path.getsize(fp)
                        os.remove(fp)
                    for d2 in dirs:
                        os.rmdir(os.path.join(base, d2))
                os.rmdir(p)
print(f"prune-target: freed {freed / 1e9:.1f} GB in {root}")
PY
