#!/usr/bin/env bash
# scripts/upgrade-bench.sh: a one-host upgrade (--handover) under load, end
# to end, with wsload's upgrade mode.
#
#   scripts/upgrade-bench.sh [--clients N (50)] [--rate R (20)] [--reconnect hint|now (hint)]
#                            [--redis] [--seconds S (60)] [--before S (2)] [--workers W (1)]
#                            [--drain-timeout DUR (20s)] [--old-server BIN] [--label TEXT]
#                            [-- extra wsload arguments]
#
# wsload starts the old server (--handover PATH in a scratch directory,
# --port 0 on 127.0.0.1), connects N clients that behave like /client.js
# and a publisher posting R broadcasts/s over HTTP keep-alive, starts the
# new server with the same --handover PATH after --before seconds, and
# publishes until every client has followed its shutdown_notice to the new
# server (at its hint, or at once with --reconnect now) and the old one
# has exited; then a final marker. Prints wsload's JSON line (missing,
# duplicates, resumes, unanswered requests, times; bench/README.md); exit
# code as wsload's: 0 nothing was lost, 1 something was, 2 bad arguments.
#
# --redis starts a redis-server on a free loopback port and runs both
# servers on it. --seconds bounds the upgrade (every client moved, the old
# server gone); the whole run is killed 90 s after that at the latest.
# WSNOTIFY_BIN picks the server binary (default target/release/wsnotify);
# --old-server BIN runs another binary as the old server (an older build,
# for contrast). Every process started is stopped by PID at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
SERVER_BIN=${WSNOTIFY_BIN:-$TARGET_DIR/release/wsnotify}

CLIENTS=50
RATE=20
RECONNECT=hint
REDIS=0
SECONDS_LIMIT=60
BEFORE=2
WORKERS=1
DRAIN_TIMEOUT=20s
OLD_BIN=
LABEL=upgrade-bench.sh
EXTRA=()
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "upgrade-bench.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --clients) need_value "$@"; CLIENTS=$2; shift 2 ;;
        --rate) need_value "$@"; RATE=$2; shift 2 ;;
        --reconnect) need_value "$@"; RECONNECT=$2; shift 2 ;;
        --redis) REDIS=1; shift ;;
        --seconds) need_value "$@"; SECONDS_LIMIT=$2; shift 2 ;;
        --before) need_value "$@"; BEFORE=$2; shift 2 ;;
        --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
        --drain-timeout) need_value "$@"; DRAIN_TIMEOUT=$2; shift 2 ;;
        --old-server) need_value "$@"; OLD_BIN=$2; shift 2 ;;
        --label) need_value "$@"; LABEL=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "upgrade-bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || { echo "upgrade-bench.sh: bad --clients '$CLIENTS'" >&2; exit 2; }
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "upgrade-bench.sh: bad --workers '$WORKERS'" >&2; exit 2; }
[[ $SECONDS_LIMIT =~ ^[1-9][0-9]*$ ]] || { echo "upgrade-bench.sh: bad --seconds '$SECONDS_LIMIT' (whole seconds)" >&2; exit 2; }
[[ $RECONNECT == hint || $RECONNECT == now ]] || { echo "upgrade-bench.sh: --reconnect is hint or now" >&2; exit 2; }
[[ -z $OLD_BIN || -x $OLD_BIN ]] || { echo "upgrade-bench.sh: $OLD_BIN is not an executable" >&2; exit 2; }

say() { printf '[upgrade-bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Both servers hold a descriptor per client for a while, and wsload one.
(( CLIENTS * 3 + 200 < $(ulimit -n) )) || die "--clients $CLIENTS needs more descriptors than ulimit -n $(ulimit -n)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-upgrade-bench.XXXXXX")
PIDS=()
LOAD_PID=
cleanup() {
    # The servers die with wsload (PR_SET_PDEATHSIG) and wsload stops them
    # itself; their pids, from its log, are stopped here too should either
    # have been missed.
    local servers=()
    if [[ -f $TMP/wsload.err ]]; then
        mapfile -t servers < <(sed -n 's/^wsload: started the [a-z]* server: pid \([0-9]*\)$/\1/p' "$TMP/wsload.err")
    fi
    stop_all $LOAD_PID "${servers[@]}" "${PIDS[@]}"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for pkg in wsnotify:wsnotify wsnotify-bench:wsload; do
    bin=${pkg#*:}
    [[ -x $TARGET_DIR/release/$bin ]] && continue
    [[ $bin == wsnotify && -n ${WSNOTIFY_BIN:-} ]] && continue
    say "building $bin (cargo build --release -p ${pkg%%:*})"
    (cd "$ROOT" && cargo build --release -p "${pkg%%:*}") >&2 || die "cargo build failed"
done

args=(upgrade --handover "$TMP/handover.sock" --log-dir "$TMP" --conns "$CLIENTS" --rate "$RATE"
      --reconnect "$RECONNECT" --before "$BEFORE" --duration "$SECONDS_LIMIT"
      --drain-timeout "$DRAIN_TIMEOUT" --server-args "--workers $WORKERS" --label "$LABEL")
if [[ -n $OLD_BIN ]]; then
    args+=(--server "$OLD_BIN" --new-server "$SERVER_BIN")
else
    args+=(--server "$SERVER_BIN")
fi

if ((REDIS)); then
    command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no \
        >"$TMP/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || die "redis-server did not start on $REDIS_PORT"
    args+=(--redis "redis://127.0.0.1:$REDIS_PORT")
    say "redis-server on 127.0.0.1:$REDIS_PORT"
fi

say "wsload ${args[*]} ${EXTRA[*]}"
rc=0
timeout --kill-after=5 $((SECONDS_LIMIT + 90)) "$TARGET_DIR/release/wsload" "${args[@]}" "${EXTRA[@]}" \
    2> >(tee "$TMP/wsload.err" >&2) &
LOAD_PID=$!
wait "$LOAD_PID" || rc=$?
LOAD_PID=
exit "$rc"
