// Real-browser check of permessage-deflate (issue 24): Chromium offers the
// extension by itself, so a plain `new WebSocket` negotiates it, and the
// broadcasts it receives compressed read back exactly as published.
//
//   node tests/browser/compression.test.mjs      (or scripts/browser-test.sh)
//
// Checks `ws.extensions` in the page, the server's own count of clients
// that negotiated (`wsnotify_deflate_clients` on /metrics) and of
// compressions (`wsnotify_messages_compressed_total`: one per message,
// however many clients negotiated: the page's own client and this socket),
// and that a long notification, a short one and a channel's message
// arrive intact. Environment as web_client.test.mjs.

import { randomBytes } from 'node:crypto';
import { STEP_MS, assert, launchBrowser, log, publish, runTest, startServer, waitFor } from './support.mjs';

const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 60000);
let server = null;

async function metric(base, name) {
  const text = await (await fetch(new URL('/metrics', base))).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert(line, `/metrics has no ${name}`);
  return Number(line.split(' ')[1]);
}

async function main() {
  server = await startServer([]);
  const base = server.base;
  log(`server at ${base} (pid ${server.proc.pid})`);
  const context = await launchBrowser();
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  await page.goto(`${base}/`);

  // A socket of our own beside the page's client, collecting every message.
  const extensions = await page.evaluate(
    (url) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      window.received = [];
      ws.onmessage = (event) => window.received.push(JSON.parse(event.data));
      ws.onerror = () => reject(new Error('the WebSocket failed'));
      ws.onopen = () => {
        window.probe = ws;
        ws.send(JSON.stringify({ type: 'subscribe', channel: 'news' }));
        resolve(ws.extensions);
      };
    }),
    `${base.replace(/^http/, 'ws')}/ws`,
  );
  log(`ws.extensions: ${extensions}`);
  assert(/^permessage-deflate/.test(extensions), `the browser did not negotiate permessage-deflate: "${extensions}"`);
  assert(/server_no_context_takeover/.test(extensions), 'no server_no_context_takeover in the answer');
  await waitFor(async () => (await metric(base, 'wsnotify_deflate_clients')) >= 1, STEP_MS, 'the server counting the client');
  await waitFor(() => page.evaluate(() => window.received.some((m) => m.type === 'subscribed')), STEP_MS, 'subscribed');

  const before = await metric(base, 'wsnotify_messages_compressed_total');
  const long = `${randomBytes(4).toString('hex')} ` + 'order=48213 status=shipped city=Lisbon amount=129.95 EUR; '.repeat(40);
  const short = `short-${randomBytes(3).toString('hex')}`;
  const onChannel = `on the channel ${long}`;
  await publish(base, { message: long });
  await publish(base, { message: short });
  await publish(base, { message: onChannel, channel: 'news' });
  let got = [];
  await waitFor(async () => {
    got = await page.evaluate(() => window.received.filter((m) => m.type === 'notification'));
    return got.length >= 3;
  }, STEP_MS, 'three notifications in the page');
  assert(got[0].message === long, 'the long broadcast arrived changed');
  assert(got[1].message === short, 'the short broadcast arrived changed');
  assert(got[2].message === onChannel && got[2].channel === 'news', 'the channel message arrived changed');
  const clients = await metric(base, 'wsnotify_deflate_clients');
  assert(clients === 2, `${clients} clients negotiated, not 2 (the page's and this socket)`);
  const compressed = (await metric(base, 'wsnotify_messages_compressed_total')) - before;
  assert(compressed === 3, `the server compressed ${compressed} times for 3 messages, not once each`);
  log('3 notifications compressed once each for 2 clients that negotiated, and read back intact');
  await context.close();
}

runTest('compression', OVERALL_MS, main, () => (server ? [['server', server.lines]] : []));
