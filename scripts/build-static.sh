#!/usr/bin/env bash
# Builds wsnotify as one static binary for x86_64 Linux (musl libc), the
# file that the Dockerfile, the systemd unit and the Kubernetes manifests
# deploy. Prints its path and its size.
#
#   scripts/build-static.sh
#
# The release profile in Cargo.toml does the size work: lto = true and
# codegen-units = 1 (whole-program optimisation), strip = true (no symbols),
# panic = "abort" (no unwinding tables; and a panic anywhere ends the whole
# process at once, so systemd, Docker or Kubernetes restart a clean server
# instead of keeping one with a dead worker thread; see docs/deploy.md
# section). The musl target links statically by default (crt-static), so the
# result needs no libc on the host: it runs FROM scratch.
#
# Environment:
#   WSNOTIFY_STATIC_TARGET  Rust target (default x86_64-unknown-linux-musl).
#                           x86_64-unknown-linux-gnu builds a static glibc
#                           binary instead (+crt-static): bigger, and it cannot
#                           resolve host names without glibc's NSS libraries,
#                           so it is a fallback, not for FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${WSNOTIFY_STATIC_TARGET:-x86_64-unknown-linux-musl}

installed() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

if command -v rustup >/dev/null && ! installed "$target"; then
    echo "build-static: installing the Rust standard library for $target" >&2
    rustup target add "$target" >&2 || {
        echo "build-static: cannot install the $target target (rustup target add $target)" >&2
        exit 1
    }
fi

case $target in
*-linux-musl) ;; # static by default
*-linux-gnu) export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" ;;
*)
    echo "build-static: unsupported target $target" >&2
    exit 2
    ;;
esac

cargo build --release --locked --target "$target" >&2

bin=target/$target/release/wsnotify
[[ -x $bin ]] || {
    echo "build-static: $bin was not produced" >&2
    exit 1
}
bytes=$(stat -c %s "$bin")
echo "$bin"
awk -v b="$bytes" 'BEGIN { printf "size: %d bytes (%.2f MiB)\n", b, b / 1048576 }'
