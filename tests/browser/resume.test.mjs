// Real-browser test of resume across a drain (src/web/client.js through the
// built-in page).
//
//   node tests/browser/resume.test.mjs      (or scripts/browser-test.sh)
//
// 1. Behind one redis-server (started here on a free loopback port): the
//    page connects to server A; broadcasts flow every 40 ms; server B takes
//    A's port over with --handover and A drains. The page follows its
//    shutdown_notice to B with since/epoch and must show "recovered N
//    missed messages", and its log must hold every broadcast exactly once,
//    in order, with offsets rising by one.
// 2. Without Redis: the same hand-over between two lone servers. The
//    hand-over passes the stream, so the page's resume on the new server is
//    recovered too, with the same epoch and no gap.
// 3. A restart without hand-over or Redis: the page's resume meets a
//    server that does not know its epoch, and the page says so in plain
//    words (not that the server "lost its history").
// Every reconnect after a shutdown notice says so on the page.
// Needs redis-server (the test fails at once without it). Environment as
// web_client.test.mjs; TEST_TIMEOUT_MS defaults to 90000.

import { join } from 'node:path';
import {
  STEP_MS, assert, launchBrowser, log, publish, runTest, sleep, startRedis, startServer, tempDir, waitFor,
} from './support.mjs';

const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 90000);
const PUBLISH_EVERY_MS = 40;
// The reconnect hints spread over the drain window (here 3 s).
const DRAIN = ['--drain-timeout', '3s'];
const servers = {};

async function connected(page) {
  await page.waitForFunction(() => window.wsnotify.state() === 'connected' && !!window.wsnotify.clientId());
  return page.evaluate(() => ({ epoch: window.wsnotify.client().epoch, offset: window.wsnotify.client().offset }));
}

/** The page's log entries of the notifications whose text starts with `prefix`. */
function entries(page, prefix) {
  return page.$$eval('#log .msg-notification', (els, p) => els
    .map((e) => ({ offset: e.getAttribute('data-offset'), text: e.textContent }))
    .filter((e) => e.text.includes(p)), prefix);
}

async function withRedis(page) {
  const redis = await startRedis();
  const handover = join(tempDir('wsnotify-resume-'), 'handover.sock');
  const args = ['--redis', redis.url, '--handover', handover, ...DRAIN];
  servers.A = await startServer(args);
  log(`redis ${redis.url}; A pid ${servers.A.proc.pid} at ${servers.A.base}`);
  await page.goto(`${servers.A.base}/`);
  const before = await connected(page);
  assert(typeof before.epoch === 'string' && before.epoch !== '', `no epoch in the welcome: ${JSON.stringify(before)}`);
  log(`page on A: epoch ${before.epoch}, offset ${before.offset}`);

  const prefix = `keep-${process.pid}-`;
  let publishing = true;
  let published = 0;
  const publisher = (async () => {
    while (publishing) {
      await publish(servers.A.base, { message: `${prefix}${published + 1} ` });
      published++;
      // Pacing, not a wait: one broadcast every PUBLISH_EVERY_MS.
      await sleep(PUBLISH_EVERY_MS);
    }
  })();
  const shownCount = async () => (await entries(page, prefix)).length;
  await waitFor(async () => (await shownCount()) >= 10, STEP_MS, 'broadcasts on the page before the hand-over');
  servers.B = await startServer(args);
  log(`B pid ${servers.B.proc.pid} took over port ${servers.B.port}; A drains`);
  await page.locator('#log .msg-shutdown_notice').waitFor();
  const recovered = page.locator('#log .msg-recovered');
  await recovered.waitFor({ timeout: STEP_MS * 2 });
  let exitA = null;
  servers.A.exited.then((exit) => { exitA = exit; });
  await waitFor(() => exitA !== null, STEP_MS, 'exit of A after the page left');
  assert(exitA.code === 0, `A did not exit 0 after the page left: ${JSON.stringify(exitA)}`);
  // Broadcasts go on through B alone until the page has shown ten more.
  const atExit = published;
  await waitFor(async () => (await shownCount()) >= atExit + 10, STEP_MS, 'broadcasts on the page after A exited');
  publishing = false;
  await publisher;
  log(`${published} broadcasts published`);

  try {
    await page.waitForFunction(
      ([p, n]) => [...document.querySelectorAll('#log .msg-notification')].filter((e) => e.textContent.includes(p)).length >= n,
      [prefix, published],
    );
  } catch (e) {
    // Say which broadcasts the page lacks, and what else it logged.
    const shown = (await entries(page, prefix)).map((x) => Number(new RegExp(`${prefix}(\\d+) `).exec(x.text)[1]));
    const missing = Array.from({ length: published }, (_, i) => i + 1).filter((n) => !shown.includes(n));
    const others = await page.$$eval('#log > *:not(.msg-notification)', (els) => els.map((x) => x.textContent.trim()));
    throw new Error(`${e.message}; ${shown.length} of ${published} shown, missing ${missing.join(',')}; other log entries: ${others.join(' | ')}`);
  }
  // A marker published last: once the page shows it, any late duplicate
  // would have come before it.
  const marker = `after-${process.pid}`;
  await publish(servers.B.base, { message: marker });
  await page.locator('#log .msg-notification', { hasText: marker }).waitFor();
  const got = await entries(page, prefix);
  const numbers = got.map((e) => Number(new RegExp(`${prefix}(\\d+) `).exec(e.text)[1]));
  const expected = Array.from({ length: published }, (_, i) => i + 1);
  assert(JSON.stringify(numbers) === JSON.stringify(expected),
    `the log holds broadcasts ${numbers.join(',')}; expected 1..${published} once each`);
  const offsets = got.map((e) => Number(e.offset));
  assert(offsets.every((o, i) => Number.isSafeInteger(o) && (i === 0 || o === offsets[i - 1] + 1)),
    `offsets in the log are not consecutive: ${offsets.join(',')}`);
  assert(await page.locator('#log .msg-gap').count() === 0, 'the page reported a gap');
  const recoveredText = (await recovered.textContent()).trim();
  assert(new RegExp(`${AFTER_UPGRADE}: (nothing missed|recovered \\d+ missed messages?)$`).test(recoveredText),
    `the recovery entry reads ${recoveredText}`);
  await saysItReconnectsAfterTheUpgrade(page);
  const after = await connected(page);
  assert(after.epoch === before.epoch, `the epoch changed behind one Redis: ${before.epoch} -> ${after.epoch}`);
  log(`all ${published} broadcasts shown once, offsets ${offsets[0]}..${offsets[offsets.length - 1]}; ${recoveredText}`);
}

async function withoutRedis(page) {
  const handover = join(tempDir('wsnotify-resume-'), 'handover.sock');
  const args = ['--handover', handover, ...DRAIN];
  servers.C = await startServer(args);
  await page.goto(`${servers.C.base}/`);
  const before = await connected(page);
  await publish(servers.C.base, { message: 'before the restart' });
  await page.locator('#log .msg-notification', { hasText: 'before the restart' }).waitFor();
  const recoveries = page.locator('#log .msg-recovered');
  const recoveredBefore = await recoveries.count();
  servers.D = await startServer(args);
  log(`lone server C pid ${servers.C.proc.pid} handed over to D pid ${servers.D.proc.pid}`);
  // The hand-over passes the stream: D continues C's epoch and history, so
  // the page's resume on D is recovered, not a gap.
  await waitFor(async () => (await recoveries.count()) > recoveredBefore, STEP_MS * 2, 'a recovery on D');
  const recoveredText = (await recoveries.last().textContent()).trim();
  assert(recoveredText.endsWith(`${AFTER_UPGRADE}: nothing missed`), `the recovery entry on D reads ${recoveredText}`);
  await publish(servers.D.base, { message: 'after the restart' });
  await page.locator('#log .msg-notification', { hasText: 'after the restart' }).waitFor({ timeout: STEP_MS * 2 });
  assert(await page.locator('#log .msg-gap').count() === 0, 'the page reported a gap across a one-host upgrade');
  const after = await connected(page);
  assert(after.epoch === before.epoch, `the epoch changed across a one-host upgrade: ${before.epoch} -> ${after.epoch}`);
  const shown = await page.$$eval('#log .msg-notification', (els) => els.map((e) => e.textContent));
  assert(shown.filter((t) => t.includes('before the restart')).length === 1, 'the broadcast before the upgrade was shown twice');
  log(`one-host upgrade: epoch kept, ${recoveredText}, no gap`);
}

/** How the page begins an entry about a connection that replaced one the
 * server closed for a shutdown or an upgrade. */
const AFTER_UPGRADE = 'reconnected after the server shut down or was upgraded';

/** The notice and the reconnect that followed it, in plain words. */
async function saysItReconnectsAfterTheUpgrade(page) {
  const notice = (await page.locator('#log .msg-shutdown_notice').last().textContent()).trim();
  assert(notice.includes('the server is shutting down or being upgraded; this page reconnects in'),
    `the notice entry reads ${notice}`);
  await page.locator('#log .msg-system', { hasText: 'because the server shut down or was upgraded' }).first().waitFor();
}

async function restartWithoutHandover(page) {
  servers.E = await startServer(DRAIN);
  await page.goto(`${servers.E.base}/`);
  const before = await connected(page);
  await publish(servers.E.base, { message: 'before the plain restart' });
  await page.locator('#log .msg-notification', { hasText: 'before the plain restart' }).waitFor();
  const gaps = page.locator('#log .msg-gap');
  servers.E.proc.kill('SIGTERM');
  await page.locator('#log .msg-shutdown_notice').waitFor();
  // E exits once the page has left; a new server without hand-over or Redis
  // takes the port, and the page's resume meets an epoch it does not know.
  const exitE = await servers.E.exited;
  assert(exitE.code === 0, `E did not exit 0: ${JSON.stringify(exitE)}`);
  servers.F = await startServer([...DRAIN, '--port', String(servers.E.port)]);
  log(`E pid ${servers.E.proc.pid} stopped; F pid ${servers.F.proc.pid} on the same port, no hand-over`);
  await gaps.first().waitFor({ timeout: STEP_MS * 2 });
  const gapText = (await gaps.first().textContent()).trim();
  assert(gapText.includes(`${AFTER_UPGRADE}: missed messages: the server does not know the stream`)
    && gapText.includes('restarted without a hand-over or Redis'), `the gap entry reads ${gapText}`);
  assert(!gapText.includes('lost its history'), `the gap entry reads ${gapText}`);
  const after = await connected(page);
  assert(after.epoch !== before.epoch, 'the restarted server kept the epoch without a hand-over');
  await saysItReconnectsAfterTheUpgrade(page);
  log(`restart without hand-over: ${gapText}`);
}

async function main() {
  const context = await launchBrowser();
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await withRedis(page);
  await withoutRedis(page);
  await restartWithoutHandover(page);
  assert(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
  await context.close();
}

runTest('resume across a drain', OVERALL_MS, main,
  () => Object.entries(servers).map(([name, s]) => [`server ${name}`, s.lines]));
