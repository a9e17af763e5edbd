#!/usr/bin/env bash
# Time `make demo` as a newcomer meets it: a fresh clone, `make demo` (venv, install, embedding,
# training, evaluation), then `make demo` again (the embedding cache hit).
#
#   scripts/time_demo.sh [REV]          # REV: what to clone (default HEAD, committed state only)
#   SHARED=/path/to/shared scripts/time_demo.sh
#
# The clone goes to a temporary folder (removed at the end) next to a link to the data folder the
# configs read as ../shared (default: the repository's ../shared). pip runs with no cache
# (PIP_NO_CACHE_DIR=1), as on a fresh machine; what pip's configuration provides (indexes, local
# wheels) it still uses. Prints wall seconds and the 1-minute load average before and after each run.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
rev=${1:-HEAD}
shared=$(cd "${SHARED:-$repo/../shared}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --no-hardlinks "$repo" "$work/latentrm"
git -C "$work/latentrm" checkout -q "$rev"
ln -s "$shared" "$work/shared"
cd "$work/latentrm"
export PIP_NO_CACHE_DIR=1 LATENTRM_HOME="$work/home"

load() { cut -d' ' -f1 /proc/loadavg; }
timed() {  # timed LABEL: make demo, its wall time and the load around it
    local label=$1 l0 t0 t1
    l0=$(load)
    t0=$(date +%s.%N)
    if ! make demo > "$work/demo.log" 2>&1; then
        tail -n 30 "$work/demo.log"
        echo "$label: make demo failed" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    printf '%-34s %6.1f s   (1-min load average %s before, %s after)\n' "$label" \
        "$(echo "$t1 - $t0" | bc)" "$l0" "$(load)"
}
echo "time_demo: $(git rev-parse --short HEAD) on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M') UTC"
timed "fresh clone: make demo"
grep -E "embedded [0-9]+ texts" "$work/demo.log" | sed 's/^.*embedded/  embedding:/' || true
timed "second run: make demo (cache hit)"
tail -n 8 "$work/demo.log"
