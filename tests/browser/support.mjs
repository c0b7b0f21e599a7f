// What the browser tests share: the wsnotify binary, servers and a
// redis-server started on loopback and killed at exit, headless Chromium,
// publishing over HTTP.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.WSNOTIFY_BIN
  ? resolve(process.env.WSNOTIFY_BIN)
  : join(ROOT, 'target', 'release', 'wsnotify');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const STEP_MS = 10000;

const children = [];
const scratch = [];

export function cleanup() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  for (const dir of scratch) {
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* ignore */ }
  }
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => { cleanup(); process.exit(130); });
}

/** A temporary directory removed at exit. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

export function log(message) { console.log(`  ${message}`); }

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** How often `waitFor` looks at its condition again. */
const POLL_MS = 20;

/**
 * Resolves once `predicate()` (which may return a promise) is true; rejects
 * naming `what` once `timeoutMs` has passed. Every polling wait of the
 * browser tests goes through here, so none sleeps for a guessed time.
 */
export async function waitFor(predicate, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`);
    // Pacing, not a wait: only how often the condition is looked at.
    await sleep(POLL_MS);
  }
}

/** Runs `main` within `overallMs`, prints the tally and exits. */
export function runTest(name, overallMs, main, logs = () => []) {
  const finish = (error) => {
    if (error) {
      console.error(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
      for (const [label, lines] of logs()) {
        if (lines.length) console.error(`${label} log:\n  ` + lines.join('\n  '));
      }
      console.log('0 passed, 1 failed');
      process.exit(1);
    }
    console.log('1 passed, 0 failed');
    process.exit(0);
  };
  const timer = setTimeout(() => finish(new Error(`timed out after ${overallMs} ms`)), overallMs);
  main().then(
    () => { clearTimeout(timer); finish(null); },
    (error) => { clearTimeout(timer); finish(error); },
  );
}

function ensureBinary() {
  if (existsSync(BIN)) return;
  log(`${BIN} is missing; running cargo build --release`);
  const build = spawnSync('cargo', ['build', '--release', '-p', 'wsnotify'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0 || !existsSync(BIN)) throw new Error('cargo build --release failed');
}

/**
 * Starts wsnotify on 127.0.0.1 (port 0 unless `args` names one) and
 * resolves with { proc, base, port, lines, exited } once it logs its
 * `listening on` line. `lines` collects its stderr.
 */
export function startServer(args) {
  ensureBinary();
  const proc = spawn(BIN, ['--host', '127.0.0.1', '--port', '0', '--notify-interval', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(proc);
  const lines = [];
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error('no "listening on" line within 10 s')), STEP_MS);
    let pending = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop();
      for (const line of parts) {
        lines.push(line);
        const match = /listening on (http:\/\/[^\s"]+:(\d+))/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolvePromise({ proc, base: match[1], port: Number(match[2]), lines, exited });
        }
      }
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`wsnotify exited early (code ${code}, signal ${signal})`));
    });
  });
}

function freePort() {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePromise(port));
    });
  });
}

/** A redis-server on a free loopback port; resolves with its URL. */
export async function startRedis() {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error('redis-server is not installed (apt-get install redis-server); this test needs it');
  }
  const port = await freePort();
  const proc = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '',
    '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
  children.push(proc);
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`redis-server exited (code ${proc.exitCode}) on ${port}`);
    return new Promise((r) => {
      const socket = createConnection(port, '127.0.0.1', () => { socket.destroy(); r(true); });
      socket.on('error', () => r(false));
    });
  }, STEP_MS, `redis-server accepting on ${port}`);
  return { proc, url: `redis://127.0.0.1:${port}` };
}

/** POST /broadcast on a new connection each time (so that it reaches
 * whichever process accepts now); resolves with the JSON answer. */
export function publish(base, body) {
  const url = new URL('/broadcast', base);
  const payload = JSON.stringify(body);
  return new Promise((resolvePromise, reject) => {
    const req = request(url, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), Connection: 'close' },
      timeout: STEP_MS,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`POST /broadcast answered ${res.statusCode}: ${text}`));
        else resolvePromise(JSON.parse(text));
      });
    });
    req.on('timeout', () => req.destroy(new Error('POST /broadcast timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Headless Chromium with a throw-away profile. */
export async function launchBrowser() {
  return chromium.launchPersistentContext(tempDir('wsnotify-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 800 },
    timeout: STEP_MS * 3,
  });
}
