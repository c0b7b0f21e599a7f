#!/usr/bin/env bash
# The shell examples of docs/protocol.md ("A token from the shell" and
# "An example" under Channels), run as written and checked: a token minted
# with openssl, a websocat client connected with ?token= that joins
# channels, curl publishing to a channel and to the user; and around them
# a forged token's 401, a private channel the token does not list, the
# query-string form, chat on a channel and leaving it.
#
#   scripts/channels-example.sh
#
# Starts WSNOTIFY_BIN (default target/release/wsnotify; built if missing)
# on a free loopback port with --token-secret-file. Needs openssl, curl and
# websocat. EXAMPLE_TIMEOUT: seconds each step may take (default 5).
# Prints `channels-example: OK` and exits 0, or `channels-example: FAIL:
# ...` and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/processes.sh

TIMEOUT=${EXAMPLE_TIMEOUT:-5}
fail() {
    echo "channels-example: FAIL: $*" >&2
    exit 1
}
say() { echo "channels-example: $*"; }

for tool in openssl curl websocat; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
bin=${WSNOTIFY_BIN:-target/release/wsnotify}
if [[ ! -x $bin ]]; then
    cargo build --release >&2 || fail "cargo build --release failed"
fi
bin=$(realpath "$bin")

work=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-channels-example.XXXXXX")
pids=()
cleanup() {
    local status=$?
    exec 3>&- || true
    stop_all "${pids[@]}"
    if [[ $status -ne 0 && -s $work/server.log ]]; then
        echo "channels-example: server log:" >&2
        sed 's/^/  /' "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"

now_ms() { date +%s%3N; }
# wait_for WHAT ERE...: until one line websocat received matches every ERE.
wait_for() {
    local what=$1 deadline=$(($(now_ms) + TIMEOUT * 1000)) lines pattern
    shift
    for (( ; ; )); do
        lines=$(cat out)
        for pattern in "$@"; do
            lines=$(grep -E -- "$pattern" <<<"$lines") || break
        done
        [[ -n $lines ]] && return 0
        kill -0 "$ws_pid" 2>/dev/null || fail "websocat exited waiting for $what: $(cat ws.err)"
        (($(now_ms) <= deadline)) || fail "no $what within ${TIMEOUT}s; received: $(cat out)"
        sleep 0.05
    done
}
# field NAME VALUE: an ERE for `"NAME":VALUE` (VALUE as JSON: "x", 1, true).
field() { printf '"%s"[[:space:]]*:[[:space:]]*%s' "$1" "$2"; }

# ---- as in docs/protocol.md ("A token from the shell"), with the secret
# ---- in this directory rather than /etc/wsnotify ----------------------------
openssl rand -base64 32 > token-secret
chmod 600 token-secret
SECRET=$(cat token-secret)
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"alice","exp":%d,"channels":["private:team"]}' \
  "$(( $(date +%s) + 3600 ))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" \
  | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
TOKEN="$header.$payload.$signature"
# ---- end of the documentation's lines -------------------------------------

"$bin" --host 127.0.0.1 --port 0 --notify-interval 0 --token-secret-file token-secret 2>server.log &
pids+=($!)
port=$(listening_port server.log "${pids[0]}") || fail "the server did not start"
base=http://127.0.0.1:$port
forged=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "not-the-secret" -binary | b64url)
say "server at $base"
grep -qF "$TOKEN" server.log && fail "the token appears in the server log"

code=$(curl -sS --max-time "$TIMEOUT" -o /dev/null -w '%{http_code}' \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$base/ws?token=$header.$payload.$forged") ||
    fail "curl of a bad token failed"
[[ $code == 401 ]] || fail "a token with a bad signature was answered $code, not 401"
say "a bad signature: 401 before the upgrade"

mkfifo in
: >out
websocat --text "ws://127.0.0.1:$port/ws?token=$TOKEN" <in >out 2>ws.err &
ws_pid=$!
pids+=("$ws_pid")
exec 3>in
wait_for "a welcome naming alice" "$(field type '"welcome"')" "$(field user '"alice"')"
say "connected as alice"

# The subscribes and publishes of protocol.md ("An example"), as written
# there (on this server's port), then what it says around them. Every
# curl is bounded, so that a server that does not answer fails the step.
curl() { command curl --max-time "$TIMEOUT" "$@"; }
echo '{"type":"subscribe","channel":"orders.42"}' >&3
wait_for "orders.42 joined" "$(field type '"subscribed"')" "$(field channel '"orders.42"')" "$(field offset 0)"
echo '{"type":"subscribe","channel":"private:team"}' >&3
wait_for "private:team joined" "$(field type '"subscribed"')" "$(field channel '"private:team"')"
echo '{"type":"subscribe","channel":"private:boss"}' >&3
wait_for "private:boss refused" "$(field type '"error"')" "$(field channel '"private:boss"')"
say "joined orders.42 and private:team; private:boss refused"

# expect_answer WHAT ERE...: the last curl's answer matches every ERE.
expect_answer() {
    local what=$1 pattern
    shift
    for pattern in "$@"; do
        grep -Eq -- "$pattern" answer || fail "$what answered $(cat answer)"
    done
}
curl -s localhost:"$port"/notify -d '{"message":"shipped","channel":"orders.42"}' >answer
expect_answer "publish to orders.42" "$(field status '"sent"')" "$(field recipients 1)"
wait_for "the message of orders.42" "$(field channel '"orders.42"')" "$(field offset 1)" \
    "$(field message '"shipped"')" "$(field scope '"channel"')"
curl -s localhost:"$port"/notify -d '{"message":"hi alice","user":"alice"}' >answer
expect_answer "publish to alice" "$(field status '"sent"')" "$(field recipients 1)"
wait_for "the message to alice" "$(field channel '"user:alice"')" "$(field message '"hi alice"')" \
    "$(field scope '"user"')" "$(field offset 1)"
curl -s localhost:"$port"/channels >answer
expect_answer "GET /channels" \
    '\{"channel":"orders\.42","offset":1,"subscribers":1\},\{"channel":"private:team","offset":0,"subscribers":1\},\{"channel":"user:alice","offset":1,"subscribers":1\}'
say "published to orders.42 and to alice with curl; both arrived; GET /channels lists the three"

# The query string works as the body does.
curl -s -X POST "localhost:$port/broadcast?user=alice&message=again+alice" >answer
expect_answer "publish to alice on the query string" "$(field recipients 1)"
wait_for "the second message to alice" "$(field channel '"user:alice"')" "$(field message '"again alice"')" \
    "$(field offset 2)"
echo '{"type":"chat","channel":"orders.42","message":"hi from the shell"}' >&3
wait_for "chat on orders.42" "$(field type '"chat"')" "$(field channel '"orders.42"')" "$(field offset 2)"
echo '{"type":"unsubscribe","channel":"orders.42"}' >&3
wait_for "orders.42 left" "$(field type '"unsubscribed"')" "$(field channel '"orders.42"')"
say "published on the query string, chatted on orders.42 and left it"
grep -qF "$TOKEN" server.log && fail "the token appears in the server log"
say OK
