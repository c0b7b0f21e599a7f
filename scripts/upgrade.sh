#!/usr/bin/env bash
# Upgrade wsnotify on one host without refusing a client: the new process
# serves the listening socket before the old one stops accepting and drains.
#
#   scripts/upgrade.sh
#       With systemd (contrib/systemd/wsnotify.socket + wsnotify@.service).
#       Install the new binary first (the running process keeps the old
#       one); this starts the idle instance (wsnotify@a <-> wsnotify@b),
#       which systemctl reports started once it sent READY=1, moves the
#       enablement to it, and stops the old instance without waiting: it
#       drains for up to WSNOTIFY_DRAIN_TIMEOUT while the new one takes every
#       new client.
#
#   scripts/upgrade.sh --handover PATH BINARY [ARGS...]
#       Without systemd. Creates the directory of PATH if it is missing
#       (mode 0700: only this user may reach the hand-over socket), then
#       starts `BINARY --handover PATH ARGS...` detached, logging to
#       $UPGRADE_LOG (default PATH.log, appended). If a server
#       started with the same --handover PATH runs, the new one takes its
#       listening sockets and that server drains by itself; otherwise the new
#       one binds as usual. Waits for the new server's `listening on` line and
#       a 200 from its /health, then reports its pid and address.
#
# Exit status: 0 the new server serves; 1 it failed (whatever ran before
# keeps serving); 2 usage. Every failure ends with one `upgrade: FAIL: ...`
# line on stderr.
set -Eeuo pipefail

READY_TIMEOUT_S=${READY_TIMEOUT_S:-30}

say() { echo "upgrade: $*"; }
fail() {
    echo "upgrade: FAIL: $*" >&2
    exit 1
}
usage() {
    sed -n "2,26p" "$0" | sed 's/^# \{0,1\}//' >&2
    echo "upgrade: FAIL: usage: $*" >&2
    exit 2
}
# A command that fails where the script did not expect it still says so.
trap 'fail "line $LINENO: \`$BASH_COMMAND\` failed (exit $?)"' ERR
now_ms() { date +%s%3N; }

with_systemd() {
    [[ -d /run/systemd/system ]] || fail "systemd is not running on this host; use --handover"
    local old="" new
    for instance in a b; do
        if systemctl is-active --quiet "wsnotify@$instance"; then
            [[ -z $old ]] || fail "both wsnotify@a and wsnotify@b are active; wait until one has drained"
            old=$instance
        fi
    done
    if [[ $old == a ]]; then new=b; else new=a; fi
    # Type=notify: returns once the new instance sent READY=1, i.e. once it
    # accepts on the shared socket; fails if it exits first.
    systemctl start "wsnotify@$new" ||
        fail "wsnotify@$new did not start${old:+; wsnotify@$old keeps serving} (journalctl -u wsnotify@$new)"
    systemctl is-active --quiet "wsnotify@$new" || fail "wsnotify@$new is not active after starting"
    say "wsnotify@$new is ready (pid $(systemctl show -P MainPID "wsnotify@$new"))"
    systemctl enable --quiet "wsnotify@$new" ||
        fail "wsnotify@$new serves, but enabling it failed${old:+ (wsnotify@$old serves too, undrained)}; run: systemctl enable wsnotify@$new"
    if [[ -z $old ]]; then
        say "no instance was running; nothing to drain"
        return
    fi
    systemctl disable --quiet "wsnotify@$old" ||
        fail "wsnotify@$new serves, but disabling wsnotify@$old failed; run: systemctl disable wsnotify@$old && systemctl stop --no-block wsnotify@$old"
    # SIGTERM: with a shared socket the old instance stops accepting at once
    # and drains its clients; --no-block, since that may take the whole
    # drain timeout. `systemctl status wsnotify@$old` shows its progress.
    systemctl stop --no-block "wsnotify@$old" ||
        fail "wsnotify@$new serves, but stopping wsnotify@$old failed; run: systemctl stop --no-block wsnotify@$old"
    say "wsnotify@$old is draining (systemctl status wsnotify@$old)"
}

with_handover() {
    local path=$1 binary=$2
    shift 2
    [[ -f $binary && -x $binary ]] || fail "$binary is not an executable file"
    local dir
    dir=$(dirname -- "$path")
    if [[ ! -d $dir ]]; then
        mkdir -p -m 0700 -- "$dir" || fail "cannot create $dir, the directory of the hand-over socket"
        say "created $dir (mode 0700) for the hand-over socket"
    fi
    local log=${UPGRADE_LOG:-$path.log}
    { : >>"$log"; } 2>/dev/null || fail "cannot write the log $log"
    setsid "$binary" --handover "$path" "$@" </dev/null >>"$log" 2>&1 &
    local pid=$! deadline=$(($(now_ms) + READY_TIMEOUT_S * 1000)) line=""
    until line=$(grep -a "listening on http://.* pid=$pid\b" "$log" 2>/dev/null | tail -n1) && [[ -n $line ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            tail -n 5 "$log" >&2 || true
            fail "the new server (pid $pid) exited before listening; the running server keeps serving"
        fi
        if (($(now_ms) > deadline)); then
            kill -TERM "$pid" 2>/dev/null || true
            fail "the new server (pid $pid) did not listen within ${READY_TIMEOUT_S} s; stopped it"
        fi
        sleep 0.05
    done
    local addr=${line#*listening on http://}
    addr=${addr%% *}
    local port=${addr##*:} host=${addr%:*}
    # The wildcard addresses are probed on loopback.
    case $host in
    0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
    esac
    until "$binary" healthcheck "http://$host:$port/health" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || (($(now_ms) > deadline)); then
            kill -TERM "$pid" 2>/dev/null || true
            fail "the new server (pid $pid) listens on $addr but its /health never answered 200"
        fi
        sleep 0.1
    done
    if [[ $line == *listener=handed_over* ]]; then
        say "pid $pid serves http://$addr with the listening sockets of the server that ran before, which now drains"
    else
        say "pid $pid serves http://$addr (no server answered on $path, so it bound the port)"
    fi
    say "log: $log"
}

case "${1:-}" in
"") with_systemd ;;
--handover)
    [[ $# -ge 3 ]] || usage "--handover needs PATH and BINARY"
    shift
    with_handover "$@"
    ;;
*) usage "unknown argument ${1}" ;;
esac
