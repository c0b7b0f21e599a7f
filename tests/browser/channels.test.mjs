// Real-browser test of channels and connection tokens through the built-in
// page (src/web/index.html) and the client module (src/web/client.js).
//
//   node tests/browser/channels.test.mjs      (or scripts/browser-test.sh)
//
// 1. Two pages on one server join channel "news" with the page's channel
//    box: a message published over HTTP to "news" reaches both (and says
//    its channel), one published to a channel neither joined reaches none,
//    chat sent to "news" from one page reaches both, and once the second
//    page has left "news" nothing of it reaches that page any more.
// 2. A page joined to "orders" while messages are published to it every
//    40 ms, across a hand-over (--handover, no Redis): the page follows the
//    shutdown notice to the new server, resumes the channel from its last
//    offset, says "channel orders: ... recovered", and its log holds every
//    message of the channel exactly once, in order, offsets rising by one.
// 3. With --token-secret and --require-token: the page without a token
//    cannot connect; with a token typed into its token box it connects and
//    shows the user, and a message published to that user reaches it. The
//    client module with an async token function minting each token: it is
//    called before every connect, so after the server closes the
//    connection at the first token's expiry (4001) the client connects
//    again with a fresh one; a private channel listed in the token can be
//    joined, one that is not is refused and forgotten; a message to the
//    user published while the client reconnects reaches it after the
//    reconnect (its own user channel resumed), once and in order.
// Environment as web_client.test.mjs; TEST_TIMEOUT_MS defaults to 90000;
// CHANNELS_TEST_PARTS (e.g. "resume,tokens") runs only the parts named
// (channels, resume, tokens).

import { createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  STEP_MS, assert, launchBrowser, log, publish, runTest, sleep, startServer, tempDir, waitFor,
} from './support.mjs';

const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 90000);
const PUBLISH_EVERY_MS = 40;
const DRAIN = ['--drain-timeout', '3s'];
const servers = {};

/** An HS256 JWT over `claims`, as an application's backend would mint it. */
function mintToken(secret, claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

async function openPage(context, base, pageErrors) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${base}/`);
  return page;
}

async function connected(page) {
  await page.waitForFunction(() => window.wsnotify.state() === 'connected' && !!window.wsnotify.clientId());
}

/** Joins `name` with the page's channel box and waits for the answer. */
async function joinChannel(page, name) {
  const answers = page.locator(`#log .msg-subscribed[data-channel="${name}"]`);
  const before = await answers.count();
  await page.fill('#channel', name);
  await page.click('#join');
  await waitFor(async () => (await answers.count()) > before, STEP_MS, `the page joining ${name}`);
  const listed = await page.textContent('#channels');
  assert(listed.split(', ').includes(name), `the joined list reads ${listed}`);
}

async function leaveChannel(page, name) {
  await page.fill('#channel', name);
  await page.click('#leave');
  await page.locator(`#log .msg-unsubscribed[data-channel="${name}"]`).waitFor();
  const listed = await page.textContent('#channels');
  assert(!listed.split(', ').includes(name), `the joined list still names ${name}: ${listed}`);
}

/** The page's log entries of channel `name` whose text includes `text`. */
function channelEntries(page, name, text, type = 'notification') {
  return page.$$eval(`#log .msg-${type}[data-channel="${name}"]`, (els, t) => els
    .map((e) => ({ offset: e.getAttribute('data-offset'), text: e.textContent, own: e.classList.contains('own') }))
    .filter((e) => e.text.includes(t)), text);
}

async function chatOnChannel(page, name, text) {
  await page.selectOption('#chat-channel', name);
  await page.fill('#chat-input', text);
  await page.click('#chat-send');
}

async function joinLeaveAndChat(context, pageErrors) {
  servers.A = await startServer([]);
  const base = servers.A.base;
  const first = await openPage(context, base, pageErrors);
  const second = await openPage(context, base, pageErrors);
  await connected(first);
  await connected(second);
  await joinChannel(first, 'news');
  await joinChannel(second, 'news');

  const tag = randomBytes(3).toString('hex');
  const toNews = await publish(base, { channel: 'news', message: `news-1-${tag}` });
  assert(toNews.recipients === 2, `publish to news answered ${JSON.stringify(toNews)}`);
  for (const page of [first, second]) {
    await page.locator('#log .msg-notification[data-channel="news"]', { hasText: `news-1-${tag}` }).waitFor();
  }
  const [shown] = await channelEntries(first, 'news', `news-1-${tag}`);
  assert(Number(shown.offset) >= 1, `the channel message has no offset: ${JSON.stringify(shown)}`);
  const elsewhere = await publish(base, { channel: 'sport', message: `sport-${tag}` });
  assert(elsewhere.recipients === 0, `publish to a channel nobody joined answered ${JSON.stringify(elsewhere)}`);

  await chatOnChannel(first, 'news', `chat-${tag}`);
  for (const page of [first, second]) {
    await page.locator('#log .msg-chat[data-channel="news"]', { hasText: `chat-${tag}` }).waitFor();
  }
  const [ownChat] = await channelEntries(first, 'news', `chat-${tag}`, 'chat');
  assert(ownChat.own, 'the chat on the channel is not marked as the sender\'s own');
  assert(Number(ownChat.offset) === Number(shown.offset) + 1,
    `the chat's channel offset ${ownChat.offset} does not follow ${shown.offset}`);
  log(`two pages in channel news: a published message (offset ${shown.offset}) and a chat (offset ${ownChat.offset})`);

  await leaveChannel(second, 'news');
  const afterLeave = await publish(base, { channel: 'news', message: `news-2-${tag}` });
  assert(afterLeave.recipients === 1, `publish after one page left answered ${JSON.stringify(afterLeave)}`);
  await first.locator('#log .msg-notification[data-channel="news"]', { hasText: `news-2-${tag}` }).waitFor();
  // Published after the channel message: once the page shows it, the
  // channel message would have come before it.
  await publish(base, { message: `everyone-${tag}` });
  await second.locator('#log .msg-notification', { hasText: `everyone-${tag}` }).waitFor();
  for (const page of [first, second]) {
    const texts = await page.$$eval('#log .msg', (els) => els.map((e) => e.textContent));
    assert(!texts.some((t) => t.includes(`sport-${tag}`)), 'a page shows a message of a channel it never joined');
  }
  const leftTexts = await second.$$eval('#log .msg', (els) => els.map((e) => e.textContent));
  assert(!leftTexts.some((t) => t.includes(`news-2-${tag}`)), 'the page that left news still got its message');
  log('after leaving, the page gets nothing of the channel');
  await first.close();
  await second.close();
}

async function resumeAcrossHandover(context, pageErrors) {
  const handover = join(tempDir('wsnotify-channels-'), 'handover.sock');
  const args = ['--handover', handover, ...DRAIN];
  servers.C = await startServer(args);
  const page = await openPage(context, servers.C.base, pageErrors);
  await connected(page);
  await joinChannel(page, 'orders');

  const prefix = `order-${process.pid}-`;
  let publishing = true;
  let published = 0;
  const publisher = (async () => {
    while (publishing) {
      await publish(servers.C.base, { channel: 'orders', message: `${prefix}${published + 1} ` });
      published++;
      // Pacing, not a wait: one message every PUBLISH_EVERY_MS.
      await sleep(PUBLISH_EVERY_MS);
    }
  })();
  const shownCount = async () => (await channelEntries(page, 'orders', prefix)).length;
  await waitFor(async () => (await shownCount()) >= 10, STEP_MS, 'channel messages before the hand-over');
  servers.D = await startServer(args);
  log(`C pid ${servers.C.proc.pid} handed over to D pid ${servers.D.proc.pid}; C drains`);
  await page.locator('#log .msg-shutdown_notice').waitFor();
  const recovered = page.locator('#log .msg-recovered', { hasText: 'channel orders:' });
  await recovered.waitFor({ timeout: STEP_MS * 2 });
  const exitC = await servers.C.exited;
  assert(exitC.code === 0, `C did not exit 0 after the page left: ${JSON.stringify(exitC)}`);
  const atExit = published;
  await waitFor(async () => (await shownCount()) >= atExit + 10, STEP_MS, 'channel messages after C exited');
  publishing = false;
  await publisher;

  const numbersOf = (entries) => entries.map((e) => Number(new RegExp(`${prefix}(\\d+) `).exec(e.text)[1]));
  try {
    await waitFor(async () => (await shownCount()) >= published, STEP_MS, `all ${published} channel messages`);
  } catch (e) {
    const shown = numbersOf(await channelEntries(page, 'orders', prefix));
    const missing = Array.from({ length: published }, (_, i) => i + 1).filter((n) => !shown.includes(n));
    const others = await page.$$eval('#log > *:not(.msg-notification)', (els) => els.map((x) => x.textContent.trim()));
    throw new Error(`${e.message}; ${shown.length} shown, missing ${missing.join(',')}; other entries: ${others.join(' | ')}`);
  }
  // A marker published last: a late duplicate would have come before it.
  const marker = `orders-end-${process.pid}`;
  await publish(servers.D.base, { channel: 'orders', message: marker });
  await page.locator('#log .msg-notification[data-channel="orders"]', { hasText: marker }).waitFor();
  const got = await channelEntries(page, 'orders', prefix);
  const numbers = numbersOf(got);
  const expected = Array.from({ length: published }, (_, i) => i + 1);
  assert(JSON.stringify(numbers) === JSON.stringify(expected),
    `the log holds channel messages ${numbers.join(',')}; expected 1..${published} once each`);
  const offsets = got.map((e) => Number(e.offset));
  assert(offsets.every((o, i) => Number.isSafeInteger(o) && (i === 0 || o === offsets[i - 1] + 1)),
    `channel offsets in the log are not consecutive: ${offsets.join(',')}`);
  assert(await page.locator('#log .msg-gap').count() === 0, 'the page reported a gap');
  const recoveredText = (await recovered.textContent()).trim();
  assert(/channel orders: reconnected after the server shut down or was upgraded: (nothing missed|recovered \d+ missed messages?)$/
    .test(recoveredText), `the channel's recovery entry reads ${recoveredText}`);
  log(`all ${published} messages of channel orders shown once, offsets ${offsets[0]}..${offsets.at(-1)}; ${recoveredText}`);
  await page.close();
}

async function tokens(context, pageErrors) {
  const secret = randomBytes(32).toString('hex');
  servers.T = await startServer(['--token-secret', secret, '--require-token']);
  const base = servers.T.base;
  const wsUrl = base.replace(/^http/, 'ws') + '/ws';
  const inAMinute = () => Math.floor(Date.now() / 1000) + 60;

  // The page cannot connect without a token; with one in its box it can.
  const page = await openPage(context, base, pageErrors);
  await page.locator('#log .msg-system', { hasText: 'closed' }).first().waitFor();
  assert(await page.evaluate(() => window.wsnotify.state()) !== 'connected', 'connected without a token');
  await page.fill('#token', mintToken(secret, { sub: 'alice', exp: inAMinute() }));
  await page.click('#disconnect');
  await page.click('#connect');
  await connected(page);
  assert((await page.textContent('#user')) === 'alice', `the page shows user ${await page.textContent('#user')}`);
  const tag = randomBytes(3).toString('hex');
  const toUser = await publish(base, { user: 'alice', message: `for-alice-${tag}` });
  assert(toUser.recipients === 1, `publish to user alice answered ${JSON.stringify(toUser)}`);
  await page.locator('#log .msg-notification[data-channel="user:alice"]', { hasText: `for-alice-${tag}` }).waitFor();
  log('the page connected with the token in its box, shows user alice and got her message');

  // The module with an async token function: the first token expires in
  // two seconds; every later one is good for a minute.
  let minted = 0;
  await page.exposeFunction('freshToken', async () => {
    minted++;
    const exp = minted === 1 ? Math.floor(Date.now() / 1000) + 2 : inAMinute();
    return mintToken(secret, { sub: 'bob', exp, channels: ['private:team'] });
  });
  await page.evaluate(async (url) => {
    const { connect } = await import('/client.js');
    const seen = { welcomes: [], closes: [], messages: [], subscribed: [], team: [] };
    window.tokenTest = seen;
    window.tokenClient = connect(url, {
      token: () => window.freshToken(),
      baseDelayMs: 100,
      maxDelayMs: 400,
      onWelcome: (m) => seen.welcomes.push(m.user),
      onClose: (e) => seen.closes.push(e.code),
      onMessage: (m) => seen.messages.push(m),
      onSubscribed: (channel) => seen.subscribed.push(channel),
    });
  }, wsUrl);
  const seen = () => page.evaluate(() => window.tokenTest);
  await waitFor(async () => (await seen()).welcomes.length >= 1, STEP_MS, 'a welcome with the first token');
  await waitFor(async () => (await seen()).welcomes.length >= 2, STEP_MS, 'a welcome after the first token expired');
  const afterExpiry = await seen();
  assert(afterExpiry.closes.includes(4001), `the server did not close at expiry with 4001: ${afterExpiry.closes}`);
  assert(afterExpiry.welcomes.every((u) => u === 'bob'), `welcomes named ${afterExpiry.welcomes}`);
  assert(minted >= 2, `the token function was called ${minted} times for ${afterExpiry.welcomes.length} connections`);
  log(`token expired (4001), reconnected with a fresh one: ${minted} tokens minted`);

  await page.evaluate(() => {
    window.tokenClient.subscribe('private:team', (m) => window.tokenTest.team.push(m));
    window.tokenClient.subscribe('private:boss', (m) => window.tokenTest.team.push(m));
  });
  await waitFor(async () => (await seen()).messages.some((m) => m.type === 'error' && m.channel === 'private:boss'),
    STEP_MS, 'the refusal of private:boss');
  await waitFor(async () => (await seen()).subscribed.includes('private:team'), STEP_MS, 'bob joining private:team');
  const toTeam = await publish(base, { channel: 'private:team', message: `team-${tag}` });
  assert(toTeam.recipients === 1, `publish to private:team answered ${JSON.stringify(toTeam)}`);
  await waitFor(async () => (await seen()).team.some((m) => m.message === `team-${tag}`), STEP_MS,
    'the private channel message');
  const joined = await page.evaluate(() => window.tokenClient.channels);
  assert(JSON.stringify(joined) === '["private:team"]', `the client keeps channels ${JSON.stringify(joined)}`);
  log('private:team joined with the token\'s claim, private:boss refused and forgotten');

  // A message to the user sent while the client reconnects is not lost:
  // the client resumes its own user channel like any joined channel.
  const toBob = (n) => `bob-${n}-${tag}`;
  const bobGot = async (n) => (await seen()).messages.filter((m) => m.message === toBob(n));
  await publish(base, { user: 'bob', message: toBob(1) });
  await waitFor(async () => (await bobGot(1)).length === 1, STEP_MS, 'the first message to bob');
  await page.evaluate(() => window.tokenClient.close());
  const missed = await publish(base, { user: 'bob', message: toBob(2) });
  assert(missed.recipients === 0, `bob was still connected: ${JSON.stringify(missed)}`);
  await page.evaluate(() => window.tokenClient.reconnect());
  await waitFor(async () => (await bobGot(2)).length === 1, STEP_MS, 'the message sent to bob while away');
  await publish(base, { user: 'bob', message: toBob(3) });
  await waitFor(async () => (await bobGot(3)).length === 1, STEP_MS, 'a message to bob after the resume');
  const after = await seen();
  assert(after.subscribed.includes('user:bob'), `no resume of user:bob: ${after.subscribed}`);
  const offsets = after.messages.filter((m) => m.channel === 'user:bob').map((m) => m.offset);
  assert(JSON.stringify(offsets) === '[1,2,3]', `user:bob offsets ${JSON.stringify(offsets)}`);
  await page.evaluate(() => window.tokenClient.close());
  log('the message to bob sent while it reconnected was recovered, once, in order');
  await page.close();
}

async function main() {
  const context = await launchBrowser();
  const pageErrors = [];
  const parts = { channels: joinLeaveAndChat, resume: resumeAcrossHandover, tokens };
  const chosen = (process.env.CHANNELS_TEST_PARTS || Object.keys(parts).join(',')).split(',');
  for (const name of chosen) {
    assert(parts[name], `no part ${name} (parts: ${Object.keys(parts).join(', ')})`);
    await parts[name](context, pageErrors);
  }
  assert(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
  await context.close();
}

runTest('channels and tokens', OVERALL_MS, main,
  () => Object.entries(servers).map(([name, s]) => [`server ${name}`, s.lines]));
