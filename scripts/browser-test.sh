#!/usr/bin/env bash
# Real-browser test of the built-in web client (GET /): installs
# playwright-core into tests/browser/node_modules if needed (npm ci), then
# runs the client module's unit tests (tests/browser/client_module.test.mjs,
# node only), tests/browser/web_client.test.mjs and
# tests/browser/resume.test.mjs (a drain and a hand-over behind a real
# redis-server, then without it) and tests/browser/channels.test.mjs
# (channels joined, left and resumed across a hand-over through the page;
# connection tokens). Needs node >= 20, Chromium
# (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chrome) and
# redis-server (apt-get install redis-server).
# WSNOTIFY_BIN and TEST_TIMEOUT_MS are passed through to the test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null 2>&1 || { echo "browser-test: node is not installed" >&2; exit 1; }
chromium=${CHROMIUM:-/usr/bin/chromium}
[[ -x $chromium ]] || {
    echo "browser-test: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)" >&2
    exit 1
}
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi
node --test tests/browser/client_module.test.mjs
node tests/browser/web_client.test.mjs "$@"
node tests/browser/resume.test.mjs "$@"
node tests/browser/channels.test.mjs "$@"
