# wsnotify in a FROM scratch image: the static musl binary and nothing else
# (no shell, no libc, no curl; about 0.9 MB).
#
#   scripts/build-static.sh        # target/x86_64-unknown-linux-musl/release/wsnotify
#   docker build -t wsnotify .
#   docker run -d --name wsnotify -p 8000:8000 --stop-timeout 1860 \
#       -e WSNOTIFY_ADMIN_TOKEN=change-me wsnotify
#
# The binary is built outside the image, so this build needs no network and
# no Rust toolchain, and ships the very file the tests ran. To build inside
# Docker instead (also offline, from vendored crates), see
# contrib/docker/Dockerfile.multistage.
FROM scratch

COPY target/x86_64-unknown-linux-musl/release/wsnotify /wsnotify

# Not root. scratch has no /etc/passwd, so a bare number (the "nonroot" id of
# distroless images); the server writes no files.
USER 65532:65532

EXPOSE 8000

# SIGTERM starts the drain: new clients are refused, connected ones are
# served until they leave or WSNOTIFY_DRAIN_TIMEOUT (30 min by default)
# passes, then closed with 1001 and given up to 5 s to answer. `docker stop`
# waits only 10 s before SIGKILL: give it more than the drain timeout plus 5 s,
# `docker stop -t 1860` or `docker run --stop-timeout 1860` (compose:
# stop_grace_period). No --init needed: the binary handles SIGTERM and SIGINT
# itself as PID 1, and starts no child processes to reap.
STOPSIGNAL SIGTERM

# The built-in probe (no curl in scratch): GET http://127.0.0.1:$WSNOTIFY_PORT/health,
# exit 0 on 200. /health answers 503 while draining, so a draining container
# turns "unhealthy" after the retries: load balancers that read Docker's
# health (Traefik, Swarm) stop sending it new clients, which is the point.
# Plain Docker never kills a container for being unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/wsnotify", "healthcheck"]

ENTRYPOINT ["/wsnotify"]
