#!/usr/bin/env bash
# scripts/drain-resume.sh: wsload's drain-resume scenario end to end.
#
#   scripts/drain-resume.sh [--conns N (1000)] [--rate R (100)] [--drain-timeout DUR (30s)]
#                           [--workers W (1)] [-- extra wsload arguments]
#
# Starts a redis-server on a free loopback port and two wsnotify instances
# (A and B) on it (--port 0, --notify-interval 0, --log-level warn), then
# runs `wsload drain-resume`: N clients on A, a publisher at R msgs/s to B's
# POST /broadcast, SIGTERM to A, every client following its hint to B with
# since/epoch. Prints wsload's JSON line; exit code as wsload's (0 valid).
# WSNOTIFY_BIN picks the server binary (default target/release/wsnotify).
# Needs redis-server (apt-get install redis-server). Bounded: wsload runs
# under `timeout`, and every process the script started is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
SERVER_BIN=${WSNOTIFY_BIN:-$TARGET_DIR/release/wsnotify}

CONNS=1000
RATE=100
DRAIN_TIMEOUT=30s
WORKERS=1
EXTRA=()
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "drain-resume.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) need_value "$@"; CONNS=$2; shift 2 ;;
        --rate) need_value "$@"; RATE=$2; shift 2 ;;
        --drain-timeout) need_value "$@"; DRAIN_TIMEOUT=$2; shift 2 ;;
        --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "drain-resume.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "drain-resume.sh: bad --conns '$CONNS'" >&2; exit 2; }
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "drain-resume.sh: bad --workers '$WORKERS'" >&2; exit 2; }

say() { printf '[drain-resume] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-drain-resume.XXXXXX")
PIDS=()
LOAD_PID=
cleanup() {
    stop_all $LOAD_PID "${PIDS[@]}"
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

REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no \
    >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || die "redis-server did not start on $REDIS_PORT"

start_server() { # NAME; sets PORT_<NAME> and PID_<NAME>
    "$SERVER_BIN" --host 127.0.0.1 --port 0 --notify-interval 0 --log-level warn \
        --workers "$WORKERS" --redis "redis://127.0.0.1:$REDIS_PORT" --drain-timeout "$DRAIN_TIMEOUT" \
        --max-connections $((CONNS + 1000)) >/dev/null 2>"$TMP/$1.log" &
    local pid=$! port
    PIDS+=("$pid")
    port=$(listening_port "$TMP/$1.log" "$pid") ||
        { cat "$TMP/$1.log" >&2; die "wsnotify $1 did not start"; }
    printf -v "PORT_$1" '%s' "$port"
    printf -v "PID_$1" '%s' "$pid"
}
start_server A
start_server B
say "redis on $REDIS_PORT; A pid $PID_A port $PORT_A; B pid $PID_B port $PORT_B"

args=(drain-resume --port "$PORT_A" --port-b "$PORT_B" --server-pid "$PID_A" --conns "$CONNS"
      --rate "$RATE" --label "drain-resume.sh")
say "wsload ${args[*]} ${EXTRA[*]}"
rc=0
timeout --kill-after=5 180 "$TARGET_DIR/release/wsload" "${args[@]}" "${EXTRA[@]}" &
LOAD_PID=$!
wait "$LOAD_PID" || rc=$?
LOAD_PID=
if [[ $rc -ne 0 ]]; then
    for name in A B; do
        say "wsnotify $name log (tail):"
        tail -n 10 "$TMP/$name.log" >&2
    done
fi
exit "$rc"
