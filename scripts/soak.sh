#!/usr/bin/env bash
# scripts/soak.sh: a bounded soak of wsnotify (issue 5, item 9).
#
#   scripts/soak.sh [--seconds N] [-- extra scripts/soak.py options]
#
# Starts its own server on loopback,
#   target/release/wsnotify --host 127.0.0.1 --port 0 --notify-interval 1s
#     --max-connections 20000 --idle-timeout 5s --ping-interval 2s --header-timeout 2s
# (built with `cargo build --release -p wsnotify` when missing or older than
# the sources), reads its port from the `listening on` line, and runs
# scripts/soak.py against it for N seconds (default 60, or $SOAK_SECONDS):
# 2,500 churning well-behaved /ws clients, 20 broadcasts/s (every 20th of
# 8 KB), chat, and bad clients of seven kinds (garbage, a stalled head, an
# upgrade then silence, a client that never reads, TCP resets, an oversize
# message, invalid UTF-8). Then every client stops and the soak checks that
# wsnotify_connections_active returns to 0 (within 15 s) and that VmRSS
# returns to within 8 MiB of its baseline (see "Soak" in docs/limits.md for why).
#
# Prints one JSON line and a human summary; exits 0 on PASS, 1 on FAIL (or
# if the server died; its log tail is printed), 2 on bad arguments.
# Environment: SOAK_SECONDS, CARGO_TARGET_DIR, SOAK_KEEP_LOG=1 (keep the
# server log and print its path).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release/wsnotify

SECONDS_ARG=${SOAK_SECONDS:-60}
EXTRA=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) [[ $# -ge 2 ]] || { echo "soak.sh: --seconds needs a value" >&2; exit 2; }
                   SECONDS_ARG=$2; shift 2 ;;
        --seconds=*) SECONDS_ARG=${1#--seconds=}; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $SECONDS_ARG =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --seconds must be a positive whole number, not '$SECONDS_ARG'" >&2; exit 2; }

say() { printf '[soak] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is not on PATH"

# Build when the binary is missing or older than the sources.
if [[ ! -x $BIN ]] || [[ -n $(find "$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$BIN" -print -quit 2>/dev/null) ]]; then
    command -v cargo >/dev/null || die "$BIN is missing or stale and cargo is not on PATH"
    say "building (cargo build --release -p wsnotify)"
    (cd "$ROOT" && cargo build --release -p wsnotify) >&2 || die "cargo build failed"
fi

# The clients need ~2,600 descriptors; soak.py raises its own soft limit too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-soak.XXXXXX")
SERVER_PID=
CLIENT_PID=
cleanup() {
    [[ -z $CLIENT_PID ]] || stop_all "$CLIENT_PID"
    # The server is stopped by signal; a drain with no clients exits at
    # once, and a third signal would force it.
    [[ -z $SERVER_PID ]] || stop_all "$SERVER_PID"
    if [[ ${SOAK_KEEP_LOG:-0} == 1 ]]; then
        say "server log kept in $TMP/server.log"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SERVER_ARGS=(--host 127.0.0.1 --port 0 --notify-interval 1s --max-connections 20000
             --idle-timeout 5s --ping-interval 2s --header-timeout 2s)
: >"$TMP/server.log"
"$BIN" "${SERVER_ARGS[@]}" >/dev/null 2>"$TMP/server.log" &
SERVER_PID=$!
PORT=$(listening_port "$TMP/server.log" "$SERVER_PID") ||
    { cat "$TMP/server.log" >&2; die "wsnotify did not start"; }
say "wsnotify pid $SERVER_PID on 127.0.0.1:$PORT: ${SERVER_ARGS[*]}"
sleep 0.5   # let the baseline RSS settle

rc=0
# Bounded: the soak, up to 15 s for clients to close, 15 s for the gauge.
timeout --kill-after=5 $((SECONDS_ARG + 60)) \
    python3 "$ROOT/scripts/soak.py" --port "$PORT" --server-pid "$SERVER_PID" \
    --seconds "$SECONDS_ARG" "${EXTRA[@]}" &
CLIENT_PID=$!
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" 2>/dev/null && status=0 || status=$?
    say "wsnotify died during the soak (exit status $status); the end of its log (routine lines left out):"
    grep -v -E 'client (connected|disconnected)|notification published' "$TMP/server.log" | tail -n 30 >&2 || true
    SERVER_PID=
    rc=1
elif [[ $rc -ne 0 ]]; then
    say "the end of the server log:"
    grep -v -E 'client (connected|disconnected)|notification published' "$TMP/server.log" | tail -n 15 >&2 || true
fi
exit "$rc"
