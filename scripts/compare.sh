#!/usr/bin/env bash
# scripts/compare.sh: wsnotify side by side with uWebSockets.js and ws (issue 6).
#
#   scripts/compare.sh [--rounds N] [--subs N] [--duration S] [--idle-secs S]
#                      [--servers wsnotify,uws,ws] [--tests LIST] [--channels]
#                      [--baseline BIN] [--quick] [--no-build] [--out FILE]
#
# --baseline BIN adds the server wsnotify-base: another wsnotify binary (say,
# one built from an earlier commit) run exactly like this checkout's, so a
# change can be measured against its starting point in one sitting, e.g.
#   scripts/compare.sh --baseline /path/to/old/wsnotify --servers wsnotify-base,wsnotify
#
# Loopback only, bounded in time (default run: about 5 minutes after the
# build). From a fresh clone it:
#   1. installs the Node peers' packages (bench/peers/package.json) from npm
#      into a temporary folder, and builds wsnotify and wsload
#      (cargo build --release -p wsnotify -p wsnotify-bench; --no-build skips);
#   2. for each round (default 3), for each server in an order rotated every
#      round, starts a fresh server pinned to core 0 and runs, pinned to core 1:
#        wsload idle   --conns N --idle-secs 5 --server-pid PID
#        wsload fanout --subs N --size 100 --publish ws   --duration 5 --server-pid PID
#        wsload fanout --subs N --size 100 --publish http --duration 5
#        wsload echo   --conns 64 --depth 8 --size 100 --duration 5
#      (N = --subs, default 10000);
#      --tests LIST picks among these (idle, fanout_ws, fanout_http, echo) and
#      the channel tests, which run only when asked for:
#        channels_idle: wsload channels --conns N --channels N/10 --per-conn 3
#                       --rate 1000 --duration 1 --server-pid PID
#                       (memory per connection with 3 channels each, read
#                       before anything is published)
#        channels:      wsload channels --conns N --channels N/10 --per-conn 1
#                       --duration S --server-pid PID
#                       (channels of 10; members chat on random channels,
#                       closed loop with 1000 messages in flight)
#        channels_http: the same with --publish http (POST /broadcast with
#                       "channel", pipelined on one keep-alive connection)
#      idle and channels_idle get a fresh server when another test ran on it
#      before them. --channels is --servers wsnotify,uws --tests
#      idle,channels_idle,channels,channels_http: wsnotify's channels against
#      uWebSockets.js topics, with the idle memory without channels beside
#      them (about 4 minutes);
#   3. writes the JSON lines to target/compare/results-TIMESTAMP.jsonl (a meta
#      line first, then wsload's line for each run with cmp_server, cmp_round,
#      cmp_test and cmp_exit added), prints its path, and prints the Markdown
#      summary of bench/peers/summarize.py (also saved beside it as .md).
#
# The permessage-deflate tests (issue 24) also run only when --tests names
# them:
#   idle_deflate        wsload idle --deflate on (handshakes per second and
#                       per server CPU second, and memory with an offer)
#   fanout_deflate_300  wsload fanout --deflate on --text words --size 150 --publish http
#   fanout_deflate_3k   wsload fanout --deflate on --text words --size 2900 --publish http
# (every client offers as a browser does; 150 and 2900 bytes of words and
# numbers make notifications of about 300 bytes and 3 KB with their JSON;
# idle_deflate gets a fresh server as idle does). With any of them, uws.js
# runs with --compression shared (SHARED_COMPRESSOR, broadcasts published
# compressed).
#
# --quick is a smoke run: 1 round, 1000 subscribers, 2 s per test.
# Progress goes to stderr; every child is killed by PID on exit.
# Do not run it while someone else measures on the same machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

ROUNDS=3
SUBS=10000
DURATION=5
IDLE_SECS=5
SERVERS=wsnotify,uws,ws
TESTS_ARG=idle,fanout_ws,fanout_http,echo
BUILD=1
OUT=
BASELINE=

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "compare.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) need_value "$@"; ROUNDS=$2; shift 2 ;;
        --subs) need_value "$@"; SUBS=$2; shift 2 ;;
        --duration) need_value "$@"; DURATION=$2; shift 2 ;;
        --idle-secs) need_value "$@"; IDLE_SECS=$2; shift 2 ;;
        --servers) need_value "$@"; SERVERS=$2; shift 2 ;;
        --tests) need_value "$@"; TESTS_ARG=$2; shift 2 ;;
        --channels) SERVERS=wsnotify,uws; TESTS_ARG=idle,channels_idle,channels,channels_http; shift ;;
        --out) need_value "$@"; OUT=$2; shift 2 ;;
        --baseline) need_value "$@"; BASELINE=$2; shift 2 ;;
        --quick) ROUNDS=1; SUBS=1000; DURATION=2; IDLE_SECS=2; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$ROUNDS" "$SUBS" "$DURATION" "$IDLE_SECS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: '$n' is not a positive whole number" >&2; exit 2; }
done
IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
IFS=, read -r -a TESTS <<<"$TESTS_ARG"
UWS_ARGS=()
for t in "${TESTS[@]}"; do
    case $t in
        idle|fanout_ws|fanout_http|echo|channels_idle|channels|channels_http) ;;
        idle_deflate|fanout_deflate_300|fanout_deflate_3k) UWS_ARGS=(--compression shared) ;;
        *) echo "compare.sh: unknown test '$t' (idle, fanout_ws, fanout_http, echo, channels_idle, channels, channels_http, idle_deflate, fanout_deflate_300, fanout_deflate_3k)" >&2; exit 2 ;;
    esac
done
CHANNELS=$((SUBS / 10))
[[ $CHANNELS -ge 1 ]] || { echo "compare.sh: --subs must be at least 10 for the channel tests" >&2; exit 2; }
NEED_NODE=0
for s in "${SERVER_LIST[@]}"; do
    case $s in
        wsnotify) ;;
        wsnotify-base) [[ -n $BASELINE ]] || { echo "compare.sh: wsnotify-base needs --baseline BIN" >&2; exit 2; } ;;
        uws|ws) NEED_NODE=1 ;;
        *) echo "compare.sh: unknown server '$s' (wsnotify, wsnotify-base, uws, ws)" >&2; exit 2 ;;
    esac
done
if [[ -n $BASELINE ]]; then
    [[ -x $BASELINE ]] || { echo "compare.sh: --baseline $BASELINE is not an executable" >&2; exit 2; }
    BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
    [[ ,$SERVERS, == *,wsnotify-base,* ]] || SERVER_LIST+=(wsnotify-base)
    SERVERS=$(IFS=,; echo "${SERVER_LIST[*]}")
fi

say() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in python3 $([[ $NEED_NODE == 1 ]] && echo node npm); do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
[[ $BUILD == 0 ]] || command -v cargo >/dev/null || die "cargo is not on PATH"

# Pinning: servers on core 0, the load generator on core 1.
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
    PINNING="servers on core 0, wsload on core 1 (taskset)"
else
    PIN_SERVER=()
    PIN_LOAD=()
    PINNING="none (needs taskset and 2 cores): figures are not comparable with pinned runs"
    say "warning: no CPU pinning ($PINNING)"
fi

# Every server and wsload needs a descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((SUBS + 256)) ]]; then
    die "open-file limit $(ulimit -n) is too low for --subs $SUBS (raise ulimit -n)"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-compare.XXXXXX")
SERVER_PID=
LOAD_PID=
cleanup() {
    stop_all $LOAD_PID $SERVER_PID
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# 1. Peers' packages (only when a Node server runs) and the binaries.
PEERS=$TMP/peers
mkdir -p "$PEERS"
if [[ $NEED_NODE == 1 ]]; then
    cp "$ROOT/bench/peers/package.json" "$ROOT/bench/peers/uws.js" "$ROOT/bench/peers/ws.js" "$PEERS/"
    say "installing the peers' npm packages into $PEERS"
    if ! (cd "$PEERS" && timeout 300 npm install --no-audit --no-fund --omit=dev --loglevel=error) >"$TMP/npm.log" 2>&1; then
        cat "$TMP/npm.log" >&2
        die "npm install failed"
    fi
fi

if [[ $BUILD == 1 ]]; then
    say "building wsnotify and wsload (cargo build --release -p wsnotify -p wsnotify-bench)"
    (cd "$ROOT" && cargo build --release -p wsnotify -p wsnotify-bench) >&2 || die "cargo build failed"
fi
WSNOTIFY=$TARGET_DIR/release/wsnotify
WSLOAD=$TARGET_DIR/release/wsload
[[ -x $WSNOTIFY || ,$SERVERS, != *,wsnotify,* ]] || die "$WSNOTIFY is missing"
[[ -x $WSLOAD ]] || die "$WSLOAD is missing (cargo build --release -p wsnotify-bench)"

mkdir -p "$TARGET_DIR/compare"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${OUT:-$TARGET_DIR/compare/results-$STAMP.jsonl}
LOGS=${RESULTS%.jsonl}.logs
mkdir -p "$LOGS"
: >"$RESULTS"

# The meta line: machine, versions, settings.
pkg_version() { node -p "require('$PEERS/node_modules/$1/package.json').version" 2>/dev/null || echo unknown; }
WSNOTIFY_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- src bench/src bench/Cargo.toml Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    WSNOTIFY_REV="$WSNOTIFY_REV+uncommitted changes"
fi
CMP_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) CMP_NPROC=$(nproc) CMP_KERNEL=$(uname -r) \
CMP_NODE=$(node --version 2>/dev/null || echo none) CMP_UWS=$(pkg_version @trufflesuite/uws-js-unofficial) \
CMP_WS=$(pkg_version ws) CMP_BUFFERUTIL=$(pkg_version bufferutil) CMP_WSNOTIFY=$WSNOTIFY_REV \
CMP_PINNING=$PINNING CMP_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg) \
CMP_SETTINGS="rounds=$ROUNDS subs=$SUBS duration=${DURATION}s idle_secs=$IDLE_SECS servers=$SERVERS tests=$TESTS_ARG${BASELINE:+ baseline=$BASELINE}" \
python3 - >>"$RESULTS" <<'EOF'
import json, os
cpu = ""
try:
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
except OSError:
    pass
e = os.environ
print(json.dumps({
    "cmp_meta": True, "date": e["CMP_DATE"], "nproc": int(e["CMP_NPROC"]), "cpu_model": cpu,
    "kernel": e["CMP_KERNEL"], "node": e["CMP_NODE"], "uws_package": e["CMP_UWS"],
    "ws_package": e["CMP_WS"], "bufferutil_package": e["CMP_BUFFERUTIL"],
    "wsnotify": e["CMP_WSNOTIFY"], "pinning": e["CMP_PINNING"], "settings": e["CMP_SETTINGS"],
    "loadavg_start": e["CMP_LOADAVG"],
}))
EOF

# 2. The rounds.
SERVER_PORT=
SERVER_LOG=
start_server() { # NAME ROUND [LOG_SUFFIX]
    local name=$1 log=$LOGS/$1-r$2${3:-}.server.log cmd
    SERVER_LOG=$log
    case $name in
        wsnotify|wsnotify-base)
            cmd=("$WSNOTIFY" --host 127.0.0.1 --port 0 --enable-echo --max-connections 20000
                 --notify-interval 0 --log-level warn)
            [[ $name == wsnotify ]] || cmd[0]=$BASELINE ;;
        uws) cmd=(node "$PEERS/uws.js" --port 0 "${UWS_ARGS[@]}") ;;
        ws) cmd=(node "$PEERS/ws.js" --port 0) ;;
    esac
    : >"$log"
    "${PIN_SERVER[@]}" "${cmd[@]}" >/dev/null 2>"$log" &
    SERVER_PID=$!
    SERVER_PORT=$(listening_port "$log" "$SERVER_PID") && return 0
    cat "$log" >&2
    die "$name did not print its listening line"
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# run_load NAME ROUND TEST LIMIT_SECONDS wsload-args...: one JSON line into $RESULTS.
run_load() {
    local name=$1 round=$2 test=$3 limit=$4 rc=0 line
    shift 4
    local out=$LOGS/$name-r$round-$test.out err=$LOGS/$name-r$round-$test.err
    say "round $round/$ROUNDS  $name  $test"
    timeout --kill-after=5 "$limit" "${PIN_LOAD[@]}" "$WSLOAD" "$@" --port "$SERVER_PORT" \
        --label "$name/r$round/$test" >"$out" 2>"$err" &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    line=$(grep '^{' "$out" | tail -n 1 || true)
    if [[ $line == '{'*'}' && $line != '{}' ]]; then
        printf '{"cmp_server":"%s","cmp_round":%d,"cmp_test":"%s","cmp_exit":%d,%s\n' \
            "$name" "$round" "$test" "$rc" "${line#\{}" >>"$RESULTS"
    else
        printf '{"cmp_server":"%s","cmp_round":%d,"cmp_test":"%s","cmp_exit":%d,"cmp_no_output":true}\n' \
            "$name" "$round" "$test" "$rc" >>"$RESULTS"
    fi
    if [[ $rc != 0 ]]; then
        say "  wsload exited $rc (timeout is 124): $(tail -n 3 "$err" | tr '\n' ' ')"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "  $name died; its log:"
        tail -n 20 "$SERVER_LOG" >&2
        return 1
    fi
    sleep 1
}

N=${#SERVER_LIST[@]}
for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < N; i++)); do
        name=${SERVER_LIST[$(((i + round - 1) % N))]}
        start_server "$name" "$round"
        say "round $round/$ROUNDS  $name  pid $SERVER_PID port $SERVER_PORT"
        alive=1
        first=1
        for test in "${TESTS[@]}"; do
            if [[ $alive == 0 ]]; then
                printf '{"cmp_server":"%s","cmp_round":%d,"cmp_test":"%s","cmp_exit":-1,"cmp_no_output":true,"error":"server died earlier"}\n' \
                    "$name" "$round" "$test" >>"$RESULTS"
                continue
            fi
            if [[ $first == 0 && ($test == idle || $test == channels_idle || $test == idle_deflate) ]]; then
                # Memory per connection is read on a server that has had no clients yet.
                stop_server
                start_server "$name" "$round" "-$test"
                say "round $round/$ROUNDS  $name  restarted for $test: pid $SERVER_PID port $SERVER_PORT"
            fi
            first=0
            case $test in
                idle) args=(idle --conns "$SUBS" --server-pid "$SERVER_PID" --idle-secs "$IDLE_SECS")
                      limit=$((IDLE_SECS + 90)) ;;
                fanout_ws) args=(fanout --subs "$SUBS" --size 100 --publish ws --duration "$DURATION"
                                 --server-pid "$SERVER_PID")
                           limit=$((DURATION + 90)) ;;
                fanout_http) args=(fanout --subs "$SUBS" --size 100 --publish http --duration "$DURATION")
                             limit=$((DURATION + 90)) ;;
                echo) args=(echo --conns 64 --depth 8 --size 100 --duration "$DURATION")
                      limit=$((DURATION + 60)) ;;
                idle_deflate) args=(idle --conns "$SUBS" --server-pid "$SERVER_PID" --idle-secs "$IDLE_SECS"
                                    --deflate on)
                              limit=$((IDLE_SECS + 90)) ;;
                fanout_deflate_300) args=(fanout --subs "$SUBS" --size 150 --text words --deflate on
                                          --publish http --duration "$DURATION" --server-pid "$SERVER_PID")
                                    limit=$((DURATION + 90)) ;;
                fanout_deflate_3k) args=(fanout --subs "$SUBS" --size 2900 --text words --deflate on
                                         --publish http --duration "$DURATION" --server-pid "$SERVER_PID")
                                   limit=$((DURATION + 90)) ;;
                channels_idle) args=(channels --conns "$SUBS" --channels "$CHANNELS" --per-conn 3
                                     --rate 1000 --duration 1 --server-pid "$SERVER_PID")
                               limit=90 ;;
                channels) args=(channels --conns "$SUBS" --channels "$CHANNELS" --per-conn 1
                                --duration "$DURATION" --server-pid "$SERVER_PID")
                          limit=$((DURATION + 90)) ;;
                channels_http) args=(channels --conns "$SUBS" --channels "$CHANNELS" --per-conn 1
                                     --publish http --duration "$DURATION" --server-pid "$SERVER_PID")
                               limit=$((DURATION + 90)) ;;
            esac
            run_load "$name" "$round" "$test" "$limit" "${args[@]}" || alive=0
        done
        stop_server
    done
done

# 3. The summary.
python3 - "$RESULTS" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
path, load = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
meta = json.loads(lines[0])
meta["loadavg_end"] = load
lines[0] = json.dumps(meta)
open(path, "w").write("\n".join(lines) + "\n")
EOF
SUMMARY=${RESULTS%.jsonl}.md
python3 "$ROOT/bench/peers/summarize.py" "$RESULTS" | tee "$SUMMARY"
say "results: $RESULTS"
say "summary: $SUMMARY"
say "logs:    $LOGS"
echo "$RESULTS"
