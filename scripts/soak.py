#!/usr/bin/env python3
"""Soak clients for wsnotify (python3 standard library only).

    scripts/soak.py --port P --server-pid PID [--seconds 60] [options]

Drives a running wsnotify on 127.0.0.1:P for --seconds and then judges it;
scripts/soak.sh starts the server with the soak's options and runs this.
The clients run in --procs processes for the good clients (2) plus one for
the publisher and the bad clients, each with its own asyncio loop, so that a
busy loop of good clients neither slows the publisher nor delays answers to
the server's pings.

Load:
  good clients   --clients slots (2500), each a loop of sessions on /ws: connect
                 (masked frames; the 101 and Sec-WebSocket-Accept checked), read
                 the welcome, read every message (server Pings answered), live a
                 random --lifetime (1-8 s), then Close 1000 and wait for the
                 echoed Close and the server's TCP close; then connect again.
                 --chat-rate (4) chat, ping and status_request messages per
                 second are sent by random live clients; each sender must get
                 its own chat back (or its pong or status) before its Close is
                 echoed. Every message must be a JSON object with a known type.
  publisher      POST /broadcast at a steady --rate (20/s) on a keep-alive
                 connection (pipelined: requests leave on schedule whatever the
                 answer latency); every --big-every-th (20th) message is 8 KB.
  bad clients    looping slots of each kind (BAD_KINDS below): garbage bytes,
                 a half-sent head (408 from --header-timeout), an upgrade then
                 silence (Close 1000 "idle timeout"), a client that never reads
                 (dropped as a slow consumer), an abrupt reset (SO_LINGER 0), an
                 oversize message (1009), invalid UTF-8 (1007).

Kernel socket buffers on loopback absorb about 3-4 MB per connection before
the server's own queue (--max-queue-bytes, 1 MiB) starts to count, so the
broadcasts alone would need minutes to make a client slow. Each never-reading
client therefore also gets 8 KB personal notifications (POST /notify with its
client_id, --flood-rate per second) until the server answers 404 for it.

At the end every client stops (good ones with a proper Close), the script
waits up to --settle seconds for wsnotify_connections_active to reach 0,
reads VmRSS, prints one JSON line and a human summary, and exits 1 when:
the gauge stays above 0, the final RSS exceeds the baseline by more than
--rss-margin-kib, a good client saw any protocol error (a missing welcome
included), a bad client saw an outcome other than the expected one, a
broadcast failed, no slow consumer was dropped, or the server died.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import resource
import signal
import socket
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOST = "127.0.0.1"

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
KNOWN_TYPES = frozenset(("notification", "chat", "pong", "status"))

# The bad clients: what each does and what it must see (expected() below).
BAD_KINDS = {
    "garbage": "random bytes then a blank line; expect an HTTP 4xx",
    "half_head": "half a request head, then stall; expect 408 from --header-timeout",
    "silent": "an upgrade, then silence (no Pong); expect Close 1000 'idle timeout'",
    "never_read": "an upgrade, the welcome read, then never read; expect a drop as a slow consumer",
    "reset": "an upgrade, then an abrupt TCP reset (SO_LINGER 0)",
    "oversize": "a text frame announcing 70,000 bytes; expect Close 1009",
    "bad_utf8": "a text frame with invalid UTF-8; expect Close 1007",
}
BAD_SLOTS = {"garbage": 2, "half_head": 4, "silent": 6, "never_read": 3,
             "reset": 3, "oversize": 2, "bad_utf8": 2}


def expected(kind, outcome):
    if kind == "garbage":
        return outcome.startswith("http 4")
    if kind == "half_head":
        return outcome == "http 408"
    if kind == "silent":
        return outcome == "close 1000 idle timeout"
    if kind == "never_read":
        return outcome in ("dropped: close 1008 slow consumer", "dropped: tcp close",
                           "dropped: tcp close mid-frame")
    if kind == "reset":
        return outcome.startswith("reset sent")
    if kind == "oversize":
        return outcome.startswith("close 1009")
    if kind == "bad_utf8":
        return outcome.startswith("close 1007")
    return False


def mask_bytes(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def client_frame(opcode, payload=b"", fin=True, length=None):
    """A masked client frame; `length` overrides the announced length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + struct.pack(">H", n)
    else:
        head = bytes((b0, 0x80 | 127)) + struct.pack(">Q", n)
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def upgrade_request(key, path="/ws"):
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def check_upgrade(head, key):
    """None if `head` is a valid 101 for `key`, else the problem."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        return "handshake status " + (parts[1] if len(parts) > 1 else repr(lines[0][:40]))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        return "handshake without Upgrade: websocket"
    if "upgrade" not in headers.get("connection", "").lower():
        return "handshake without Connection: upgrade"
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        return "wrong Sec-WebSocket-Accept"
    return None


class FrameParser:
    """Server frames from a byte stream: unmasked, no RSV bits."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def frames(self):
        """Complete frames as (fin, opcode, payload); raises ValueError."""
        buf = self.buf
        pos, n = 0, len(buf)
        out = []
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ValueError("server frame with RSV bits")
            if b1 & 0x80:
                raise ValueError("masked server frame")
            ln, hl = b1 & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hl = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hl = struct.unpack_from(">Q", buf, pos + 2)[0], 10
            if n - pos < hl + ln:
                break
            out.append((b0 & 0x80, b0 & 0x0F, bytes(buf[pos + hl:pos + hl + ln])))
            pos += hl + ln
        if pos:
            del buf[:pos]
        return out


def parse_close(payload):
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ValueError("1-byte close payload")
    code = struct.unpack(">H", payload[:2])[0]
    return code, payload[2:].decode("utf-8")


class Stats:
    """What one process saw; the processes' dicts are merged at the end."""

    def __init__(self):
        self.connects = 0              # good sessions that got their welcome
        self.upgrades = 0              # 101s seen by any client
        self.attempts = 0
        self.clean_closes = 0
        self.messages = 0              # data messages received by good clients
        self.by_type = collections.Counter()
        self.bytes = 0
        self.pings_answered = 0
        self.sent = collections.Counter()   # chat / ping / status_request sent
        self.errors = collections.Counter()
        self.error_samples = []
        self.broadcasts = 0
        self.broadcasts_big = 0
        self.broadcast_errors = collections.Counter()
        self.personal = 0
        self.bad = collections.Counter()      # "kind\0outcome" -> count
        self.bad_samples = []
        self.half_head_secs = []
        self.silent_secs = []
        self.never_read_secs = []
        self.loop_lag_max = collections.Counter()   # role -> worst lag (s)
        self.cpu_s = 0.0

    def error(self, kind, detail):
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail}")

    def merge(self, other):
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if name == "loop_lag_max":
                self.loop_lag_max = collections.Counter(
                    {k: max(mine.get(k, 0), value.get(k, 0)) for k in set(mine) | set(value)})
            elif name.endswith("_samples"):
                setattr(self, name, (mine + value)[:20])
            else:
                setattr(self, name, mine + value)

    def bad_by_kind(self):
        out = {k: collections.Counter() for k in BAD_KINDS}
        for key, n in self.bad.items():
            kind, outcome = key.split("\0", 1)
            out[kind][outcome] += n
        return out


STATS = Stats()


class GoodClient(asyncio.Protocol):
    """One well-behaved /ws session, driven by `session()`."""

    def __init__(self, loop):
        self.loop = loop
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.parser = FrameParser()
        self.upgraded = False
        self.head = bytearray()
        self.transport = None
        self.client_id = None
        self.welcome = loop.create_future()
        self.close_echo = loop.create_future()
        self.lost = loop.create_future()
        self.closing = False
        self.failed = None
        self.frag_op = None
        self.frag = []
        self.expect = {}                     # replies owed to this client, by type
        self.chat_text = set()

    def fail(self, kind, detail=""):
        if self.failed is None:
            self.failed = kind
            STATS.error(kind, f"{self.client_id or '-'} {detail}")
            for fut in (self.welcome, self.close_echo):
                if not fut.done():
                    fut.set_result(None)
            if self.transport:
                self.transport.abort()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(upgrade_request(self.key))

    def data_received(self, data):
        if self.failed:
            return
        STATS.bytes += len(data)
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 16384:
                    self.fail("handshake", "head too long")
                return
            problem = check_upgrade(bytes(self.head[:end]), self.key)
            if problem:
                self.fail("handshake", problem)
                return
            self.upgraded = True
            STATS.upgrades += 1
            data = bytes(self.head[end + 4:])
            self.head = None
        self.parser.feed(data)
        try:
            for fin, op, payload in self.parser.frames():
                self.on_frame(fin, op, payload)
                if self.failed:
                    return
        except ValueError as e:
            self.fail("protocol", str(e))

    def on_frame(self, fin, op, payload):
        if op == OP_PING:
            if len(payload) > 125 or not fin:
                self.fail("protocol", "bad ping frame")
                return
            if not self.closing and not self.transport.is_closing():
                self.transport.write(client_frame(OP_PONG, payload))
                STATS.pings_answered += 1
            return
        if op == OP_PONG:
            return
        if op == OP_CLOSE:
            code, reason = parse_close(payload)
            if not self.closing:
                self.fail("unexpected close", f"code {code} {reason!r}")
            elif not self.close_echo.done():
                self.close_echo.set_result(code)
            return
        if op == OP_CONT:
            if self.frag_op is None:
                self.fail("protocol", "continuation without a start")
                return
            self.frag.append(payload)
            if fin:
                op, payload = self.frag_op, b"".join(self.frag)
                self.frag_op, self.frag = None, []
            else:
                return
        elif op in (OP_TEXT, OP_BIN):
            if self.frag_op is not None:
                self.fail("protocol", "new message inside a fragmented one")
                return
            if not fin:
                self.frag_op, self.frag = op, [payload]
                return
        else:
            self.fail("protocol", f"unknown opcode {op}")
            return
        if op != OP_TEXT:
            self.fail("protocol", "binary message from the server")
            return
        self.on_message(payload)

    def on_message(self, payload):
        STATS.messages += 1
        if self.client_id is None:
            try:
                msg = json.loads(payload)
            except ValueError:
                self.fail("missing welcome", payload[:80])
                return
            if not isinstance(msg, dict) or msg.get("type") != "welcome" or \
                    not isinstance(msg.get("client_id"), str):
                self.fail("missing welcome", payload[:80])
                return
            STATS.by_type["welcome"] += 1
            self.client_id = msg["client_id"]
            self.welcome.set_result(self.client_id)
            return
        # Every server message is a JSON object with a string "type" (its keys
        # come sorted, so the top-level "type" is the last one); a sample is
        # parsed in full.
        at = payload.rfind(b'"type":"')
        end = payload.find(b'"', at + 8)
        if payload[:1] != b"{" or payload[-1:] != b"}" or at < 0 or end < 0:
            self.fail("protocol", f"not a JSON object with a type: {payload[:80]!r}")
            return
        mtype = payload[at + 8:end].decode("ascii", "replace")
        STATS.by_type[mtype] += 1
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("protocol", "invalid UTF-8 from the server")
            return
        if STATS.messages % 64 == 0:
            try:
                msg = json.loads(text)
            except ValueError:
                msg = None
            if not isinstance(msg, dict) or msg.get("type") != mtype or not isinstance(msg.get("time"), str):
                self.fail("protocol", f"bad message: {text[:80]!r}")
                return
        if mtype == "error":
            self.fail("error message", text[:120])
            return
        if mtype not in KNOWN_TYPES:
            self.fail("protocol", f"unexpected message type {mtype!r}")
            return
        if self.expect and self.expect.get(mtype) and (mtype != "chat" or self.client_id in text):
            msg = json.loads(text)
            if mtype == "chat":
                if msg.get("from") == self.client_id and msg.get("message") in self.chat_text:
                    self.chat_text.discard(msg["message"])
                    self.expect["chat"] -= 1
            else:
                self.expect[mtype] -= 1

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)
        if self.failed is None and not (self.closing and self.close_echo.done()):
            self.fail("unexpected eof", f"exc={exc!r}")

    def send_extra(self):
        """One chat, ping or status_request; its reply is owed before the Close."""
        if self.transport.is_closing():
            return
        r = random.random()
        if r < 0.6:
            text = f"soak chat {random.getrandbits(40):x} " + random.choice(
                ["hello", "héllo wörld", "☃ snow", "日本語", "plain"])
            self.chat_text.add(text)
            data = json.dumps({"type": "chat", "message": text}, ensure_ascii=False)
            self.expect["chat"] = self.expect.get("chat", 0) + 1
            STATS.sent["chat"] += 1
        elif r < 0.85:
            data = '{"type":"ping"}'
            self.expect["pong"] = self.expect.get("pong", 0) + 1
            STATS.sent["ping"] += 1
        else:
            data = '{"type":"status_request"}'
            self.expect["status"] = self.expect.get("status", 0) + 1
            STATS.sent["status_request"] += 1
        self.transport.write(client_frame(OP_TEXT, data.encode()))


class Soak:
    def __init__(self, args):
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.live = {}          # GoodClient -> None, clients in their lifetime

    # ---------------------------------------------------------------- good
    async def good_slot(self, i):
        await asyncio.sleep(random.uniform(0, self.args.ramp))
        while not self.stop.is_set():
            await self.good_session()

    async def good_session(self):
        STATS.attempts += 1
        try:
            _, c = await asyncio.wait_for(
                self.loop.create_connection(lambda: GoodClient(self.loop), HOST, self.args.port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            STATS.error("connect", repr(e))
            await asyncio.sleep(0.5)
            return
        try:
            try:
                await asyncio.wait_for(c.welcome, 10)
            except asyncio.TimeoutError:
                c.fail("missing welcome", "no welcome within 10 s")
            if c.failed:
                return
            STATS.connects += 1
            self.live[c] = None
            lo, hi = self.args.lifetime
            try:
                await asyncio.wait_for(self.stop.wait(), random.uniform(lo, hi))
            except asyncio.TimeoutError:
                pass
            self.live.pop(c, None)
            if c.failed:
                return
            c.closing = True
            c.transport.write(client_frame(OP_CLOSE, close_payload(1000, b"bye")))
            try:
                code = await asyncio.wait_for(c.close_echo, 5)
            except asyncio.TimeoutError:
                c.fail("close", "no Close echoed within 5 s")
            if c.failed:
                return
            if code != 1000:
                c.fail("close", f"echoed code {code}, sent 1000")
                return
            owed = {k: v for k, v in c.expect.items() if v}
            if owed:
                c.fail("missing reply", f"owed {owed} at close")
                return
            try:
                await asyncio.wait_for(asyncio.shield(c.lost), 5)
            except asyncio.TimeoutError:
                c.fail("close", "server kept TCP open 5 s after the Close")
                return
            STATS.clean_closes += 1
        finally:
            self.live.pop(c, None)
            if c.transport and not c.lost.done():
                c.transport.abort()

    async def chatter(self):
        period = self.args.procs / self.args.chat_rate
        while not self.stop.is_set():
            await asyncio.sleep(period)
            if self.live:
                c = random.choice(list(self.live))
                if not c.closing and not c.failed:
                    c.send_extra()

    # ------------------------------------------------------------ publisher
    async def publisher(self):
        """POST /broadcast at a steady --rate on a keep-alive connection.
        Requests go out on schedule, not after the previous answer (HTTP
        pipelining), so a busy server does not lower the rate; answers are
        read by a separate task. A connection is retired after 900 requests,
        under the server's 1,000 per connection."""
        n = 0
        start = time.monotonic()
        conn = None
        readers = []

        async def read_answers(reader, writer, flags):
            try:
                while True:
                    big = await flags.get()
                    if big is None:
                        break
                    status, _ = await asyncio.wait_for(read_response(reader), 30)
                    if status == 200:
                        STATS.broadcasts += 1
                        STATS.broadcasts_big += big
                    else:
                        STATS.broadcast_errors[f"http {status}"] += 1
            except (OSError, asyncio.TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                STATS.broadcast_errors[type(e).__name__] += 1
            finally:
                writer.close()

        try:
            while not self.stop.is_set():
                if conn is None or conn[3] >= 900 or readers[-1].done():
                    if conn:
                        conn[2].put_nowait(None)
                    try:
                        reader, writer = await asyncio.open_connection(HOST, self.args.port)
                    except OSError as e:
                        STATS.broadcast_errors[type(e).__name__] += 1
                        await asyncio.sleep(0.5)
                        continue
                    conn = [reader, writer, asyncio.Queue(), 0]
                    readers.append(asyncio.ensure_future(read_answers(reader, writer, conn[2])))
                n += 1
                big = bool(self.args.big_every) and n % self.args.big_every == 0
                msg = f"soak broadcast {n}"
                if big:
                    msg += " " + "x" * (8192 - len(msg) - 1)
                body = json.dumps({"message": msg, "type": "info",
                                   "data": {"n": n, "big": big}}).encode()
                conn[1].write(f"POST /broadcast HTTP/1.1\r\nHost: {HOST}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                conn[2].put_nowait(big)
                conn[3] += 1
                delay = start + n / self.args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -2:          # far behind: do not burst to catch up
                    start = time.monotonic() - n / self.args.rate
        finally:
            if conn:
                conn[2].put_nowait(None)
            # Up to 5 s for the last answers.
            done, pending = await asyncio.wait(readers, timeout=5) if readers else (set(), set())
            for t in pending:
                t.cancel()

    # ---------------------------------------------------------------- bad
    async def bad_slot(self, kind):
        await asyncio.sleep(random.uniform(0, min(2.0, self.args.ramp)))
        fn = getattr(self, "bad_" + kind)
        while not self.stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            task = asyncio.ensure_future(fn(sock))
            stopper = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    task.cancel()
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):
                        pass
                    break
                try:
                    outcome = task.result()
                except (OSError, asyncio.TimeoutError, ValueError) as e:
                    outcome = f"client error {type(e).__name__}: {e}"
                STATS.bad[kind + "\0" + outcome] += 1
                if not expected(kind, outcome) and len(STATS.bad_samples) < 20:
                    STATS.bad_samples.append(f"{kind}: {outcome}")
            finally:
                stopper.cancel()
                sock.close()
            await asyncio.sleep(random.uniform(0.05, 0.5))

    async def recv(self, sock, n=65536, timeout=15):
        return await asyncio.wait_for(self.loop.sock_recv(sock, n), timeout)

    async def read_http_status(self, sock, timeout=15):
        """The status of the answer, or 'eof'/'reset' if none came."""
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf:
            try:
                chunk = await self.recv(sock, 65536, max(0.1, deadline - time.monotonic()))
            except ConnectionResetError:
                return "reset"
            if not chunk:
                return "eof" if not buf else "eof mid-head"
            buf += chunk
        parts = buf.split(b"\r\n", 1)[0].split(b" ")
        return "http " + (parts[1].decode("latin-1") if len(parts) > 1 else "?")

    async def ws_connect(self, sock):
        """Upgrade on `sock`; returns (parser, welcome client_id)."""
        await self.loop.sock_connect(sock, (HOST, self.args.port))
        key = base64.b64encode(os.urandom(16)).decode()
        await self.loop.sock_sendall(sock, upgrade_request(key))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await self.recv(sock, 4096, 10)
            if not chunk:
                raise ValueError("eof during the handshake")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        problem = check_upgrade(head, key)
        if problem:
            raise ValueError(problem)
        STATS.upgrades += 1
        parser = FrameParser()
        parser.feed(rest)
        while True:
            for fin, op, payload in parser.frames():
                if op == OP_TEXT:
                    msg = json.loads(payload)
                    if msg.get("type") != "welcome":
                        raise ValueError("first message is not the welcome")
                    return parser, msg["client_id"]
            chunk = await self.recv(sock, 4096, 10)
            if not chunk:
                raise ValueError("eof before the welcome")
            parser.feed(chunk)

    async def await_close(self, sock, parser, reply=True, timeout=15):
        """Reads until a Close frame; answers it; waits for EOF.
        Returns 'close CODE REASON', or 'tcp close' without a Close."""
        deadline = time.monotonic() + timeout
        while True:
            for fin, op, payload in parser.frames():
                if op == OP_PING:
                    continue
                if op == OP_CLOSE:
                    code, reason = parse_close(payload)
                    if reply:
                        try:
                            await self.loop.sock_sendall(
                                sock, client_frame(OP_CLOSE, payload[:2]))
                        except OSError:
                            pass
                    await self.read_to_eof(sock, deadline)
                    return f"close {code} {reason}".rstrip()
            left = deadline - time.monotonic()
            if left <= 0:
                return "no close within the time limit"
            try:
                chunk = await self.recv(sock, 262144, left)
            except ConnectionResetError:
                return "reset by the server"
            except asyncio.TimeoutError:
                return "no close within the time limit"
            if not chunk:
                return "tcp close mid-frame" if parser.buf else "tcp close"
            parser.feed(chunk)

    async def read_to_eof(self, sock, deadline):
        while time.monotonic() < deadline:
            try:
                chunk = await self.recv(sock, 65536, max(0.1, deadline - time.monotonic()))
            except (OSError, asyncio.TimeoutError):
                return
            if not chunk:
                return

    async def bad_garbage(self, sock):
        await self.loop.sock_connect(sock, (HOST, self.args.port))
        junk = os.urandom(random.randint(1, 2000)).replace(b"\r\n\r\n", b"") + b"\r\n\r\n"
        await self.loop.sock_sendall(sock, junk)
        return await self.read_http_status(sock)

    async def bad_half_head(self, sock):
        await self.loop.sock_connect(sock, (HOST, self.args.port))
        t0 = time.monotonic()
        await self.loop.sock_sendall(sock, f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: web".encode())
        status = await self.read_http_status(sock)
        STATS.half_head_secs.append(time.monotonic() - t0)
        return status

    async def bad_silent(self, sock):
        parser, _ = await self.ws_connect(sock)
        t0 = time.monotonic()
        outcome = await self.await_close(sock, parser, reply=False, timeout=20)
        STATS.silent_secs.append(time.monotonic() - t0)
        return outcome

    async def bad_never_read(self, sock):
        parser, cid = await self.ws_connect(sock)
        t0 = time.monotonic()
        dropped = asyncio.Event()
        flood = asyncio.ensure_future(self.flood(cid, dropped))
        try:
            # Never read; a Pong a second keeps the idle timeout away.
            while not dropped.is_set() and time.monotonic() - t0 < 25:
                try:
                    await asyncio.wait_for(dropped.wait(), 1)
                except asyncio.TimeoutError:
                    pass
                if not dropped.is_set():
                    await self.loop.sock_sendall(sock, client_frame(OP_PONG))
        finally:
            flood.cancel()
        if not dropped.is_set():
            return "not dropped within 25 s"
        STATS.never_read_secs.append(time.monotonic() - t0)
        # Now read what the kernel buffered: the frames sent before the drop,
        # then a Close 1008 if the drop fell on a frame boundary, then FIN.
        return "dropped: " + await self.await_close(sock, parser, timeout=15)

    async def flood(self, cid, dropped):
        """8 KB personal notifications to `cid` until the server answers 404
        (dropped): --flood-rate per second, pipelined 10 at a time so that
        the server's latency under load does not set the pace."""
        http = Http(self.args.port)
        body = json.dumps({"message": "x" * 8192, "client_id": cid, "type": "flood"}).encode()
        batch = 10
        try:
            start, n = time.monotonic(), 0
            while True:
                answers = await asyncio.wait_for(http.pipeline("POST", "/notify", body, batch), 10)
                n += batch
                STATS.personal += sum(1 for status, _ in answers if status == 200)
                if any(status == 404 for status, _ in answers):
                    dropped.set()
                    return
                delay = start + n / self.args.flood_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        except (OSError, asyncio.TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
            STATS.broadcast_errors[f"flood {type(e).__name__}"] += 1
        finally:
            await http.reset()

    async def bad_reset(self, sock):
        parser, _ = await self.ws_connect(sock)
        await asyncio.sleep(random.uniform(0.1, 2.0))
        how = "after the welcome"
        if random.random() < 0.5:
            # Half a frame first: the server is mid-message when the RST comes.
            frame = client_frame(OP_TEXT, b'{"type":"chat","message":"never finished"}')
            await self.loop.sock_sendall(sock, frame[:len(frame) // 2])
            how = "mid-frame"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return "reset sent " + how

    async def bad_oversize(self, sock):
        parser, _ = await self.ws_connect(sock)
        n = self.args.max_message_bytes + 4464
        frame = client_frame(OP_TEXT, b"x" * 1000, length=n)
        await self.loop.sock_sendall(sock, frame)
        return await self.await_close(sock, parser)

    async def bad_bad_utf8(self, sock):
        parser, _ = await self.ws_connect(sock)
        await self.loop.sock_sendall(sock, client_frame(OP_TEXT, b"ok \xc3\x28 not utf-8"))
        return await self.await_close(sock, parser)

    # ------------------------------------------------------------ running
    async def lag_monitor(self, role):
        """How late the event loop wakes up: a loop too busy to answer the
        server's pings in time would make good clients fail."""
        while not self.stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.1)
            lag = time.monotonic() - t - 0.1
            if lag > STATS.loop_lag_max[role]:
                STATS.loop_lag_max[role] = round(lag, 3)

    async def run(self, role, index, deadline, stop_evt):
        if role == "good":
            n = self.args.clients // self.args.procs + (index < self.args.clients % self.args.procs)
            tasks = [asyncio.ensure_future(self.good_slot(i)) for i in range(n)]
            helpers = [asyncio.ensure_future(self.chatter())]
        else:
            tasks = [asyncio.ensure_future(self.bad_slot(kind))
                     for kind, n in BAD_SLOTS.items() for _ in range(n * self.args.bad_scale)]
            helpers = [asyncio.ensure_future(self.publisher())]
        helpers.append(asyncio.ensure_future(self.lag_monitor(role)))
        progress_at = time.monotonic() + 10
        while time.monotonic() < deadline and not stop_evt.is_set():
            await asyncio.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
            if role == "good" and time.monotonic() >= progress_at:
                progress_at += 10
                print(f"soak[good {index}]: live={len(self.live)} connects={STATS.connects} "
                      f"messages={STATS.messages} errors={sum(STATS.errors.values())} "
                      f"loop lag max={STATS.loop_lag_max['good']:.2f}s", file=sys.stderr, flush=True)
        self.stop.set()
        # Good clients close properly (up to 5 s for the echo, 5 s for the FIN).
        done, pending = await asyncio.wait(tasks + helpers, timeout=12)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception():
                STATS.error("soak script", repr(t.exception()))


class Http:
    """A minimal keep-alive HTTP/1.1 client."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def reset(self):
        if self.writer:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 1)
            except (OSError, asyncio.TimeoutError):
                pass
        self.reader = self.writer = None

    async def request(self, method, path, body=b""):
        return (await self.pipeline(method, path, body, 1))[0]

    async def pipeline(self, method, path, body, count):
        """`count` identical requests written at once; their answers."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head.encode() + b"\r\n" + body) * count)
        answers = []
        for _ in range(count):
            status, data, close = await read_response(self.reader, with_close=True)
            answers.append((status, data))
            if close:
                await self.reset()
                if len(answers) < count:
                    raise ValueError("Connection: close in the middle of a pipeline")
        return answers

    async def post(self, path, body):
        return await self.request("POST", path, body)


async def read_response(reader, with_close=False):
    """One HTTP answer: (status, body) or (status, body, connection_close)."""
    status_line = await reader.readline()
    if not status_line:
        raise ValueError("connection closed before an answer")
    status = int(status_line.split(b" ")[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    data = await reader.readexactly(length)
    return (status, data, close) if with_close else (status, data)


async def metric_values(port):
    http = Http(port)
    try:
        status, data = await asyncio.wait_for(http.request("GET", "/metrics"), 5)
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        await http.reset()
    if status != 200:
        return None
    out = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                v = float(value)
            except ValueError:
                continue
            out[name] = int(v) if v.is_integer() else v
    return out


def cpu_seconds(pid):
    """User + system CPU of a process so far, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_status(pid):
    """VmRSS, VmHWM ... of /proc/PID/status in KiB, or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Vm") and value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
        if name == "State":
            out["State"] = value.strip()
    if out.get("State", "").startswith("Z"):
        return None
    return out


def worker(role, index, args, deadline, stop_evt, conn):
    """A client process: `good` (a share of the good clients and the chat)
    or `aux` (the publisher and the bad clients), in its own event loop so
    a busy loop of good clients does not slow the publisher down."""
    global STATS
    try:  # die with the parent
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    random.seed()
    STATS = Stats()

    async def go():
        await Soak(args).run(role, index, deadline, stop_evt)

    try:
        asyncio.run(go())
    except Exception as e:  # reported, not hidden
        STATS.error("soak script", f"{role} {index}: {e!r}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    STATS.cpu_s = ru.ru_utime + ru.ru_stime
    conn.send(STATS)
    conn.close()


async def sample(args, stop_at, rss, gauge):
    while time.monotonic() < stop_at:
        st = read_status(args.server_pid)
        if st is None:
            return
        rss.append(st["VmRSS"])
        m = await metric_values(args.port)
        if m:
            gauge.append(m.get("wsnotify_connections_active", -1))
        await asyncio.sleep(1)


async def settle(args):
    """After the clients stopped: wait for the gauge to reach 0."""
    t0 = time.monotonic()
    metrics, gauge = None, None
    while True:
        alive = read_status(args.server_pid) is not None
        metrics = await metric_values(args.port) if alive else None
        gauge = metrics.get("wsnotify_connections_active") if metrics else None
        if gauge == 0 or not alive or time.monotonic() - t0 > args.settle:
            break
        await asyncio.sleep(0.25)
    return metrics, gauge, time.monotonic() - t0


CHILDREN = []


def on_signal(signum, _frame):
    """Stop at once: the client processes are killed by PID."""
    for pid in CHILDREN:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(128 + signum)


def main_run(args):
    import multiprocessing as mp
    base = read_status(args.server_pid)
    if base is None:
        print("soak: the server is not running", file=sys.stderr)
        return 1
    m0 = asyncio.run(metric_values(args.port))
    if m0 is None:
        print("soak: GET /metrics failed", file=sys.stderr)
        return 1
    baseline_rss = base["VmRSS"]

    ctx = mp.get_context("fork")
    stop_evt = ctx.Event()
    t_start = time.monotonic()
    deadline = t_start + args.seconds
    procs = []
    for role, index in [("aux", 0)] + [("good", i) for i in range(args.procs)]:
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=worker, args=(role, index, args, deadline, stop_evt, tx), daemon=True)
        p.start()
        CHILDREN.append(p.pid)
        tx.close()
        procs.append((role, index, p, rx))

    rss_samples, gauge_samples = [], []
    # Sample RSS and the gauge while the clients run; stop early if the
    # server dies.
    async def watch():
        task = asyncio.ensure_future(sample(args, deadline, rss_samples, gauge_samples))
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if read_status(args.server_pid) is None:
                stop_evt.set()
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(watch())
    ran = min(time.monotonic(), deadline) - t_start

    # Collect every process's figures (each needs at most ~12 s to close).
    total = Stats()
    collect_by = time.monotonic() + 25
    for role, index, p, rx in procs:
        got = rx.poll(max(0.1, collect_by - time.monotonic()))
        if got:
            try:
                total.merge(rx.recv())
            except (EOFError, OSError) as e:
                total.error("soak script", f"{role} {index} sent nothing: {e!r}")
        else:
            total.error("soak script", f"{role} {index} did not finish")
        p.join(2)
        if p.is_alive():
            p.kill()
            p.join(2)
    metrics, gauge, gauge_secs = asyncio.run(settle(args))
    final = read_status(args.server_pid)
    return report(args, total, ran, baseline_rss, final, m0, metrics, gauge, gauge_secs,
                  rss_samples, gauge_samples)


def report(args, S, ran, baseline_rss, final, m0, metrics, gauge, gauge_secs, rss_samples, gauge_samples):
    alive = final is not None
    server_cpu = cpu_seconds(args.server_pid)
    final_rss = final["VmRSS"] if final else None
    peak_rss = final["VmHWM"] if final else None
    m = metrics or {}
    slow = m.get("wsnotify_slow_consumers_dropped_total", 0) - m0.get("wsnotify_slow_consumers_dropped_total", 0)
    bad = S.bad_by_kind()
    bad_expected = {k: sum(n for o, n in c.items() if expected(k, o)) for k, c in bad.items()}
    bad_unexpected = {k: {o: n for o, n in c.items() if not expected(k, o)} for k, c in bad.items()}
    bad_unexpected = {k: v for k, v in bad_unexpected.items() if v}

    failures = []
    if not alive:
        failures.append("the server died")
    if gauge != 0:
        failures.append(f"wsnotify_connections_active is {gauge}, not 0, {gauge_secs:.0f} s after the clients stopped")
    if final_rss is not None and final_rss - baseline_rss > args.rss_margin_kib:
        failures.append(f"final RSS {final_rss} KiB is {final_rss - baseline_rss} KiB above the baseline "
                        f"{baseline_rss} KiB (margin {args.rss_margin_kib} KiB)")
    if S.errors:
        failures.append(f"good clients saw {sum(S.errors.values())} errors: {dict(S.errors)}")
    if bad_unexpected:
        failures.append(f"bad clients saw unexpected outcomes: {bad_unexpected}")
    if alive and slow <= 0 and args.seconds >= 10:
        failures.append("no slow consumer was dropped")
    if S.broadcast_errors:
        failures.append(f"publishing failed: {dict(S.broadcast_errors)}")
    if S.connects == 0 or S.broadcasts == 0:
        failures.append("no load ran (no connects or no broadcasts)")

    notes = []
    if S.errors and S.loop_lag_max.get("good", 0) > 1.0:
        notes.append(f"a good client loop lagged {S.loop_lag_max['good']:.1f} s (the machine is busy): with "
                     "--header-timeout 2s a lag near 2 s can turn into 408s and idle closes that are the "
                     "clients' fault; rerun on a quieter machine before blaming the server")

    def r(x):
        return None if x is None else round(x, 2)

    def mean(xs):
        return r(sum(xs) / len(xs)) if xs else None

    summary = {
        "ok": not failures,
        "seconds": r(ran),
        "good_slots": args.clients,
        "connects": S.connects,
        "connect_attempts": S.attempts,
        "clean_closes": S.clean_closes,
        "connects_per_s": r(S.connects / ran) if ran else 0,
        "messages_received": S.messages,
        "messages_by_type": dict(S.by_type),
        "bytes_received": S.bytes,
        "server_pings_answered": S.pings_answered,
        "client_messages_sent": dict(S.sent),
        "broadcasts": S.broadcasts,
        "broadcasts_8k": S.broadcasts_big,
        "broadcast_errors": dict(S.broadcast_errors),
        "personal_8k_to_never_readers": S.personal,
        "good_client_errors": dict(S.errors),
        "good_client_error_samples": S.error_samples,
        "bad_clients": {k: dict(c) for k, c in bad.items()},
        "bad_unexpected": bad_unexpected,
        "half_head_408_after_s": mean(S.half_head_secs),
        "silent_closed_after_s": mean(S.silent_secs),
        "never_read_dropped_after_s": mean(S.never_read_secs),
        "slow_consumers_dropped": slow,
        "upgrades_seen_by_clients": S.upgrades,
        "server_connections_total": m.get("wsnotify_connections_total"),
        "server_messages_sent": m.get("wsnotify_messages_sent_total"),
        "server_handshake_failures": {k.split('"')[1]: v for k, v in m.items()
                                      if k.startswith("wsnotify_handshake_failures_total{") and v},
        "server_limit_hits": {k.split('"')[1]: v - m0.get(k, 0) for k, v in m.items()
                              if k.startswith("wsnotify_limit_hits_total{") and v - m0.get(k, 0)},
        "connections_active_peak_sampled": max(gauge_samples) if gauge_samples else None,
        "connections_active_final": gauge,
        "gauge_zero_after_s": r(gauge_secs),
        "rss_baseline_kib": baseline_rss,
        "rss_peak_kib": peak_rss,
        "rss_max_sampled_kib": max(rss_samples) if rss_samples else None,
        "rss_every_5s_kib": rss_samples[::5],
        "rss_final_kib": final_rss,
        "rss_margin_kib": args.rss_margin_kib,
        "client_cpu_s": r(S.cpu_s),
        "client_loop_lag_max_s": dict(S.loop_lag_max),
        "server_cpu_s": r(server_cpu),
        "server_alive": alive,
        "failures": failures,
        "notes": notes,
    }
    print(json.dumps(summary, ensure_ascii=False), flush=True)

    def mib(v):
        return "?" if v is None else f"{v / 1024:.1f} MiB"

    lines = [
        f"soak: {ran:.0f} s, {args.clients} good client slots, {S.connects} connects "
        f"({S.connects / max(ran, 1e-9):.0f}/s), {S.clean_closes} clean closes",
        f"soak: good clients received {S.messages} messages ({dict(S.by_type)}), "
        f"answered {S.pings_answered} pings, sent {dict(S.sent)}; errors: {dict(S.errors) or 'none'}",
        f"soak: {S.broadcasts} broadcasts published ({S.broadcasts_big} of 8 KB), "
        f"{S.personal} personal 8 KB notifications to never-readers",
    ]
    for k, c in bad.items():
        lines.append(f"soak: bad {k:10} {sum(c.values()):5}  " +
                     ", ".join(f"{o}: {n}" for o, n in c.most_common()))
    lines += [
        f"soak: half heads got 408 after {summary['half_head_408_after_s']} s, silent clients their "
        f"idle close after {summary['silent_closed_after_s']} s, never-readers were dropped after "
        f"{summary['never_read_dropped_after_s']} s",
        f"soak: slow consumers dropped: {slow:.0f}; upgrades: {S.upgrades} seen by the clients, "
        f"{m.get('wsnotify_connections_total', 0) - m0.get('wsnotify_connections_total', 0):.0f} counted by the server",
        f"soak: server limit hits: {summary['server_limit_hits'] or 'none counted'}",
        f"soak: connections_active {gauge} {gauge_secs:.1f} s after the clients stopped "
        f"(sampled peak {summary['connections_active_peak_sampled']})",
        f"soak: RSS baseline {mib(baseline_rss)}, peak (VmHWM) {mib(peak_rss)}, "
        f"final {mib(final_rss)} (allowed: baseline + {mib(args.rss_margin_kib)})",
        f"soak: CPU: server {'?' if server_cpu is None else f'{server_cpu:.1f}'} s, clients {S.cpu_s:.1f} s; worst client event-loop lag "
        + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(S.loop_lag_max.items())),
    ] + [f"soak: note: {n}" for n in notes] + [
        "soak: PASS" if not failures else "soak: FAIL: " + "; ".join(failures),
    ]
    print("\n".join(lines), flush=True)
    return 0 if not failures else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=2500, help="good client slots")
    p.add_argument("--procs", type=int, default=2, help="processes for the good clients")
    p.add_argument("--lifetime", type=float, nargs=2, default=(1.0, 8.0), metavar=("MIN", "MAX"))
    p.add_argument("--rate", type=float, default=20, help="broadcasts per second")
    p.add_argument("--big-every", type=int, default=20, help="every N-th broadcast is 8 KB")
    p.add_argument("--chat-rate", type=float, default=4, help="chat/ping/status messages per second")
    p.add_argument("--flood-rate", type=float, default=100,
                   help="personal 8 KB notifications per second to each never-reader")
    p.add_argument("--bad-scale", type=int, default=1, help="multiply the bad client slots")
    p.add_argument("--ramp", type=float, default=5, help="seconds over which good clients start")
    p.add_argument("--settle", type=float, default=15, help="seconds to wait for the gauge to reach 0")
    p.add_argument("--max-message-bytes", type=int, default=65536)
    p.add_argument("--rss-margin-kib", type=int, default=8192)
    args = p.parse_args()
    if args.rate <= 0 or args.chat_rate <= 0 or args.flood_rate <= 0 or args.clients < 1:
        p.error("--rate, --chat-rate, --flood-rate and --clients must be positive")
    need = args.clients + 64 * args.bad_scale + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < need:
            p.error(f"--clients {args.clients} needs {need} descriptors; the hard limit is {hard}")
    if args.procs < 1:
        p.error("--procs must be at least 1")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
