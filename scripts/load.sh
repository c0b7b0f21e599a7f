#!/usr/bin/env bash
# scripts/load.sh: a short, bounded load run against wsnotify.
#
#   scripts/load.sh [echo|broadcast|idle|channels] [options] [-- extra tool arguments]
#
# Modes (default echo):
#   echo       clients send messages to /echo and read them back
#   broadcast  clients on /ws; messages are published (POST /broadcast with
#              --publish http, the default; chat frames with --publish ws) and
#              delivered to every client
#   idle       clients connect to /ws and stay idle; handshakes/s, and the
#              server's RSS per connection and CPU when the script started it
#   channels   clients on /ws join channels of 10 (--conns / 10 channels, one
#              each; --per-conn 3: three each), then members chat on random
#              channels; channel deliveries/s, latency, missing deliveries, and
#              the server's memory per connection when the script started it
#              (wsload only)
# Options:
#   --port P         use the wsnotify already listening on 127.0.0.1:P (--host
#                    to change the address); without it the script starts its
#                    own (target/release/wsnotify --port 0 --enable-echo
#                    --notify-interval 0 --log-level warn, built if missing)
#   --host ADDR      server address (127.0.0.1)
#   --conns N        connections (echo 64, broadcast 1000 with wsload and 100
#                    with tcpkali, idle 1000, channels 10000)
#   --per-conn J     channels: channels each connection joins (1)
#   --duration S     seconds of load (10; idle: seconds held idle)
#   --size B         message bytes (100)
#   --publish ws|http  broadcast: how messages are published (http)
#   --rate R         broadcast: messages per second (0 = as fast as delivered);
#                    tcpkali: messages per second per connection (echo 10,
#                    broadcast 1)
#   --tool wsload|tcpkali  load generator (default: tcpkali if on PATH, else wsload)
#
# With wsload (bench/, built as target/release/wsload if missing) it prints
# wsload's JSON line. With tcpkali it runs, for PORT the server's port:
#   echo:      tcpkali --websocket -c 64 -r 10 -T 10s -m "<100 bytes>" \
#                      --latency-marker "<its first 10 bytes>" 127.0.0.1:PORT/echo
#   broadcast: tcpkali --websocket -c 100 -r 1 -T 10s \
#                      -m '{"type":"chat","message":"<text>"}' 127.0.0.1:PORT/ws
#              (each connection chats; every chat reaches every client, so the
#              downstream is conns x conns x rate messages per second)
#   idle:      tcpkali --websocket -c 1000 --connect-rate 1000 -T 10s 127.0.0.1:PORT/ws
# and prints one JSON line holding tcpkali's command and its final report
# lines as text. Debian 12 has no tcpkali package, so these command lines follow
# tcpkali's manual (--websocket, host:port/path) and were not run here.
#
# Every run is bounded: the load generator runs under `timeout`, and a server
# the script started is stopped (by PID) on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

MODE=echo
case ${1:-} in echo|broadcast|idle|channels) MODE=$1; shift ;; esac
PORT=
HOST=127.0.0.1
CONNS=
DURATION=10
SIZE=100
PUBLISH=http
RATE=
TOOL=
PER_CONN=1
EXTRA=()
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "load.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) need_value "$@"; PORT=$2; shift 2 ;;
        --host) need_value "$@"; HOST=$2; shift 2 ;;
        --conns) need_value "$@"; CONNS=$2; shift 2 ;;
        --duration) need_value "$@"; DURATION=$2; shift 2 ;;
        --size) need_value "$@"; SIZE=$2; shift 2 ;;
        --publish) need_value "$@"; PUBLISH=$2; shift 2 ;;
        --rate) need_value "$@"; RATE=$2; shift 2 ;;
        --tool) need_value "$@"; TOOL=$2; shift 2 ;;
        --per-conn) need_value "$@"; PER_CONN=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "load.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$DURATION" "$SIZE" "$PER_CONN" ${CONNS:+"$CONNS"} ${PORT:+"$PORT"}; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: '$n' is not a positive whole number" >&2; exit 2; }
done
[[ -z $RATE || $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "load.sh: bad --rate '$RATE'" >&2; exit 2; }
[[ $PUBLISH == ws || $PUBLISH == http ]] || { echo "load.sh: --publish is ws or http" >&2; exit 2; }
if [[ -z $TOOL ]]; then
    if [[ $MODE != channels ]] && command -v tcpkali >/dev/null; then TOOL=tcpkali; else TOOL=wsload; fi
fi
[[ $MODE != channels || $TOOL == wsload ]] || { echo "load.sh: channels runs with wsload only" >&2; exit 2; }
case $TOOL in
    wsload) ;;
    tcpkali) command -v tcpkali >/dev/null || { echo "load.sh: tcpkali is not on PATH" >&2; exit 2; } ;;
    *) echo "load.sh: --tool is wsload or tcpkali" >&2; exit 2 ;;
esac
if [[ -z $CONNS ]]; then
    case $MODE/$TOOL in echo/*) CONNS=64 ;; broadcast/tcpkali) CONNS=100 ;; channels/*) CONNS=10000 ;; *) CONNS=1000 ;; esac
fi

say() { printf '[load] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-load.XXXXXX")
SERVER_PID=
LOAD_PID=
cleanup() {
    stop_all $LOAD_PID $SERVER_PID
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build() { # PACKAGE BINARY
    [[ -x $TARGET_DIR/release/$2 ]] && return 0
    command -v cargo >/dev/null || die "$TARGET_DIR/release/$2 is missing and cargo is not on PATH"
    say "building $2 (cargo build --release -p $1)"
    (cd "$ROOT" && cargo build --release -p "$1") >&2 || die "cargo build failed"
}

if [[ -z $PORT ]]; then
    build wsnotify wsnotify
    : >"$TMP/server.log"
    "$TARGET_DIR/release/wsnotify" --host 127.0.0.1 --port 0 --enable-echo --notify-interval 0 \
        --log-level warn --max-connections $((CONNS + 1000)) >/dev/null 2>"$TMP/server.log" &
    SERVER_PID=$!
    HOST=127.0.0.1
    PORT=$(listening_port "$TMP/server.log" "$SERVER_PID") ||
        { cat "$TMP/server.log" >&2; die "wsnotify did not start"; }
    say "started wsnotify pid $SERVER_PID on $HOST:$PORT"
fi

LIMIT=$((DURATION + 120))
rc=0
if [[ $TOOL == wsload ]]; then
    build wsnotify-bench wsload
    case $MODE in
        echo) args=(echo --conns "$CONNS" --depth 8 --size "$SIZE" --duration "$DURATION") ;;
        broadcast) args=(fanout --subs "$CONNS" --size "$SIZE" --publish "$PUBLISH" --duration "$DURATION")
                   [[ -z $RATE ]] || args+=(--rate "$RATE")
                   [[ -z $SERVER_PID ]] || args+=(--server-pid "$SERVER_PID") ;;
        idle) args=(idle --conns "$CONNS" --idle-secs "$DURATION")
              [[ -z $SERVER_PID ]] || args+=(--server-pid "$SERVER_PID") ;;
        channels) args=(channels --conns "$CONNS" --channels $((CONNS / 10 > 0 ? CONNS / 10 : 1))
                        --per-conn "$PER_CONN" --size "$SIZE" --duration "$DURATION")
                  [[ -z $RATE ]] || args+=(--rate "$RATE")
                  [[ -z $SERVER_PID ]] || args+=(--server-pid "$SERVER_PID") ;;
    esac
    args+=(--host "$HOST" --port "$PORT" --label "load.sh $MODE")
    say "wsload ${args[*]} ${EXTRA[*]}"
    timeout --kill-after=5 "$LIMIT" "$TARGET_DIR/release/wsload" "${args[@]}" "${EXTRA[@]}" &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
else
    [[ $MODE == broadcast ]] && RATE=${RATE:-1}
    RATE=${RATE:-10}
    case $MODE in
        echo)
            payload=$(printf 'load-%05d' 0; head -c $((SIZE > 10 ? SIZE - 10 : 0)) /dev/zero | tr '\0' x)
            args=(--websocket -c "$CONNS" -r "$RATE" -T "${DURATION}s" -m "$payload"
                  --latency-marker "${payload:0:10}" "$HOST:$PORT/echo") ;;
        broadcast)
            text=$(head -c $((SIZE > 30 ? SIZE - 30 : 1)) /dev/zero | tr '\0' x)
            args=(--websocket -c "$CONNS" -r "$RATE" -T "${DURATION}s"
                  -m "{\"type\":\"chat\",\"message\":\"$text\"}" "$HOST:$PORT/ws") ;;
        idle)
            args=(--websocket -c "$CONNS" --connect-rate 1000 -T "${DURATION}s" "$HOST:$PORT/ws") ;;
    esac
    say "tcpkali ${args[*]} ${EXTRA[*]}"
    timeout --kill-after=5 "$LIMIT" tcpkali "${args[@]}" "${EXTRA[@]}" >"$TMP/tcpkali.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    python3 - "$MODE" "$rc" "$TMP/tcpkali.out" tcpkali "${args[@]}" "${EXTRA[@]}" <<'EOF'
import json, sys
mode, rc, path, *command = sys.argv[1:]
text = open(path, errors="replace").read().replace("\r", "\n")
report = [l.strip() for l in text.splitlines()
          if l.strip() and any(k in l for k in ("Total", "Bandwidth", "bandwidth", "rate", "latency", "Latency", "connections"))]
print(json.dumps({"tool": "tcpkali", "mode": mode, "exit": int(rc), "command": command, "report": report[-20:]}))
EOF
fi
if [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "wsnotify died during the run; its log:"
    tail -n 20 "$TMP/server.log" >&2
    rc=1
fi
exit "$rc"
