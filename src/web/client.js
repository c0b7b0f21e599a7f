// wsnotify client: connect to /ws, reconnect after a drain or a drop, and
// resume where the last connection stopped, so that no broadcast and no
// message of a joined channel is lost or shown twice. One ES module, no
// dependencies: copy it next to your page.
//
//   import { connect } from './client.js';
//   const client = connect('wss://example.com/ws', {
//     token: async () => (await fetch('/my-token')).text(),  // optional: before every connect
//     onMessage(m) { ... },            // every message, welcome excluded, duplicates dropped
//     onWelcome(m) { ... },            // each new connection's welcome (m.user when a token named one)
//     onSubscribed(channel, m, detail) { },      // each `subscribed` answer
//     onRecovered(count, welcome, detail) { },  // a resume replayed `count` missed messages
//     onGap(reason, detail) { ... },    // messages were missed: refetch your state
//     onState(state, detail) { ... },   // 'connecting' | 'connected' | 'waiting' | 'disconnected'
//   });
//   client.subscribe('news', (m) => { ... });   // every message of the channel
//   client.send({ type: 'chat', channel: 'news', message: 'hi' });
//   client.unsubscribe('news');
//   client.close();
//
// Reasons given to onGap: 'too_old' and 'unknown_epoch' (from the server's
// welcome, or its `subscribed` answer for a channel: then detail.channel),
// 'jump' (an offset skipped ahead on a live connection; detail.expected
// and detail.got, and detail.channel for a channel) and 'epoch' (the
// server's numbering restarted under a new epoch: detail.epoch and
// detail.offset). Why a connection replaced the one before, in the details
// of 'connecting', 'connected', onSubscribed, onRecovered and onGap:
// detail.after is 'shutdown' (the server said it was shutting down or
// being upgraded), 'drop' (the connection ended without a word), or null
// (the first connection, or reconnect()). describeReconnect() and
// describeGap() put both in plain words. See docs/client.md.

const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

/** The resume URL: `url` with since/epoch set when a position is known. */
export function resumeUrl(url, epoch, offset) {
  const u = new URL(url);
  u.searchParams.delete('since');
  u.searchParams.delete('epoch');
  if (typeof epoch === 'string' && epoch !== '' && Number.isSafeInteger(offset) && offset >= 0) {
    u.searchParams.set('since', String(offset));
    u.searchParams.set('epoch', epoch);
  }
  return u.toString();
}

/** `url` with `?token=` set to `token`, or as it is when there is none. */
export function tokenUrl(url, token) {
  if (typeof token !== 'string' || token === '') return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/** Why a connection replaced the one before, in plain words ('' for none). */
export function describeReconnect(after) {
  if (after === 'shutdown') return 'the server shut down or was upgraded';
  if (after === 'drop') return 'the connection dropped';
  return '';
}

/** What an onGap reason means, in plain words. */
export function describeGap(reason, detail = {}) {
  switch (reason) {
    case 'too_old':
      return 'the server no longer holds them (they are older than its history)';
    case 'unknown_epoch':
      // A one-host upgrade (--handover, socket activation) and Redis carry
      // the stream across; a server that knows nothing of it was started
      // afresh without either.
      return 'the server does not know the stream this page followed: it was restarted without a hand-over or Redis';
    case 'jump':
      return 'offsets jumped from ' + (detail.expected - 1) + ' to ' + detail.got;
    case 'epoch':
      // Redis, which numbers the stream for every server, lost it.
      return 'the servers started numbering the stream again (their Redis lost it)';
    default:
      return String(reason);
  }
}

/** Jittered exponential backoff: 50-100 % of base * 2^attempt, capped. */
export function backoffDelay(attempt, random = Math.random, base = BASE_DELAY_MS, cap = MAX_DELAY_MS) {
  const step = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + (step / 2) * random());
}

export function connect(url, options = {}) {
  const on = (name, ...args) => {
    const f = options[name];
    if (typeof f === 'function') f(...args);
  };
  const Socket = options.WebSocket || globalThis.WebSocket;
  const random = options.random || Math.random;
  const base = options.baseDelayMs ?? BASE_DELAY_MS;
  const cap = options.maxDelayMs ?? MAX_DELAY_MS;

  let target = url;
  let ws = null;
  let timer = null;
  let attempt = 0;
  let epoch = null;
  let offset = null;
  let clientId = null;
  let user = null;
  let state = 'disconnected';
  let dropped = 0;
  // Why the next connection replaces the last one that was welcomed
  // (see describeReconnect); kept through failed attempts.
  let after = null;
  // Why the current connection replaced the one before, for the answers
  // to the subscriptions it resumes.
  let why = { after: null };
  // The current connection was welcomed, and got a shutdown notice.
  let welcomed = false;
  let noticed = false;
  // Counts the attempts to connect, so that a token that arrives after
  // close() or a newer attempt opens nothing.
  let generation = 0;
  // The joined channels, in the order they were joined: name ->
  // { onMessage, offset, epoch, pending, own, asked }. `offset` is the
  // last one seen of the channel (its own numbering), `epoch` the one it
  // counts in, `pending` whether this connection's `subscribed` answer is
  // still due, `own` whether it is the user's own channel, which the
  // server joins at connect (so it is subscribed only to resume it), and
  // `asked` whether the page subscribed to it.
  const channels = new Map();
  // Channels left on this connection whose `unsubscribed` has not come:
  // what the server sent before it is not for us any more.
  const leaving = new Set();

  function ended() {
    if (welcomed) after = noticed ? 'shutdown' : 'drop';
    welcomed = false;
    noticed = false;
  }

  function setState(next, detail) {
    state = next;
    on('onState', next, detail);
  }

  function clearTimer() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  // Connects again after `delay` ms; `quiet` keeps the state (the current
  // connection still works until then).
  function schedule(delay, quiet) {
    clearTimer();
    if (!quiet) setState('waiting', { delayMs: delay, at: Date.now() + delay, after });
    timer = setTimeout(() => {
      timer = null;
      open();
    }, delay);
  }

  function detach() {
    const sock = ws;
    ws = null;
    clientId = null;
    leaving.clear();
    if (sock) {
      try {
        sock.close(1000);
      } catch {
        // Already closing.
      }
    }
  }

  function open() {
    clearTimer();
    ended();
    detach();
    const current = ++generation;
    setState('connecting', { after });
    if (typeof options.token !== 'function') {
      dial(options.token);
      return;
    }
    // A fresh token for every connection; a synchronous one dials at once.
    let token;
    try {
      token = options.token();
    } catch (error) {
      tokenFailed(error);
      return;
    }
    if (!token || typeof token.then !== 'function') {
      dial(token);
      return;
    }
    token.then(
      (t) => { if (current === generation) dial(t); },
      (error) => { if (current === generation) tokenFailed(error); },
    );
  }

  function tokenFailed(error) {
    on('onError', { error: 'the token function failed', data: error });
    schedule(backoffDelay(attempt++, random, base, cap));
  }

  function dial(token) {
    let sock;
    try {
      sock = new Socket(tokenUrl(resumeUrl(target, epoch, offset), token));
    } catch (e) {
      setState('disconnected', { error: e });
      return;
    }
    ws = sock;
    sock.onmessage = (ev) => {
      if (ws === sock) receive(ev.data);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ended();
      ws = null;
      clientId = null;
      leaving.clear();
      on('onClose', { code: ev.code, reason: ev.reason });
      if (timer !== null) {
        // A shutdown notice already set when to come back.
        setState('waiting', { delayMs: null, after });
        return;
      }
      schedule(backoffDelay(attempt++, random, base, cap));
    };
  }

  function sendNow(obj) {
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  // Joins `name` on this connection, resuming after the last offset seen
  // when there is one (and the epoch it counts in).
  function sendSubscribe(name, ch) {
    const m = { type: 'subscribe', channel: name };
    const e = ch.epoch ?? epoch;
    if (ch.offset !== null && typeof e === 'string' && e !== '') {
      m.since = ch.offset;
      m.epoch = e;
    }
    ch.pending = sendNow(m);
  }

  // The user's own channel (`user:ID`, the welcome's user) is joined by
  // the server at every connect; it is followed like a joined channel, so
  // after a reconnect what was sent to the user meanwhile is resumed.
  function followOwnChannel(m) {
    const name = user === null ? null : `user:${user}`;
    for (const [other, ch] of channels) {
      if (ch.own && other !== name) channels.delete(other);
    }
    if (name === null) return;
    const ch = channels.get(name);
    if (ch) ch.own = true;
    else channels.set(name, { onMessage: undefined, offset: null, epoch: m.epoch ?? null, pending: false, own: true, asked: false });
  }

  function welcome(m) {
    clientId = m.client_id ?? null;
    user = typeof m.user === 'string' ? m.user : null;
    followOwnChannel(m);
    attempt = 0;
    why = { after };
    after = null;
    welcomed = true;
    noticed = false;
    const current = Number.isSafeInteger(m.offset) ? m.offset : null;
    // After a recovery the replayed broadcasts follow and move our offset
    // on (a server lagging behind Redis may report less than ours, and
    // resends nothing up to ours). Otherwise we start at the server's.
    if (m.recovered !== true || offset === null) offset = current;
    epoch = typeof m.epoch === 'string' && m.epoch !== '' ? m.epoch : null;
    setState('connected', { clientId, ...why });
    on('onWelcome', m);
    if (m.recovered === true) on('onRecovered', Number(m.replayed) || 0, m, why);
    else if (m.recovered === false) on('onGap', String(m.reason || 'unknown'), { welcome: m, ...why });
    // Every channel joined before comes back, each from where it stopped;
    // the user's own is joined already, and resumed once it had a message.
    for (const [name, ch] of channels) {
      if (!ch.own || ch.offset !== null) sendSubscribe(name, ch);
    }
  }

  // The answer to a subscribe: where the channel stands, and whether what
  // was missed since our last offset of it follows.
  function subscribed(m, ch) {
    ch.pending = false;
    const current = Number.isSafeInteger(m.offset) ? m.offset : null;
    if (m.recovered !== true || ch.offset === null) ch.offset = current;
    if (typeof m.epoch === 'string' && m.epoch !== '') ch.epoch = m.epoch;
    const detail = { channel: m.channel, ...why };
    on('onSubscribed', m.channel, m, detail);
    if (m.recovered === true) on('onRecovered', Number(m.replayed) || 0, m, detail);
    else if (m.recovered === false) on('onGap', String(m.reason || 'unknown'), { subscribed: m, ...detail });
  }

  // The server's numbering restarted (its Redis lost it): offsets count
  // again from m.offset in m.epoch, so nothing of the new numbering looks
  // already seen. What the old numbering had not delivered yet is lost: a
  // gap. The same epoch again (a connection welcomed in it, whose worker
  // starts it further back) only lowers the offset. Channels number anew
  // in the new epoch too: the first message of each sets where it stands.
  function adoptEpoch(m) {
    if (typeof m.epoch !== 'string' || m.epoch === '' || !Number.isSafeInteger(m.offset)) {
      on('onError', { error: 'unexpected epoch message', data: m });
      return;
    }
    if (m.epoch === epoch && offset !== null) {
      offset = Math.min(offset, m.offset);
      return;
    }
    epoch = m.epoch;
    offset = m.offset;
    for (const ch of channels.values()) {
      ch.epoch = m.epoch;
      ch.offset = null;
    }
    on('onGap', 'epoch', { epoch: m.epoch, offset: m.offset });
  }

  // Whether a numbered message is new after `last`; reports a jump.
  function fresh(last, m, channel) {
    if (last !== null && m.offset <= last) {
      dropped++;
      return false;
    }
    if (last !== null && m.offset > last + 1) {
      const detail = { expected: last + 1, got: m.offset };
      on('onGap', 'jump', channel === undefined ? detail : { ...detail, channel });
    }
    return true;
  }

  // A message that names a channel: an answer about it, or one of its
  // messages, numbered in the channel's own sequence.
  function channelMessage(m) {
    const name = m.channel;
    const ch = channels.get(name);
    if (m.type === 'subscribed') {
      if (ch) subscribed(m, ch);
      return;
    }
    if (m.type === 'unsubscribed') {
      leaving.delete(name);
      on('onMessage', m);
      return;
    }
    if (m.type === 'error') {
      // The first answer to a subscribe we sent: it was refused.
      if (ch && ch.pending) channels.delete(name);
      on('onMessage', m);
      return;
    }
    if (leaving.has(name)) return;
    if (ch && Number.isSafeInteger(m.offset)) {
      if (!fresh(ch.offset, m, name)) return;
      ch.offset = m.offset;
    }
    if (ch && typeof ch.onMessage === 'function') ch.onMessage(m);
    else on('onMessage', m);
  }

  function receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      on('onError', { error: 'unparseable frame', data });
      return;
    }
    if (!m || typeof m !== 'object' || Array.isArray(m)) {
      on('onError', { error: 'unexpected frame', data });
      return;
    }
    if (m.type === 'welcome') {
      welcome(m);
      return;
    }
    if (m.type === 'epoch') {
      adoptEpoch(m);
      return;
    }
    if (typeof m.channel === 'string') {
      channelMessage(m);
      return;
    }
    if (Number.isSafeInteger(m.offset)) {
      if (!fresh(offset, m)) return;
      offset = m.offset;
    }
    on('onMessage', m);
    if (m.type === 'shutdown_notice') {
      noticed = true;
      const ms = Number(m.reconnect_after_ms);
      // Follow the hint while this connection still works: the server
      // keeps delivering until we leave, and the resume covers the switch.
      schedule(Number.isFinite(ms) && ms >= 0 ? ms : backoffDelay(0, random, base, cap), true);
    }
  }

  const client = {
    /** Sends a JSON message; false when not connected. */
    send(obj) {
      return sendNow(obj);
    },
    /** Joins `channel` (now if connected, else at the next welcome) and
     * keeps it joined across reconnects, resuming from its last offset.
     * Its messages go to `onMessage` (to the client's when none is given).
     * Joining a channel joined already only replaces the callback. */
    subscribe(channel, onMessage) {
      const name = String(channel);
      const ch = channels.get(name);
      if (ch) {
        ch.onMessage = onMessage;
        ch.asked = true;
        return;
      }
      const created = { onMessage, offset: null, epoch: null, pending: false, own: false, asked: true };
      channels.set(name, created);
      leaving.delete(name);
      if (welcomed) sendSubscribe(name, created);
    },
    /** Leaves `channel`; nothing of it reaches the page after this call. */
    unsubscribe(channel) {
      const name = String(channel);
      const ch = channels.get(name);
      // The user's own channel stays joined while connected: its messages
      // go back to the client's onMessage.
      if (ch && ch.own) {
        ch.onMessage = undefined;
        ch.asked = false;
        return;
      }
      if (!channels.delete(name)) return;
      if (welcomed && sendNow({ type: 'unsubscribe', channel: name })) leaving.add(name);
    },
    /** Connects now (again), resuming if the position is known. A new
     * URL starts a new position, for every channel too. */
    reconnect(newUrl) {
      if (newUrl !== undefined && newUrl !== target) {
        target = newUrl;
        epoch = null;
        offset = null;
        for (const ch of channels.values()) {
          ch.epoch = null;
          ch.offset = null;
        }
      }
      attempt = 0;
      welcomed = false;
      after = null;
      open();
    },
    /** Closes and stops reconnecting; the position is kept for reconnect(). */
    close() {
      clearTimer();
      generation++;
      detach();
      welcomed = false;
      setState('disconnected');
    },
    get state() { return state; },
    get clientId() { return clientId; },
    /** The user the token named (the welcome's `user`), or null. */
    get user() { return user; },
    get epoch() { return epoch; },
    get offset() { return offset; },
    /** The channels the page joined, in the order it joined them (the
     * user's own channel only if it was subscribed to). */
    get channels() { return [...channels].filter(([, ch]) => ch.asked).map(([name]) => name); },
    /** The last offset seen of a joined channel, the user's own included
     * (null if none yet). */
    channelOffset(channel) {
      const ch = channels.get(String(channel));
      return ch ? ch.offset : null;
    },
    /** Messages dropped because their offset was already seen. */
    get dropped() { return dropped; },
    get url() { return target; },
  };
  open();
  return client;
}
