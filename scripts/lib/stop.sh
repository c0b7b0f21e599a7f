# Sourced by the scripts that start servers and load generators.
#
# stop_all PID...: asks each process to stop (SIGTERM), gives each up to
# 3 s, then kills what is left (SIGKILL) and reaps it. Only the PIDs given,
# which the calling script started; an empty argument list does nothing.
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
