#!/usr/bin/env bash
# scripts/drain-bench.sh: the drain at N clients (issue 15), bounded.
#
#   scripts/drain-bench.sh [--conns N (10000)] [--rounds R (1)] [--rate R (100)]
#                          [--server BINARY (target/release/wsnotify)] [--no-build]
#
# For each round: starts the server pinned to core 0 with --drain-timeout 5s,
# and runs `wsload drain` pinned to core 1; wsload opens N clients that never
# leave, publishes R chat broadcasts/s, sends the server SIGTERM, and prints
# one JSON line: notice latency after the signal, broadcasts lost, the exit
# time after the last client's close. Every process is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONNS=10000
ROUNDS=1
RATE=100
SERVER=
BUILD=1
die() { echo "drain-bench.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --server) SERVER=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p wsnotify -p wsnotify-bench)
fi
SERVER=${SERVER:-$TARGET_DIR/release/wsnotify}
WSLOAD=$TARGET_DIR/release/wsload
PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOG=$(mktemp)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -f "$LOG"
}
trap cleanup EXIT

for round in $(seq "$ROUNDS"); do
    : >"$LOG"
    "${PIN_SERVER[@]}" "$SERVER" --host 127.0.0.1 --port 0 --max-connections $((CONNS + 16)) \
        --notify-interval 0 --drain-timeout 5s --log-level warn >/dev/null 2>"$LOG" &
    SERVER_PID=$!
    PORT=$(listening_port "$LOG" "$SERVER_PID") ||
        { cat "$LOG" >&2; die "the server did not print its listening line"; }
    timeout -s KILL 90 "${PIN_LOAD[@]}" "$WSLOAD" drain --port "$PORT" --conns "$CONNS" \
        --server-pid "$SERVER_PID" --rate "$RATE" --label "round $round" || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
done
