# Sourced by the scripts that start servers and load generators; they stop
# only the processes they started, by PID.

# stop_all PID...: asks each process to stop (SIGTERM), gives each up to
# 3 s, then kills what is left (SIGKILL) and reaps it. An empty argument
# list does nothing.
stop_all() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# listening_port LOG PID: prints the port of the server's `listening on`
# line in LOG (it was started with --port 0). Fails if PID exits first or
# no line comes within 10 s.
listening_port() {
    local log=$1 pid=$2 port
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
        if [[ -n $port ]]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
