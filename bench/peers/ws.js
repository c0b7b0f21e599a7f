#!/usr/bin/env node
// Benchmark peer: the wsnotify subset (see bench/peers/README.md) on the
// `ws` package with Node's http server. Broadcasts encode the frame payload
// once (one Buffer) and send it to each /ws client in turn, the usual `ws`
// idiom; chat on a channel does the same over that channel's members (a Map
// of channel names to Sets of clients).
//
//   node ws.js --port 0       # prints "listening on http://127.0.0.1:PORT" to stderr
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const MAX_MESSAGE = 65536; // like wsnotify's --max-message-bytes
const MAX_BODY = 65536; // like wsnotify's publish body limit
const MAX_QUEUE = 1048576; // like wsnotify's --max-queue-bytes: beyond it the client is closed
const MAX_CHANNELS = 100; // like wsnotify's --max-channels-per-client
// wsnotify's channel names; its reserved prefixes need a token, which the peer has none of.
const CHANNEL_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const RESERVED = /^(user|private):/;

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '0'));

let nextClient = 0;
let nextNotification = 0;
const clients = new Set(); // open /ws clients
const channels = new Map(); // channel name -> Set of its clients

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
  ws.send(JSON.stringify(obj));
}

function validName(channel) {
  return typeof channel === 'string' && CHANNEL_NAME.test(channel);
}

function subscribe(ws, joined, channel) {
  if (!validName(channel)) return sendJson(ws, { type: 'error', error: 'bad channel name', channel });
  if (RESERVED.test(channel)) return sendJson(ws, { type: 'error', error: 'channel not allowed', channel });
  if (!joined.has(channel)) {
    if (joined.size >= MAX_CHANNELS) return sendJson(ws, { type: 'error', error: 'too many channels', channel });
    joined.add(channel);
    let members = channels.get(channel);
    if (!members) channels.set(channel, (members = new Set()));
    members.add(ws);
  }
  sendJson(ws, { type: 'subscribed', channel });
}

function leave(ws, joined, channel) {
  if (!joined.delete(channel)) return;
  const members = channels.get(channel);
  members.delete(ws);
  if (members.size === 0) channels.delete(channel);
}

function broadcast(text, to = clients) {
  const frame = Buffer.from(text); // encoded once for every recipient
  let n = 0;
  for (const c of to) {
    if (c.readyState !== WebSocket.OPEN) continue;
    if (c.bufferedAmount > MAX_QUEUE) {
      c.close(1008, 'slow consumer');
      continue;
    }
    c.send(frame, { binary: false, compress: false });
    n++;
  }
  return n;
}

const wsOptions = { noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE, clientTracking: false };
const notify = new WebSocketServer(wsOptions);
const echo = new WebSocketServer(wsOptions);

notify.on('connection', (ws) => {
  const id = String(++nextClient);
  const joined = new Set(); // this client's channels
  clients.add(ws);
  ws.on('close', () => {
    clients.delete(ws);
    for (const channel of [...joined]) leave(ws, joined, channel);
  });
  ws.on('error', () => {});
  ws.send(JSON.stringify({ type: 'welcome', time: new Date().toISOString(), client_id: id, server: 'ws', worker: 0 }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.send(JSON.stringify({ type: 'error', time: new Date().toISOString(), error: 'binary messages are not supported' }));
      return;
    }
    const raw = data.toString('utf8');
    const v = parseObject(raw);
    if (v && v.type === 'subscribe') return subscribe(ws, joined, v.channel);
    if (v && v.type === 'unsubscribe') {
      if (!validName(v.channel)) return sendJson(ws, { type: 'error', error: 'bad channel name', channel: v.channel });
      leave(ws, joined, v.channel);
      return sendJson(ws, { type: 'unsubscribed', channel: v.channel });
    }
    // wsnotify: a JSON object's "message" field, any other text as it stands.
    const text = v && typeof v.message === 'string' ? v.message : raw;
    if (v && v.channel !== undefined) {
      if (!validName(v.channel) || !joined.has(v.channel)) return sendJson(ws, { type: 'error', error: 'not subscribed', channel: v.channel });
      broadcast(JSON.stringify({ type: 'chat', time: new Date().toISOString(), from: id, message: text, channel: v.channel }), channels.get(v.channel));
      return;
    }
    broadcast(JSON.stringify({ type: 'chat', time: new Date().toISOString(), from: id, message: text }));
  });
});

echo.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary, compress: false }));
});

function json(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (req.method !== 'POST' || path !== '/broadcast') {
    req.resume();
    json(res, 404, { error: 'not found' });
    return;
  }
  const chunks = [];
  let size = 0;
  let refused = false;
  req.on('data', (chunk) => {
    if (refused) return;
    size += chunk.length;
    if (size > MAX_BODY) {
      refused = true;
      res.setHeader('Connection', 'close');
      json(res, 413, { error: 'body too large' });
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (refused) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (_) {
      json(res, 400, { error: 'bad JSON' });
      return;
    }
    if (!body || typeof body !== 'object' || Array.isArray(body) || typeof body.message !== 'string') {
      json(res, 400, { error: 'missing "message"' });
      return;
    }
    const channel = body.channel;
    if (channel !== undefined && !validName(channel)) {
      json(res, 400, { error: 'bad channel name' });
      return;
    }
    const id = ++nextNotification;
    const category = typeof body.type === 'string' ? body.type : typeof body.category === 'string' ? body.category : 'info';
    const to = channel === undefined ? clients : channels.get(channel) || [];
    const recipients = broadcast(JSON.stringify({
      type: 'notification', time: new Date().toISOString(), id, message: body.message,
      category, source: 'api', scope: channel === undefined ? 'broadcast' : 'channel', instance: 'peer', channel,
    }), to);
    json(res, 200, { status: 'sent', id, recipients });
  });
});
server.keepAliveTimeout = 75000;
server.headersTimeout = 80000;

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = path === '/ws' ? notify : path === '/echo' ? echo : null;
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{"error":"not found"}');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen(port, host, () => {
  console.error(`listening on http://${host}:${server.address().port}`);
});
server.on('error', (err) => {
  console.error(`ws.js: ${err.message}`);
  process.exit(1);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
