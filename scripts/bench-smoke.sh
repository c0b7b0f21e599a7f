#!/usr/bin/env bash
# A few seconds of every wsload mode against a fresh wsnotify, so CI proves
# the load generator builds, speaks to the server and gets valid runs (0
# missing, 0 duplicate deliveries, every frame valid). Not a benchmark: the
# figures live in BENCHMARKS.md (scripts/compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

valid() {
    echo "$1"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["valid"] else 1)' "$1"
}

run() {
    echo "bench-smoke: scripts/load.sh $*" >&2
    valid "$(scripts/load.sh "$@" --tool wsload)"
}

run idle --conns 300 --duration 1
run broadcast --publish ws --conns 200 --duration 2
run broadcast --publish http --conns 200 --duration 2
run broadcast --publish http --conns 200 --rate 200 --duration 2
run echo --conns 16 --duration 2
echo "bench-smoke: scripts/drain-bench.sh --conns 200 --rate 20" >&2
valid "$(scripts/drain-bench.sh --conns 200 --rate 20 --no-build | tail -n 1)"
echo "bench-smoke: OK" >&2
