// wsnotify client: connect to /ws, reconnect after a drain or a drop, and
// resume where the last connection stopped, so that no broadcast is lost or
// shown twice. One ES module, no dependencies: copy it next to your page.
//
//   import { connect } from './client.js';
//   const client = connect('wss://example.com/ws', {
//     onMessage(m) { ... },            // every message, welcome excluded, duplicates dropped
//     onWelcome(m) { ... },            // each new connection's welcome
//     onRecovered(count, welcome, detail) { },  // a resume replayed `count` missed broadcasts
//     onGap(reason, detail) { ... },    // broadcasts were missed: refetch your state
//     onState(state, detail) { ... },   // 'connecting' | 'connected' | 'waiting' | 'disconnected'
//   });
//   client.send({ type: 'chat', message: 'hi' });
//   client.close();
//
// Reasons given to onGap: 'too_old' and 'unknown_epoch' (from the server's
// welcome), 'jump' (an offset skipped ahead on a live connection;
// detail.expected and detail.got) and 'epoch' (the server's numbering
// restarted under a new epoch: detail.epoch and detail.offset). Why a
// connection replaced the one before, in the details of 'connecting',
// 'connected', onRecovered and onGap: detail.after is 'shutdown' (the
// server said it was shutting down or being upgraded), 'drop' (the
// connection ended without a word), or null (the first connection, or
// reconnect()). describeReconnect() and describeGap() put both in plain
// words. See docs/client.md.

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
  let state = 'disconnected';
  let dropped = 0;
  // Why the next connection replaces the last one that was welcomed
  // (see describeReconnect); kept through failed attempts.
  let after = null;
  // The current connection was welcomed, and got a shutdown notice.
  let welcomed = false;
  let noticed = false;

  // The current connection, if it was welcomed, is over: say why.
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
    setState('connecting', { after });
    let sock;
    try {
      sock = new Socket(resumeUrl(target, epoch, offset));
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
      on('onClose', { code: ev.code, reason: ev.reason });
      if (timer !== null) {
        // A shutdown notice already set when to come back.
        setState('waiting', { delayMs: null, after });
        return;
      }
      schedule(backoffDelay(attempt++, random, base, cap));
    };
  }

  function welcome(m) {
    clientId = m.client_id ?? null;
    attempt = 0;
    const why = { after };
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
  }

  // The server's numbering restarted (its Redis lost it): offsets count
  // again from m.offset in m.epoch, so nothing of the new numbering looks
  // already seen. What the old numbering had not delivered yet is lost: a
  // gap. The same epoch again (a connection welcomed in it, whose worker
  // starts it further back) only lowers the offset.
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
    on('onGap', 'epoch', { epoch: m.epoch, offset: m.offset });
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
    if (Number.isSafeInteger(m.offset)) {
      if (offset !== null && m.offset <= offset) {
        dropped++;
        return;
      }
      if (offset !== null && m.offset > offset + 1) {
        on('onGap', 'jump', { expected: offset + 1, got: m.offset });
      }
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
      if (!ws || ws.readyState !== 1) return false;
      ws.send(JSON.stringify(obj));
      return true;
    },
    /** Connects now (again), resuming if the position is known. A new
     * URL starts a new position. */
    reconnect(newUrl) {
      if (newUrl !== undefined && newUrl !== target) {
        target = newUrl;
        epoch = null;
        offset = null;
      }
      attempt = 0;
      welcomed = false;
      after = null;
      open();
    },
    /** Closes and stops reconnecting; the position is kept for reconnect(). */
    close() {
      clearTimer();
      detach();
      setState('disconnected');
    },
    get state() { return state; },
    get clientId() { return clientId; },
    get epoch() { return epoch; },
    get offset() { return offset; },
    /** Broadcasts dropped because their offset was already seen. */
    get dropped() { return dropped; },
    get url() { return target; },
  };
  open();
  return client;
}
