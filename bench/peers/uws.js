#!/usr/bin/env node
// Benchmark peer: the wsnotify subset (see bench/peers/README.md) on
// uWebSockets.js (npm @trufflesuite/uws-js-unofficial, the native addon;
// the package's pure-JS fallback is refused). Broadcasts use uWS's native
// pub/sub (every /ws client subscribes to "#all"; app.publish), the peer's
// best case. Channels are uWS topics: subscribe is ws.subscribe(C), chat on
// a channel is app.publish(C, ...) to its subscribers, the sender too.
//
//   node uws.js --port 0      # prints "listening on http://127.0.0.1:PORT" to stderr
//   node uws.js --port 0 --compression shared
//                             # /ws negotiates permessage-deflate with uWS's
//                             # SHARED_COMPRESSOR (one deflate state per loop, no
//                             # context takeover) and broadcasts ask to be
//                             # compressed; without it, compression is off
'use strict';

const uWS = require('@trufflesuite/uws-js-unofficial');

// The package silently falls back to a Node implementation (on `ws`) when the
// native addon does not load; that would not be uWebSockets.js at all.
if (!Object.keys(require.cache).some((p) => p.endsWith('.node') && p.includes('uws-js-unofficial'))) {
  console.error('uws.js: the native uWebSockets.js addon did not load (fallback in use); refusing to run');
  process.exit(1);
}

const MAX_MESSAGE = 65536; // like wsnotify's --max-message-bytes
const MAX_BODY = 65536; // like wsnotify's publish body limit
const MAX_QUEUE = 1048576; // like wsnotify's --max-queue-bytes: beyond it the client is closed
const MAX_CHANNELS = 100; // like wsnotify's --max-channels-per-client
// wsnotify's channel names; its reserved prefixes need a token, which the peer has none of.
const CHANNEL_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const RESERVED = /^(user|private):/;
// The topic of broadcasts, joined by every /ws client; not a valid channel name.
const ALL = '#all';

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '0'));
const sharedCompressor = option('--compression', 'off') === 'shared';
const wsCompression = sharedCompressor ? uWS.SHARED_COMPRESSOR : uWS.DISABLED;

let nextClient = 0;
let nextNotification = 0;
const decoder = new TextDecoder();

// A JSON object, or null for any other text (which wsnotify takes as chat).
function parseObject(text) {
  if (text.length === 0 || text.charCodeAt(0) !== 123 /* { */) return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch (_) {
    return null;
  }
}

function sendJson(ws, obj) {
  obj.time = new Date().toISOString();
  ws.send(JSON.stringify(obj), false);
}

function channelError(ws, error, channel) {
  sendJson(ws, { type: 'error', error, channel });
}

function subscribe(ws, channel) {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) return channelError(ws, 'bad channel name', channel);
  if (RESERVED.test(channel)) return channelError(ws, 'channel not allowed', channel);
  if (!ws.isSubscribed(channel)) {
    if (ws.getTopics().length - 1 >= MAX_CHANNELS) return channelError(ws, 'too many channels', channel);
    ws.subscribe(channel);
  }
  sendJson(ws, { type: 'subscribed', channel });
}

function unsubscribe(ws, channel) {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) return channelError(ws, 'bad channel name', channel);
  ws.unsubscribe(channel);
  sendJson(ws, { type: 'unsubscribed', channel });
}

function channelChat(ws, channel, message) {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel) || !ws.isSubscribed(channel)) return channelError(ws, 'not subscribed', channel);
  const out = JSON.stringify({ type: 'chat', time: new Date().toISOString(), from: ws.getUserData().id, message, channel });
  app.publish(channel, out, false, sharedCompressor);
}

const app = uWS.App();

app.ws('/ws', {
  compression: wsCompression,
  maxPayloadLength: MAX_MESSAGE,
  maxBackpressure: MAX_QUEUE,
  closeOnBackpressureLimit: true,
  idleTimeout: 120,
  open: (ws) => {
    const id = String(++nextClient);
    ws.getUserData().id = id;
    ws.subscribe(ALL);
    ws.send(JSON.stringify({ type: 'welcome', time: new Date().toISOString(), client_id: id, server: 'uws', worker: 0 }), false);
  },
  message: (ws, message, isBinary) => {
    if (isBinary) {
      ws.send(JSON.stringify({ type: 'error', time: new Date().toISOString(), error: 'binary messages are not supported' }), false);
      return;
    }
    const raw = decoder.decode(message);
    const v = parseObject(raw);
    if (v && v.type === 'subscribe') return subscribe(ws, v.channel);
    if (v && v.type === 'unsubscribe') return unsubscribe(ws, v.channel);
    // wsnotify: a JSON object's "message" field, any other text as it stands.
    const text = v && typeof v.message === 'string' ? v.message : raw;
    if (v && v.channel !== undefined) return channelChat(ws, v.channel, text);
    const out = JSON.stringify({ type: 'chat', time: new Date().toISOString(), from: ws.getUserData().id, message: text });
    app.publish(ALL, out, false, sharedCompressor);
  },
});

app.ws('/echo', {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_MESSAGE,
  maxBackpressure: MAX_QUEUE,
  closeOnBackpressureLimit: true,
  idleTimeout: 120,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary, false);
  },
});

function respond(res, status, body) {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'application/json').end(body);
  });
}

app.post('/broadcast', (res) => {
  let aborted = false;
  const chunks = [];
  let size = 0;
  res.onAborted(() => { aborted = true; });
  res.onData((chunk, isLast) => {
    if (aborted) return;
    size += chunk.byteLength;
    if (size > MAX_BODY) {
      aborted = true;
      respond(res, '413 Payload Too Large', '{"error":"body too large"}');
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0))); // the ArrayBuffer is reused after this call
    if (!isLast) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (_) {
      respond(res, '400 Bad Request', '{"error":"bad JSON"}');
      return;
    }
    if (!body || typeof body !== 'object' || Array.isArray(body) || typeof body.message !== 'string') {
      respond(res, '400 Bad Request', '{"error":"missing \\"message\\""}');
      return;
    }
    const channel = body.channel;
    if (channel !== undefined && (typeof channel !== 'string' || !CHANNEL_NAME.test(channel))) {
      respond(res, '400 Bad Request', '{"error":"bad channel name"}');
      return;
    }
    const id = ++nextNotification;
    const category = typeof body.type === 'string' ? body.type : typeof body.category === 'string' ? body.category : 'info';
    const out = JSON.stringify({
      type: 'notification', time: new Date().toISOString(), id, message: body.message,
      category, source: 'api', scope: channel === undefined ? 'broadcast' : 'channel', instance: 'peer', channel,
    });
    const topic = channel === undefined ? ALL : channel;
    const recipients = app.numSubscribers(topic);
    app.publish(topic, out, false, sharedCompressor);
    respond(res, '200 OK', JSON.stringify({ status: 'sent', id, recipients }));
  });
});

app.any('/*', (res) => {
  res.cork(() => {
    res.writeStatus('404 Not Found').writeHeader('Content-Type', 'application/json').end('{"error":"not found"}');
  });
});

app.listen(host, port, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws.js: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  console.error(`listening on http://${host}:${uWS.us_socket_local_port(listenSocket)}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
