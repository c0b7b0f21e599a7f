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

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { STEP_MS, assert, launchBrowser, log, publish, runTest, startServer } from './support.mjs';

const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 60000);
let server = null;

async function main() {
  server = await startServer([]);
  const base = server.base;
  log(`server at ${base} (pid ${server.proc.pid})`);

  const context = await launchBrowser();
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
}

runTest('web client', OVERALL_MS, main, () => (server ? [['server', server.lines]] : []));
