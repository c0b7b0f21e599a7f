// Unit tests of the resuming client module (src/web/client.js, served as
// GET /client.js) against a scripted fake WebSocket: the resume URL, the
// dropping of already-seen offsets, gap detection, a new epoch, the
// reconnect hint, the jittered backoff and close(); channels (joined at
// the welcome, their own offsets, resumed after a reconnect, left) and the
// token function called before every connect. The client's timers
// run on node:test's mocked clock, advanced by hand: each delay is checked to the millisecond
// and nothing waits for real time.
//
//   node --test tests/browser/client_module.test.mjs   (run by scripts/browser-test.sh)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = readFileSync(join(ROOT, 'src', 'web', 'client.js'));
// The module is served without a package.json around it: load it as text.
const { connect, resumeUrl, tokenUrl, backoffDelay, describeGap, describeReconnect } = await import(
  'data:text/javascript;base64,' + source.toString('base64')
);

/** Records every socket the client opens; the test plays the server. */
function fakeServer() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 1;
      this.sent = [];
      this.closedByClient = null;
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code) { this.readyState = 3; this.closedByClient = code; }
    deliver(m) { this.onmessage({ data: typeof m === 'string' ? m : JSON.stringify(m) }); }
    drop(code = 1006) { this.readyState = 3; this.onclose({ code, reason: '' }); }
  }
  return { sockets, FakeSocket, last: () => sockets[sockets.length - 1] };
}

/** A client on a fake server, with everything it reports recorded. */
function start(extra = {}) {
  const server = fakeServer();
  // `after`: why each welcomed connection replaced the one before.
  const seen = { messages: [], welcomes: [], recovered: [], gaps: [], states: [], after: [] };
  const client = connect('ws://example.test/ws?token=t', {
    WebSocket: server.FakeSocket,
    random: () => 0,
    baseDelayMs: 10,
    maxDelayMs: 40,
    onMessage: (m) => seen.messages.push(m),
    onWelcome: (m) => seen.welcomes.push(m),
    onRecovered: (n) => seen.recovered.push(n),
    onGap: (reason, detail) => seen.gaps.push({ reason, ...detail }),
    onState: (s, detail) => {
      seen.states.push(s);
      if (s === 'connected') seen.after.push(detail.after);
    },
    ...extra,
  });
  return { client, server, seen };
}

const offsets = (seen) => seen.messages.filter((m) => m.offset !== undefined).map((m) => m.offset);

test('resumeUrl sets since and epoch only with a known position, keeping other parameters', () => {
  assert.equal(resumeUrl('ws://h/ws?a=1', null, null), 'ws://h/ws?a=1');
  assert.equal(resumeUrl('ws://h/ws?a=1', 'e1', 7), 'ws://h/ws?a=1&since=7&epoch=e1');
  assert.equal(resumeUrl('ws://h/ws?since=1&epoch=x', 'e 2', 0), 'ws://h/ws?since=0&epoch=e+2');
  assert.equal(resumeUrl('ws://h/ws', '', 3), 'ws://h/ws');
});

test('backoff is jittered between half and all of a doubling step, capped', () => {
  assert.equal(backoffDelay(0, () => 0), 500);
  assert.equal(backoffDelay(0, () => 1), 1000);
  assert.equal(backoffDelay(3, () => 0.5), 6000);
  assert.equal(backoffDelay(20, () => 1), 30000);
  assert.equal(backoffDelay(1000, () => 0), 15000);
});

test('drops seen offsets, reports jumps, passes messages without offsets', () => {
  const { client, server, seen } = start();
  const ws = server.last();
  assert.equal(ws.url, 'ws://example.test/ws?token=t');
  ws.deliver({ type: 'welcome', client_id: 'c1', epoch: 'e1', offset: 5 });
  assert.equal(client.state, 'connected');
  assert.equal(client.clientId, 'c1');
  assert.equal(client.offset, 5);
  assert.deepEqual(seen.recovered, []);
  assert.deepEqual(seen.gaps, []);
  ws.deliver({ type: 'chat', offset: 5, message: 'old' });
  ws.deliver({ type: 'notification', offset: 6 });
  ws.deliver({ type: 'notification', offset: 7 });
  ws.deliver({ type: 'notification', offset: 7 });
  ws.deliver({ type: 'direct', message: 'personal' });
  ws.deliver({ type: 'notification', offset: 9 });
  assert.deepEqual(offsets(seen), [6, 7, 9]);
  assert.equal(seen.messages.length, 4);
  assert.equal(client.dropped, 2);
  assert.deepEqual(seen.gaps, [{ reason: 'jump', expected: 8, got: 9 }]);
  assert.deepEqual(seen.after, [null], 'the first connection replaced none');
  client.close();
});

test('after a drop it backs off, resumes with since/epoch and reports the recovery', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server, seen } = start();
  const first = server.last();
  first.deliver({ type: 'welcome', client_id: 'c1', epoch: 'e1', offset: 9 });
  first.drop();
  assert.equal(client.state, 'waiting');
  // Half of the 10 ms base step (random() is 0).
  t.mock.timers.tick(4);
  assert.equal(server.sockets.length, 1, 'not before the first delay');
  t.mock.timers.tick(1);
  assert.equal(server.sockets.length, 2);
  // A failed attempt (no welcome) doubles the delay.
  server.last().drop();
  t.mock.timers.tick(9);
  assert.equal(server.sockets.length, 2, 'the second delay is twice the first');
  t.mock.timers.tick(1);
  const resumed = server.last();
  assert.equal(server.sockets.length, 3);
  assert.equal(resumed.url, 'ws://example.test/ws?token=t&since=9&epoch=e1');
  resumed.deliver({ type: 'welcome', client_id: 'c2', epoch: 'e1', offset: 11, recovered: true, replayed: 2 });
  resumed.deliver({ type: 'chat', offset: 10 });
  resumed.deliver({ type: 'chat', offset: 11 });
  resumed.deliver({ type: 'chat', offset: 11 });
  resumed.deliver({ type: 'chat', offset: 12 });
  assert.deepEqual(seen.recovered, [2]);
  assert.deepEqual(seen.after, [null, 'drop'], 'a failed attempt between keeps the reason');
  assert.deepEqual(offsets(seen), [10, 11, 12]);
  assert.deepEqual(seen.gaps, []);
  assert.equal(client.clientId, 'c2');
  client.close();
});

test('a recovery from a server lagging behind keeps our offset', () => {
  const { client, server, seen } = start();
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 20 });
  client.reconnect();
  const ws = server.last();
  assert.equal(ws.url, 'ws://example.test/ws?token=t&since=20&epoch=e1');
  ws.deliver({ type: 'welcome', epoch: 'e1', offset: 18, recovered: true, replayed: 0 });
  assert.equal(client.offset, 20);
  ws.deliver({ type: 'chat', offset: 19 });
  ws.deliver({ type: 'chat', offset: 21 });
  assert.deepEqual(offsets(seen), [21]);
  client.close();
});

test('a shutdown notice moves the client after the hint, ignoring the old socket', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server, seen } = start();
  const old = server.last();
  old.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  old.deliver({ type: 'shutdown_notice', reconnect_after_ms: 25, drain_timeout_s: 5 });
  assert.equal(client.state, 'connected', 'the old connection works until the hint');
  old.deliver({ type: 'chat', offset: 1 });
  t.mock.timers.tick(24);
  assert.equal(server.sockets.length, 1, 'not before the hint');
  assert.equal(old.closedByClient, null);
  t.mock.timers.tick(1);
  assert.equal(old.closedByClient, 1000);
  const next = server.last();
  assert.equal(server.sockets.length, 2);
  assert.equal(next.url, 'ws://example.test/ws?token=t&since=1&epoch=e1');
  old.deliver({ type: 'chat', offset: 2 });
  next.deliver({ type: 'welcome', epoch: 'e1', offset: 2, recovered: true, replayed: 1 });
  next.deliver({ type: 'chat', offset: 2 });
  assert.deepEqual(offsets(seen), [1, 2]);
  assert.equal(seen.messages.filter((m) => m.type === 'shutdown_notice').length, 1);
  assert.deepEqual(seen.after, [null, 'shutdown']);
  client.close();
});

test('a server close before the hint keeps the hint as the delay', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server } = start({ baseDelayMs: 1 });
  const old = server.last();
  old.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  old.deliver({ type: 'shutdown_notice', reconnect_after_ms: 40 });
  old.drop(1001);
  assert.equal(client.state, 'waiting');
  t.mock.timers.tick(39);
  assert.equal(server.sockets.length, 1, 'not before the hint');
  t.mock.timers.tick(1);
  assert.equal(server.sockets.length, 2);
  client.close();
});

test('a gap from the server restarts the position at its offset', () => {
  const { client, server, seen } = start();
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 40 });
  client.reconnect();
  const ws = server.last();
  ws.deliver({ type: 'welcome', epoch: 'e2', offset: 3, recovered: false, reason: 'unknown_epoch' });
  assert.deepEqual(seen.gaps, [{ reason: 'unknown_epoch', welcome: seen.welcomes[1], after: null }]);
  assert.equal(client.epoch, 'e2');
  ws.deliver({ type: 'chat', offset: 4 });
  assert.deepEqual(offsets(seen), [4]);
  client.close();
});

test('a new epoch restarts the numbering: nothing of it is dropped, the gap is reported', () => {
  const { client, server, seen } = start();
  const ws = server.last();
  ws.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  for (let n = 1; n <= 100; n++) ws.deliver({ type: 'notification', offset: n });
  // Redis restarted empty: the server says so before offset 1 of e2.
  ws.deliver({ type: 'epoch', epoch: 'e2', offset: 0 });
  for (let n = 1; n <= 100; n++) ws.deliver({ type: 'notification', offset: n });
  assert.equal(seen.messages.length, 200, 'the epoch message is not a message');
  assert.equal(client.dropped, 0);
  assert.deepEqual(seen.gaps, [{ reason: 'epoch', epoch: 'e2', offset: 0 }]);
  assert.equal(client.epoch, 'e2');
  assert.equal(client.offset, 100);
  client.reconnect();
  assert.equal(server.last().url, 'ws://example.test/ws?token=t&since=100&epoch=e2');
  client.close();
});

test('an epoch message for the epoch it has only lowers the offset, silently', () => {
  const { client, server, seen } = start();
  const ws = server.last();
  // Welcomed in e2 where the server stood at 7; its worker then delivers
  // e2 from 6, which it had not handed out yet.
  ws.deliver({ type: 'welcome', epoch: 'e2', offset: 7 });
  ws.deliver({ type: 'epoch', epoch: 'e2', offset: 5 });
  ws.deliver({ type: 'notification', offset: 6 });
  ws.deliver({ type: 'epoch', epoch: 'e2', offset: 9 });
  ws.deliver({ type: 'notification', offset: 7 });
  assert.deepEqual(offsets(seen), [6, 7]);
  assert.deepEqual(seen.gaps, []);
  client.close();
});

test('close() stops reconnecting; a new URL forgets the position', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server } = start();
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 3 });
  server.last().drop();
  client.close();
  assert.equal(client.state, 'disconnected');
  // Past the longest delay there is (the 40 ms cap).
  t.mock.timers.tick(40);
  assert.equal(server.sockets.length, 1);
  assert.equal(client.send({ type: 'ping' }), false);
  client.reconnect('ws://other.test/ws');
  assert.equal(server.last().url, 'ws://other.test/ws');
  assert.equal(client.send({ type: 'ping' }), true);
  assert.deepEqual(server.last().sent, [{ type: 'ping' }]);
  client.close();
});

test('a server close before the hint, and failed attempts after it, still say the server shut down', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const states = [];
  const { client, server, seen } = start({
    baseDelayMs: 1,
    onState: (s, detail) => {
      states.push([s, detail && detail.after]);
      if (s === 'connected') seen.after.push(detail.after);
    },
  });
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  server.last().deliver({ type: 'shutdown_notice', reconnect_after_ms: 5 });
  server.last().drop(1001);
  assert.deepEqual(states.at(-1), ['waiting', 'shutdown']);
  t.mock.timers.tick(5);
  assert.deepEqual(states.at(-1), ['connecting', 'shutdown']);
  server.last().drop(1006);
  t.mock.timers.tick(1);
  assert.deepEqual(states.at(-1), ['connecting', 'shutdown'], 'a failed attempt changes nothing');
  server.last().deliver({ type: 'welcome', epoch: 'e2', offset: 0, recovered: false, reason: 'unknown_epoch' });
  assert.deepEqual(seen.after, [null, 'shutdown']);
  assert.equal(seen.gaps[0].after, 'shutdown');
  client.reconnect();
  server.last().deliver({ type: 'welcome', epoch: 'e2', offset: 0, recovered: true, replayed: 0 });
  assert.deepEqual(seen.after, [null, 'shutdown', null], 'reconnect() is nobody\'s fault');
  client.close();
});

test('reconnects and gaps in plain words', () => {
  assert.equal(describeReconnect('shutdown'), 'the server shut down or was upgraded');
  assert.equal(describeReconnect('drop'), 'the connection dropped');
  assert.equal(describeReconnect(null), '');
  const unknown = describeGap('unknown_epoch');
  assert.match(unknown, /restarted without a hand-over or Redis/);
  assert.doesNotMatch(unknown, /lost its history/);
  assert.match(describeGap('too_old'), /no longer holds them/);
  assert.equal(describeGap('jump', { expected: 8, got: 9 }), 'offsets jumped from 7 to 9');
  assert.match(describeGap('epoch', { epoch: 'e2', offset: 0 }), /numbering the stream again/);
});

test('tokenUrl sets ?token= only for a non-empty string', () => {
  assert.equal(tokenUrl('ws://h/ws?since=1&epoch=e', 'a.b.c'), 'ws://h/ws?since=1&epoch=e&token=a.b.c');
  assert.equal(tokenUrl('ws://h/ws?token=old', 'new'), 'ws://h/ws?token=new');
  assert.equal(tokenUrl('ws://h/ws', ''), 'ws://h/ws');
  assert.equal(tokenUrl('ws://h/ws', null), 'ws://h/ws');
});

/** A client on a fake server whose channel messages are recorded per channel. */
function startWithChannels(extra = {}) {
  const got = {};
  const subscribedSeen = [];
  const run = start({
    onSubscribed: (channel, m, detail) => subscribedSeen.push({ channel, offset: m.offset, after: detail.after }),
    ...extra,
  });
  const handler = (name) => (m) => { (got[name] ||= []).push(m); };
  return { ...run, got, handler, subscribedSeen };
}

const channelOffsets = (got, name) => (got[name] || []).map((m) => m.offset);

test('a channel is joined at the welcome, or at once when connected; its offsets are its own', () => {
  const { client, server, seen, got, handler, subscribedSeen } = startWithChannels();
  client.subscribe('news', handler('news'));
  const ws = server.last();
  assert.deepEqual(ws.sent, [], 'nothing is sent before the welcome');
  ws.deliver({ type: 'welcome', client_id: 'c1', epoch: 'e1', offset: 50, user: 'alice' });
  assert.equal(client.user, 'alice');
  assert.deepEqual(ws.sent, [{ type: 'subscribe', channel: 'news' }]);
  client.subscribe('sport', handler('sport'));
  client.subscribe('sport', handler('sport'));
  assert.deepEqual(ws.sent.slice(1), [{ type: 'subscribe', channel: 'sport' }], 'joined once');
  ws.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 3 });
  ws.deliver({ type: 'subscribed', channel: 'sport', epoch: 'e1', offset: 0 });
  assert.deepEqual(subscribedSeen, [
    { channel: 'news', offset: 3, after: null },
    { channel: 'sport', offset: 0, after: null },
  ]);
  ws.deliver({ type: 'notification', channel: 'news', offset: 3 });
  ws.deliver({ type: 'notification', channel: 'news', offset: 4 });
  ws.deliver({ type: 'chat', channel: 'sport', offset: 1, message: 'goal' });
  ws.deliver({ type: 'notification', offset: 51 });
  ws.deliver({ type: 'chat', channel: 'news', offset: 4 });
  ws.deliver({ type: 'chat', channel: 'news', offset: 6 });
  // A message of the user's own channel, never subscribed to by message.
  ws.deliver({ type: 'notification', channel: 'user:alice', offset: 1, scope: 'user' });
  assert.deepEqual(channelOffsets(got, 'news'), [4, 6]);
  assert.deepEqual(channelOffsets(got, 'sport'), [1]);
  assert.deepEqual(seen.messages.map((m) => [m.channel, m.offset]), [[undefined, 51], ['user:alice', 1]],
    'the client\'s onMessage gets everyone\'s and channels without a callback');
  assert.equal(client.offset, 51, 'channel offsets leave everyone\'s alone');
  assert.equal(client.channelOffset('news'), 6);
  assert.equal(client.dropped, 2);
  assert.deepEqual(seen.gaps, [{ reason: 'jump', expected: 5, got: 6, channel: 'news' }]);
  assert.deepEqual(client.channels, ['news', 'sport']);
  client.close();
});

test('after a reconnect every joined channel resumes from its last offset, duplicates dropped', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server, seen, got, handler, subscribedSeen } = startWithChannels();
  client.subscribe('news', handler('news'));
  client.subscribe('old', handler('old'));
  const first = server.last();
  first.deliver({ type: 'welcome', client_id: 'c1', epoch: 'e1', offset: 0 });
  first.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 7 });
  first.deliver({ type: 'subscribed', channel: 'old', epoch: 'e1', offset: 2 });
  first.deliver({ type: 'notification', channel: 'news', offset: 8 });
  first.deliver({ type: 'shutdown_notice', reconnect_after_ms: 5 });
  t.mock.timers.tick(5);
  const next = server.last();
  assert.equal(server.sockets.length, 2);
  next.deliver({ type: 'welcome', client_id: 'c2', epoch: 'e1', offset: 0, recovered: true, replayed: 0 });
  assert.deepEqual(next.sent, [
    { type: 'subscribe', channel: 'news', since: 8, epoch: 'e1' },
    { type: 'subscribe', channel: 'old', since: 2, epoch: 'e1' },
  ]);
  next.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 10, recovered: true, replayed: 2 });
  next.deliver({ type: 'notification', channel: 'news', offset: 8 });
  next.deliver({ type: 'notification', channel: 'news', offset: 9 });
  next.deliver({ type: 'notification', channel: 'news', offset: 10 });
  next.deliver({ type: 'subscribed', channel: 'old', epoch: 'e1', offset: 40, recovered: false, reason: 'too_old' });
  next.deliver({ type: 'notification', channel: 'old', offset: 41 });
  assert.deepEqual(channelOffsets(got, 'news'), [8, 9, 10]);
  assert.deepEqual(channelOffsets(got, 'old'), [41]);
  assert.deepEqual(seen.recovered, [0, 2], 'everyone\'s recovery, then the channel\'s');
  assert.equal(seen.gaps.length, 1);
  assert.equal(seen.gaps[0].reason, 'too_old');
  assert.equal(seen.gaps[0].channel, 'old');
  assert.equal(seen.gaps[0].after, 'shutdown');
  assert.deepEqual(subscribedSeen.map((s) => s.after), [null, null, 'shutdown', 'shutdown']);
  client.close();
});

test('the user\'s own channel is resumed after a reconnect, never subscribed at the first connect', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, server, seen, subscribedSeen } = startWithChannels();
  const first = server.last();
  first.deliver({ type: 'welcome', client_id: 'c1', epoch: 'e1', offset: 0, user: 'ann' });
  assert.deepEqual(first.sent, [], 'the server joined it at connect');
  first.deliver({ type: 'notification', channel: 'user:ann', offset: 1, scope: 'user' });
  assert.equal(client.channelOffset('user:ann'), 1);
  assert.deepEqual(client.channels, [], 'not a channel the page joined');
  first.drop();
  t.mock.timers.tick(40);
  const next = server.last();
  next.deliver({ type: 'welcome', client_id: 'c2', epoch: 'e1', offset: 0, user: 'ann' });
  assert.deepEqual(next.sent, [{ type: 'subscribe', channel: 'user:ann', since: 1, epoch: 'e1' }]);
  next.deliver({ type: 'subscribed', channel: 'user:ann', epoch: 'e1', offset: 2, recovered: true, replayed: 1 });
  next.deliver({ type: 'notification', channel: 'user:ann', offset: 2, scope: 'user' });
  next.deliver({ type: 'notification', channel: 'user:ann', offset: 2, scope: 'user' });
  assert.deepEqual(seen.messages.map((m) => m.offset), [1, 2], 'what was sent meanwhile, once');
  assert.deepEqual(subscribedSeen.map((s) => [s.channel, s.after]), [['user:ann', 'drop']]);
  // unsubscribe() cannot leave it: it stays joined while connected.
  client.unsubscribe('user:ann');
  assert.equal(next.sent.length, 1);
  // Another user on the next connection: the old user's channel is forgotten.
  next.drop();
  t.mock.timers.tick(40);
  server.last().deliver({ type: 'welcome', client_id: 'c3', epoch: 'e1', offset: 0, user: 'bob' });
  assert.deepEqual(server.last().sent, []);
  assert.equal(client.channelOffset('user:ann'), null);
  client.close();
});

test('unsubscribe: nothing of the channel after it, not joined again after a reconnect', () => {
  const { client, server, seen, got, handler } = startWithChannels();
  client.subscribe('news', handler('news'));
  client.subscribe('keep', handler('keep'));
  const ws = server.last();
  ws.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  ws.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 0 });
  ws.deliver({ type: 'subscribed', channel: 'keep', epoch: 'e1', offset: 0 });
  ws.deliver({ type: 'notification', channel: 'news', offset: 1 });
  client.unsubscribe('news');
  client.unsubscribe('never-joined');
  assert.deepEqual(ws.sent.at(-1), { type: 'unsubscribe', channel: 'news' });
  assert.equal(ws.sent.length, 3);
  // Sent by the server before it read our unsubscribe.
  ws.deliver({ type: 'notification', channel: 'news', offset: 2 });
  ws.deliver({ type: 'unsubscribed', channel: 'news' });
  assert.deepEqual(channelOffsets(got, 'news'), [1]);
  assert.deepEqual(seen.messages.map((m) => m.type), ['unsubscribed']);
  assert.deepEqual(client.channels, ['keep']);
  client.reconnect();
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 0, recovered: true, replayed: 0 });
  assert.deepEqual(server.last().sent, [{ type: 'subscribe', channel: 'keep', since: 0, epoch: 'e1' }]);
  client.close();
});

test('a refused subscribe is forgotten; an error about a joined channel is not', () => {
  const { client, server, seen, handler } = startWithChannels();
  const ws = server.last();
  ws.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  client.subscribe('private:boss', handler('private:boss'));
  client.subscribe('news', handler('news'));
  ws.deliver({ type: 'error', channel: 'private:boss', error: 'not allowed' });
  ws.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 0 });
  ws.deliver({ type: 'error', channel: 'news', error: 'message too long' });
  assert.deepEqual(client.channels, ['news']);
  assert.deepEqual(seen.messages.map((m) => m.channel), ['private:boss', 'news']);
  client.close();
});

test('a new epoch restarts every channel\'s numbering too', () => {
  const { client, server, got, handler } = startWithChannels();
  client.subscribe('news', handler('news'));
  const ws = server.last();
  ws.deliver({ type: 'welcome', epoch: 'e1', offset: 0 });
  ws.deliver({ type: 'subscribed', channel: 'news', epoch: 'e1', offset: 30 });
  ws.deliver({ type: 'epoch', epoch: 'e2', offset: 0 });
  ws.deliver({ type: 'notification', channel: 'news', offset: 1 });
  assert.deepEqual(channelOffsets(got, 'news'), [1]);
  client.reconnect();
  server.last().deliver({ type: 'welcome', epoch: 'e2', offset: 0, recovered: true, replayed: 0 });
  assert.deepEqual(server.last().sent, [{ type: 'subscribe', channel: 'news', since: 1, epoch: 'e2' }]);
  client.close();
});

test('the token function is called before every connect; an async one is awaited', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let calls = 0;
  const { client, server } = start({ token: () => { calls++; return `tok${calls}`; } });
  assert.equal(server.last().url, 'ws://example.test/ws?token=tok1');
  server.last().deliver({ type: 'welcome', epoch: 'e1', offset: 4 });
  server.last().drop();
  t.mock.timers.tick(5);
  assert.equal(server.last().url, 'ws://example.test/ws?token=tok2&since=4&epoch=e1');
  client.close();

  let resolveToken;
  const pending = start({ token: () => new Promise((r) => { resolveToken = r; }) });
  assert.equal(pending.server.sockets.length, 0, 'no connection before the token');
  assert.equal(pending.client.state, 'connecting');
  resolveToken('fresh');
  await Promise.resolve();
  assert.equal(pending.server.last().url, 'ws://example.test/ws?token=fresh');
  // A token that comes after close() opens nothing.
  pending.client.reconnect();
  pending.client.close();
  resolveToken('late');
  await Promise.resolve();
  assert.equal(pending.server.sockets.length, 1);
});

test('a failing token function is reported and tried again after the backoff', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const errors = [];
  let calls = 0;
  const { client, server } = start({
    onError: (e) => errors.push(e.error),
    token: async () => {
      calls++;
      if (calls === 1) throw new Error('token service down');
      return 'ok';
    },
  });
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(errors, ['the token function failed']);
  assert.equal(client.state, 'waiting');
  assert.equal(server.sockets.length, 0);
  t.mock.timers.tick(5);
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(calls, 2);
  assert.equal(server.last().url, 'ws://example.test/ws?token=ok');
  client.close();
});
