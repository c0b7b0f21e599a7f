#!/usr/bin/env bash
# scripts/scale.sh: one broadcast stream across several wsnotify instances
# behind one redis-server, every client checked (docs/scaling.md).
#
#   scripts/scale.sh [--instances N (4)] [--conns-per-instance C (10000)]
#                    [--messages M (20)] [--rate R broadcasts/s (10)]
#                    [--size BYTES (100)] [--no-build]
#
# Starts a redis-server on a free loopback port and N instances on it
# (--port 0, --notify-interval 0, --log-level warn), waits until each says
# `redis: connected`, then one `wsload subscribe` per instance (C clients
# each, on a source address of its own: 127.0.1.<i>) that writes a ready
# file once all its clients have their welcome. When every subscriber is
# ready, one `wsload publish` posts M broadcasts at R/s to the FIRST
# instance only: the others get them through Redis. Each subscriber counts
# every broadcast on every client (missing, duplicate, out of order) and
# times it against the publish time carried in the message.
#
# Prints one summary JSON line on stdout (deliveries, missing, duplicates,
# deliveries/s over all instances, worst per-process p50/p99/max; for each
# instance and redis-server the RSS once the clients are connected, peak
# and final RSS, and CPU seconds since then, read from /proc before they
# are stopped; the subscribers' CPU seconds, Redis's largest client output
# buffer; the machine's busy CPU seconds over the same time, every process
# included, and its wall time); the
# per-process lines and logs go to stderr. Exit 0 only if every client got
# every broadcast exactly once and in order. Bounded: every wsload runs
# under `timeout`, and every process the script started is stopped by PID.
# WSNOTIFY_BIN picks the server binary (default target/release/wsnotify).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/processes.sh
. "$ROOT/scripts/lib/processes.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
SERVER_BIN=${WSNOTIFY_BIN:-$TARGET_DIR/release/wsnotify}
WSLOAD=$TARGET_DIR/release/wsload

INSTANCES=4
CONNS=10000
MESSAGES=20
RATE=10
SIZE=100
BUILD=1
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "scale.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --instances) need_value "$@"; INSTANCES=$2; shift 2 ;;
        --conns-per-instance) need_value "$@"; CONNS=$2; shift 2 ;;
        --messages) need_value "$@"; MESSAGES=$2; shift 2 ;;
        --rate) need_value "$@"; RATE=$2; shift 2 ;;
        --size) need_value "$@"; SIZE=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "scale.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in INSTANCES CONNS MESSAGES SIZE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: bad value '${!v}' for ${v,,}" >&2; exit 2; }
done
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] && [[ $RATE != 0 && ! $RATE =~ ^0+(\.0*)?$ ]] \
    || { echo "scale.sh: --rate must be a number above 0" >&2; exit 2; }
((INSTANCES <= 250)) || { echo "scale.sh: at most 250 instances" >&2; exit 2; }

say() { printf '[scale] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p wsnotify -p wsnotify-bench) >&2 || die "cargo build failed"
fi
[[ -x $SERVER_BIN && -x $WSLOAD ]] || die "missing $SERVER_BIN or $WSLOAD (run without --no-build)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-scale.XXXXXX")
PIDS=()
cleanup() {
    stop_all "${PIDS[@]}"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize no \
    >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || die "redis-server did not start on $REDIS_PORT"

SRV_PIDS=()
SRV_PORTS=()
for i in $(seq "$INSTANCES"); do
    "$SERVER_BIN" --host 127.0.0.1 --port 0 --notify-interval 0 --log-level warn \
        --redis "redis://127.0.0.1:$REDIS_PORT" --max-connections $((CONNS + 16)) \
        >/dev/null 2>"$TMP/server.$i.log" &
    pid=$!
    PIDS+=("$pid")
    port=$(listening_port "$TMP/server.$i.log" "$pid") ||
        { cat "$TMP/server.$i.log" >&2; die "wsnotify $i did not start"; }
    SRV_PIDS+=("$pid")
    SRV_PORTS+=("$port")
done
python3 - "${SRV_PORTS[@]}" <<'EOF' || die "not every instance reported redis: connected"
import sys, time, urllib.request
deadline = time.time() + 10
for port in sys.argv[1:]:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                if b'"redis":"connected"' in r.read():
                    break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"scale.sh: the instance on port {port} is not connected to Redis")
        time.sleep(0.1)
EOF
say "redis $REDIS_PORT (pid $REDIS_PID); instances on ports ${SRV_PORTS[*]} (pids ${SRV_PIDS[*]})"

# Every subscriber waits at most this long, once connected, for all the
# broadcasts: the other subscribers' setup (wsload allows 30 s), the
# publishing itself, and 30 s for the fanout to catch up.
WAIT_SECS=$(python3 -c "import math; print(math.ceil(60 + $MESSAGES / $RATE))")
SUB_PIDS=()
for i in $(seq "$INSTANCES"); do
    timeout --kill-after=5 $((WAIT_SECS + 60)) "$WSLOAD" subscribe --port "${SRV_PORTS[$((i - 1))]}" \
        --conns "$CONNS" --expect "$MESSAGES" --duration "$WAIT_SECS" --sources "127.0.1.$i" \
        --ready-file "$TMP/ready.$i" --label "instance $i" >"$TMP/sub.$i.json" 2>"$TMP/sub.$i.log" &
    SUB_PIDS+=($!)
    PIDS+=($!)
done
ready=0
for _ in $(seq 450); do
    ready=0
    for i in $(seq "$INSTANCES"); do [[ -e $TMP/ready.$i ]] && ready=$((ready + 1)); done
    ((ready == INSTANCES)) && break
    for pid in "${SUB_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 5 "$TMP"/sub.*.log >&2; die "a subscriber ended before it was ready"; }
    done
    sleep 0.1
done
((ready == INSTANCES)) || die "only $ready of $INSTANCES subscribers ready after 45 s"
rss_line() { # PID: "VmHWM VmRSS" in KiB
    awk '/^VmHWM:/ {h=$2} /^VmRSS:/ {r=$2} END {print h+0, r+0}' "/proc/$1/status" 2>/dev/null
}
cpu_ticks() { # PID: utime + stime (fields 14 and 15, counted after the name)
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}
machine_busy() { # all CPUs' busy ticks (not idle, not iowait) from /proc/stat
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}
READY_AT=$(date +%s.%N)
READY_BUSY=$(machine_busy)
READY_RSS=()
READY_CPU=()
for pid in "${SRV_PIDS[@]}" "$REDIS_PID"; do
    READY_RSS+=("$(rss_line "$pid" | cut -d' ' -f2)")
    READY_CPU+=("$(cpu_ticks "$pid")")
done
say "$((INSTANCES * CONNS)) clients ready; publishing $MESSAGES broadcasts at $RATE/s to instance 1"

rc=0
timeout --kill-after=5 $((WAIT_SECS + 60)) "$WSLOAD" publish --port "${SRV_PORTS[0]}" \
    --messages "$MESSAGES" --rate "$RATE" --size "$SIZE" --duration "$WAIT_SECS" \
    --label publisher >"$TMP/pub.json" 2>"$TMP/pub.log" || rc=1
for pid in "${SUB_PIDS[@]}"; do wait "$pid" || rc=1; done

{
    echo "ticks $(getconf CLK_TCK)"
    echo "machine $(python3 -c "import time; print(round(time.time() - $READY_AT, 3))") $(($(machine_busy) - READY_BUSY))"
    for i in "${!SRV_PIDS[@]}"; do
        echo "server $((i + 1)) ${READY_RSS[$i]} $(rss_line "${SRV_PIDS[$i]}")" \
            "$(($(cpu_ticks "${SRV_PIDS[$i]}") - READY_CPU[i]))"
    done
    echo "redis 0 ${READY_RSS[$INSTANCES]} $(rss_line "$REDIS_PID")" \
        "$(($(cpu_ticks "$REDIS_PID") - READY_CPU[INSTANCES]))"
    echo "redis_buffer $(redis-cli -p "$REDIS_PORT" info clients 2>/dev/null \
        | sed -n 's/^client_recent_max_output_buffer:\([0-9]*\).*/\1/p')"
} >"$TMP/rss.txt"
for f in "$TMP"/sub.*.json "$TMP/pub.json"; do cat "$f" >&2; done
if [[ $rc -ne 0 ]]; then
    for f in "$TMP"/sub.*.log "$TMP/pub.log" "$TMP"/server.*.log; do
        say "$(basename "$f") (tail):"
        tail -n 8 "$f" >&2
    done
fi

python3 - "$TMP" "$INSTANCES" "$CONNS" "$MESSAGES" "$RATE" "$LOADAVG" "$rc" <<'EOF' || rc=1
import json, sys, glob
tmp, instances, conns, messages, rate, loadavg, rc = sys.argv[1:]
instances, conns, messages, rc = int(instances), int(conns), int(messages), int(rc)

def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

subs = [load(f"{tmp}/sub.{i}.json") for i in range(1, instances + 1)]
pub = load(f"{tmp}/pub.json")
got = [s for s in subs if s]
total = lambda k: sum(s.get(k) or 0 for s in got)
worst = lambda k: max((s["lat_us"][k] for s in got if s["lat_us"][k] is not None), default=None)
firsts = [s["first_sent_unix_us"] for s in got if s.get("first_sent_unix_us")]
lasts = [s["last_delivery_unix_us"] for s in got if s.get("last_delivery_unix_us")]
secs = (max(lasts) - min(firsts)) / 1e6 if firsts and lasts else None
deliveries = total("deliveries")
expected = instances * conns * messages
servers, redis, buf, tick, machine = [], None, None, 100, None
with open(f"{tmp}/rss.txt") as f:
    for line in f:
        p = line.split()
        if p[0] == "ticks":
            tick = int(p[1])
        elif p[0] == "machine":
            machine = {"wall_secs": float(p[1]), "busy_cpu_secs": round(int(p[2]) / tick, 2)}
        elif p[0] in ("server", "redis"):
            proc = {"rss_ready_kib": int(p[2]), "hwm_kib": int(p[3]),
                    "rss_end_kib": int(p[4]), "cpu_secs": round(int(p[5]) / tick, 2)}
            if p[0] == "server":
                servers.append({"instance": int(p[1]), **proc})
            else:
                redis = proc
        elif p[0] == "redis_buffer" and len(p) > 1:
            buf = int(p[1])
valid = (rc == 0 and len(got) == instances and all(s["valid"] for s in got)
         and pub is not None and pub["valid"] and deliveries == expected
         and total("duplicates") == 0 and total("missing") == 0)
print(json.dumps({
    "mode": "scale", "instances": instances, "conns_per_instance": conns,
    "clients": instances * conns, "broadcasts": messages, "rate": float(rate),
    "expected": expected, "deliveries": deliveries,
    "missing": expected - deliveries, "duplicates": total("duplicates"),
    "out_of_order": total("out_of_order"),
    "deliveries_per_sec": round(deliveries / secs, 1) if secs else None,
    "secs": round(secs, 3) if secs else None,
    "lat_us_worst": {"p50": worst("p50"), "p99": worst("p99"), "max": worst("max")},
    "publish_answered_per_sec": pub and pub.get("answered_per_sec"),
    "servers": servers, "redis": redis, "redis_max_output_buffer_bytes": buf,
    "subscribers_cpu_secs": round(total("cpu_secs"), 2), "machine": machine,
    "loadavg_before": loadavg, "errors": total("errors") + (pub or {}).get("errors", 1),
    "valid": valid,
}))
sys.exit(0 if valid else 1)
EOF
exit "$rc"
