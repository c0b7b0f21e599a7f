#!/usr/bin/env bash
# A few seconds of every wsload mode against a fresh wsnotify, so CI proves
# the load generator builds, speaks to the server and gets valid runs (0
# missing, 0 duplicate deliveries, every frame valid), and that every
# memory attack stays within the memory formula. drain-resume needs
# redis-server, and so do scale.sh and the --redis upgrade. Not a benchmark: the
# figures live in BENCHMARKS.md (scripts/compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

check() { # COMMAND...: prints its JSON line; fails unless the run is valid
    echo "bench-smoke: $*" >&2
    local line
    line=$("$@")
    echo "$line"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["valid"] else 1)' "$line"
}
run() { check scripts/load.sh "$@" --tool wsload; }

run idle --conns 300 --duration 1
run broadcast --publish ws --conns 200 --duration 2
run broadcast --publish http --conns 200 --duration 2
run broadcast --publish http --conns 200 --rate 200 --duration 2
run echo --conns 16 --duration 2
# Two servers on a real redis-server; A drains, its clients resume on B
# (about 13 s: the reconnect hints spread over 10 s).
check scripts/drain-resume.sh --conns 200 --rate 100
# Two instances behind one redis-server, 200 clients each, published
# through the first only: every client gets every broadcast once.
check scripts/scale.sh --instances 2 --conns-per-instance 200 --messages 20 --no-build
# The drain at 200 clients that never leave, broadcasts flowing.
check scripts/drain-bench.sh --conns 200 --rate 20 --no-build
# A --handover upgrade under load, with and without Redis: the old
# server's 50 clients resume on the new one at once (about 3 s each), and
# every broadcast reaches every client once, in offset order.
check scripts/upgrade-bench.sh --clients 50 --rate 20 --reconnect now --before 1
check scripts/upgrade-bench.sh --clients 50 --rate 20 --reconnect now --before 1 --redis
# Every memory attack against a fresh server with small bounds: each peak
# RSS must stay within the memory formula (exit 1 otherwise; about 40 s).
echo "bench-smoke: scripts/memory-attacks.py --small --seconds 3" >&2
python3 scripts/memory-attacks.py --small --seconds 3
echo "bench-smoke: OK" >&2
