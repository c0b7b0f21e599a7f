// Real-browser test of the built-in web client (GET /, src/web/index.html).
//
//   node tests/browser/web_client.test.mjs      (or scripts/browser-test.sh)
//
// Starts the release binary on a free port (building it if missing), opens
// the page in headless Chromium through playwright-core, and checks that the
// page connects and shows its client id, that a notification published over
// HTTP appears in the log, and that a chat message typed into the page comes
// back. Environment: CHROMIUM (default /usr/bin/chromium), WSNOTIFY_BIN
// (default target/release/wsnotify), TEST_TIMEOUT_MS (default 60000).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.WSNOTIFY_BIN
  ? resolve(process.env.WSNOTIFY_BIN)
  : join(ROOT, 'target', 'release', 'wsnotify');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 60000);
const STEP_MS = 10000;

let server = null;
let context = null;
let userDataDir = null;
const serverLog = [];

function cleanup() {
  if (server && server.exitCode === null && server.signalCode === null) {
    try { process.kill(server.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  if (userDataDir) {
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
  }
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => { cleanup(); process.exit(130); });
}

function finish(error) {
  if (error) {
    console.error(`FAIL web client: ${error && error.stack ? error.stack : error}`);
    if (serverLog.length) console.error('server log:\n  ' + serverLog.join('\n  '));
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  console.log('1 passed, 0 failed');
  process.exit(0);
}

const hardTimeout = setTimeout(
  () => finish(new Error(`timed out after ${OVERALL_MS} ms`)),
  OVERALL_MS,
);

function log(message) { console.log(`  ${message}`); }

/** Starts wsnotify on port 0 and resolves with its base URL. */
function startServer() {
  if (!existsSync(BIN)) {
    log(`${BIN} is missing; running cargo build --release`);
    const build = spawnSync('cargo', ['build', '--release'], { cwd: ROOT, stdio: 'inherit' });
    if (build.status !== 0 || !existsSync(BIN)) throw new Error('cargo build --release failed');
  }
  server = spawn(BIN, ['--host', '127.0.0.1', '--port', '0', '--notify-interval', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error('no "listening on" line within 10 s')), STEP_MS);
    let pending = '';
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        serverLog.push(line);
        const match = /listening on (http:\/\/[^\s"]+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolvePromise(match[1]);
        }
      }
    });
    server.on('error', (e) => { clearTimeout(timer); reject(e); });
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`wsnotify exited early (code ${code}, signal ${signal})`));
    });
  });
}

async function publish(base, body) {
  const response = await fetch(`${base}/broadcast`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`POST /broadcast answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  const base = await startServer();
  log(`server at ${base} (pid ${server.pid})`);

  userDataDir = mkdtempSync(join(tmpdir(), 'wsnotify-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 800 },
    timeout: STEP_MS * 3,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // The page declares no icon, so Chromium's automatic /favicon.ico request
  // gets a 404 (and a console error); any other failed request is a problem.
  page.on('response', (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== '/favicon.ico') {
      pageErrors.push(`${r.status()} for ${r.url()}`);
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: .* 404/.test(m.text())) {
      pageErrors.push(`console: ${m.text()}`);
    }
  });

  const screenshot = join(tmpdir(), `wsnotify-web-client-${Date.now()}.png`);
  try {
    const response = await page.goto(`${base}/`);
    assert(response && response.status() === 200, `GET / answered ${response && response.status()}`);
    assert((await page.title()) === 'wsnotify', `title is ${await page.title()}`);

    // Connected, with a client id, shown in the page too.
    await page.waitForFunction(
      () => window.wsnotify && window.wsnotify.state() === 'connected' && !!window.wsnotify.clientId(),
    );
    const clientId = await page.evaluate(() => window.wsnotify.clientId());
    assert((await page.textContent('#state')) === 'connected', 'the state element does not say connected');
    assert((await page.textContent('#client-id')) === clientId, 'the client id element is wrong');
    await page.locator('#log .msg-welcome', { hasText: clientId }).waitFor();
    log(`connected as ${clientId}`);

    // A notification published over HTTP shows up in the log.
    const note = `browser-note-${randomBytes(4).toString('hex')}`;
    const answer = await publish(base, { message: note, type: 'browser', data: { from: 'node' } });
    assert(answer.status === 'sent' && answer.recipients >= 1, `publish answered ${JSON.stringify(answer)}`);
    const entry = page.locator('#log .msg-notification', { hasText: note });
    await entry.waitFor();
    const entryText = await entry.textContent();
    assert(entryText.includes('[browser]'), `the entry lacks its category: ${entryText}`);
    assert(entryText.includes(`#${answer.id}`), `the entry lacks its id: ${entryText}`);
    log(`notification #${answer.id} shown: ${entryText.trim()}`);

    // A chat message typed into the page comes back, marked as our own.
    const chat = `hello from chromium ${randomBytes(3).toString('hex')}`;
    await page.locator('#chat-input').pressSequentially(chat);
    await page.click('#chat-send');
    const own = page.locator('#log .msg-chat', { hasText: chat });
    await own.waitFor();
    assert(await own.evaluate((e) => e.classList.contains('own')), 'own chat is not marked as own');
    assert((await page.inputValue('#chat-input')) === '', 'the chat input was not cleared');
    const echoed = await page.evaluate(
      (text) => window.wsnotify.messages.find((m) => m.type === 'chat' && m.message === text),
      chat,
    );
    assert(echoed && echoed.from === clientId, `chat came back from ${echoed && echoed.from}`);
    log('chat message sent and shown');

    assert(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
  } finally {
    try {
      await page.screenshot({ path: screenshot, fullPage: true, timeout: STEP_MS });
      log(`screenshot: ${screenshot}`);
    } catch (e) {
      log(`no screenshot: ${e}`);
    }
  }
  await context.close();
  context = null;
}

main().then(
  () => { clearTimeout(hardTimeout); finish(null); },
  (error) => { clearTimeout(hardTimeout); finish(error); },
);
