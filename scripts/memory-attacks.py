#!/usr/bin/env python3
"""Runs each memory attack of docs/limits.md against a fresh server and
prints its peak RSS (VmHWM) next to the bound of the memory formula.

    scripts/memory-attacks.py [--bin target/release/wsnotify] [--small] [--only NAME ...]

Every attack uses nothing but sockets, as an anonymous client would: it
never reads what it is sent unless it says so. Each runs against a server
of its own on 127.0.0.1 with --port 0, bounded in connections (at most
5,000 at once) and seconds, and the server is stopped after it. `--small`
runs the same attacks with small explicit bounds instead of the defaults.
Exit status: 0 when every peak is within its bound, 1 otherwise.
"""

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

MIB = 1 << 20
# The memory formula (docs/limits.md): a base, a cost per connection up to
# --max-connections, and the bounds of what clients can make the server
# hold. BASE and PER_CONNECTION are measured by `--calibrate` and rounded up.
BASE = 8 * MIB
PER_CONNECTION = 2048
# Queued for the other process of a hand-over, what the shell took of it,
# and one message being read (src/node/peer); none without a hand-over.
HANDOVER_LINK = 8 * MIB + 8 * MIB + 1 * MIB
# A channel held, up to --max-channels (names of 64 bytes: the worker's
# index and the process's map, 573 bytes measured with its one
# subscription; 941 with --redis, each worker following it in Redis); a
# user channel joined past the bound fits in PER_CONNECTION. A subscription
# to a channel shared with others (12 bytes measured), up to
# --max-connections x (--max-channels-per-client + 1).
PER_CHANNEL = 640
PER_CHANNEL_REDIS = 1024
PER_SUBSCRIPTION = 16

SMALL = [
    "--max-total-queue-bytes", str(16 * MIB),
    "--max-total-receive-bytes", str(8 * MIB),
    "--max-history-bytes", str(8 * MIB),
    "--max-channels", "2048",
]


def small_beside(extra):
    """The small bounds, but for an option the attack sets itself (the
    resume storm needs a history that holds its 60 MB)."""
    pairs = zip(SMALL[::2], SMALL[1::2])
    return [x for name, value in pairs if name not in extra for x in (name, value)]


def defaults_from_help(binary):
    text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    found = {}
    for name in ("max-connections", "max-total-queue-bytes", "max-total-receive-bytes",
                 "max-history-bytes", "redis-max-queue-bytes", "max-channels",
                 "max-channels-per-client"):
        m = re.search(r"--%s N .*\(default: (\d+)\)" % name, text)
        if m is None:
            sys.exit(f"memory-attacks: cannot read the default of --{name} from --help")
        found[name.replace("-", "_")] = int(m.group(1))
    return found


def option(args, name, default):
    if f"--{name}" in args:
        return int(args[args.index(f"--{name}") + 1])
    return default


def bound(args, defaults):
    """The formula's bound for a server started with `args`."""
    total = BASE
    connections = option(args, "max-connections", defaults["max_connections"])
    total += PER_CONNECTION * connections
    per_channel = PER_CHANNEL_REDIS if "--redis" in args else PER_CHANNEL
    total += per_channel * option(args, "max-channels", defaults["max_channels"])
    per_client = option(args, "max-channels-per-client", defaults["max_channels_per_client"])
    total += PER_SUBSCRIPTION * connections * (per_client + 1)
    total += option(args, "max-total-queue-bytes", defaults["max_total_queue_bytes"])
    total += option(args, "max-total-receive-bytes", defaults["max_total_receive_bytes"])
    total += option(args, "max-history-bytes", defaults["max_history_bytes"])
    if "--redis" in args:
        total += option(args, "redis-max-queue-bytes", defaults["redis_max_queue_bytes"])
    if "--handover" in args:
        # The link, and once a copy of the history while it is passed.
        total += HANDOVER_LINK
        total += option(args, "max-history-bytes", defaults["max_history_bytes"])
    return total


class Server:
    def __init__(self, binary, args):
        self.proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", "0", "--notify-interval", "0",
             "--log-level", "warn", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(10) or self.port is None:
            self.stop()
            sys.exit("memory-attacks: the server did not start: " + "\n".join(self.lines[-5:]))

    def status_kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def peak(self):
        return self.status_kib("VmHWM") * 1024

    def rss(self):
        return self.status_kib("VmRSS") * 1024

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def http(port, method, path, body=b"", timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def upgrade(port, path="/ws"):
    """A WebSocket connection whose 101 has been read, and the bytes read
    past it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return s, rest


def masked(opcode, payload, fin=True):
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = b"\x01\x02\x03\x04"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def worker_of(sock, rest):
    """The worker named in the welcome that follows the 101 (`rest`: what
    was read past the 101)."""
    while True:
        n, at = (rest[1] & 0x7F, 2) if len(rest) >= 2 else (None, 0)
        if n == 126:
            n, at = (int.from_bytes(rest[2:4], "big"), 4) if len(rest) >= 4 else (None, 0)
        if n is not None and len(rest) >= at + n:
            return json.loads(rest[at:at + n])["worker"]
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the welcome")
        rest += chunk


def on_worker(port, worker, n, tries):
    """Up to `n` clients that landed on `worker` (the kernel spreads
    connections over the workers' sockets), out of at most `tries`
    connections; the others are closed."""
    kept, others = [], []
    for _ in range(tries):
        if len(kept) >= n:
            break
        try:
            s, rest = upgrade(port)
            (kept if worker_of(s, rest) == worker else others).append(s)
        except (OSError, ConnectionError):
            break
    close_all(others)
    return kept


def many(port, n, path="/ws"):
    socks = []
    for _ in range(n):
        try:
            socks.append(upgrade(port, path)[0])
        except (OSError, ConnectionError):
            break
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def sender(sock, frame, seconds):
    """Sends `frame` again and again for `seconds` (or until the server
    closes), in a thread."""
    def run():
        end = time.monotonic() + seconds
        sock.settimeout(1)
        while time.monotonic() < end:
            try:
                sock.sendall(frame)
            except (socket.timeout, OSError):
                if isinstance(sys.exc_info()[1], socket.timeout):
                    continue
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def reader(sock, seconds):
    def run():
        end = time.monotonic() + seconds
        sock.settimeout(0.5)
        while time.monotonic() < end:
            try:
                if not sock.recv(1 << 16):
                    return
            except socket.timeout:
                continue
            except OSError:
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


BIG = json.dumps({"type": "chat", "message": "x" * 60000}).encode()


def attack_chat_flood_nonreaders(server, seconds):
    """F9: with two workers, ~200 clients that never read, and one that
    floods 60 KB chats (and reads its own, so it is not dropped)."""
    crowd = many(server.port, 200)
    flooder, _ = upgrade(server.port)
    reader(flooder, seconds)
    sender(flooder, masked(1, BIG), seconds).join()
    close_all(crowd + [flooder])
    return f"{len(crowd)} non-readers, one flooder, {seconds} s"


def attack_cross_worker_flood(server, seconds):
    """F9, placed: 200 clients that never read on worker 1, and on worker 0
    one client that floods 60 KB chats (and reads its own). Every chat is
    mailed to worker 1 for its clients."""
    crowd = on_worker(server.port, 1, 200, 1000)
    flooder = on_worker(server.port, 0, 1, 100)
    if not flooder:
        close_all(crowd)
        return "no client landed on worker 0"
    reader(flooder[0], seconds)
    # Sixteen chats per write: the flooder goes as fast as the server reads.
    sender(flooder[0], masked(1, BIG) * 16, seconds).join()
    close_all(crowd + flooder)
    return f"{len(crowd)} non-readers on worker 1, one flooder on worker 0, {seconds} s"


def attack_small_chat_flood(server, seconds):
    """5,000 clients that never read, and one that floods the shortest
    chats there are (reading its own): every loop turn's batch holds
    thousands of frames, and each queue that is behind takes them all."""
    crowd = many(server.port, 5000)
    flooder, _ = upgrade(server.port)
    reader(flooder, seconds)
    chat = masked(1, b'{"type":"chat","message":""}')
    sender(flooder, chat * 2000, seconds).join()
    close_all(crowd + [flooder])
    return f"{len(crowd)} non-readers, one flooder of empty chats, {seconds} s"


def attack_history_flood(server, seconds):
    """F3: one client chats 60 KB messages and reads its own echoes, to fill
    the history."""
    client, _ = upgrade(server.port)
    reader(client, seconds)
    sender(client, masked(1, BIG), seconds).join()
    client.close()
    return f"one client, 60 KB chats for {seconds} s"


def attack_unfinished_frames(server, seconds):
    """F11: 5,000 connections each hold 60 KB of a 64 KB message."""
    socks = many(server.port, 5000)
    frame = masked(1, b"y" * 65000)
    for s in socks:
        try:
            s.sendall(frame[:60000])
        except OSError:
            pass
    time.sleep(min(seconds, 3))
    close_all(socks)
    return f"{len(socks)} connections, 60 KB of a 65 KB frame each"


def attack_http_bodies(server, seconds):
    """5,000 connections each send 60 KB of a 64 KiB request body."""
    socks = []
    head = b"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n"
    for _ in range(5000):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(head + b" " * 60000)
            socks.append(s)
        except OSError:
            break
    time.sleep(min(seconds, 3))
    close_all(socks)
    return f"{len(socks)} requests, 60 KB of a 64 KiB body each"


def attack_unread_answers(server, seconds):
    """2,000 connections pipeline requests for /metrics (about 8 KB each)
    and never read the answers: each may hold 256 KiB of answers before
    its requests wait."""
    socks = []
    requests = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 200
    for _ in range(2000):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(requests)
            socks.append(s)
        except OSError:
            break
    time.sleep(min(seconds, 3))
    close_all(socks)
    return f"{len(socks)} connections, 200 pipelined /metrics each, never read"


def attack_publish_storm(server, seconds):
    """F12: 5,000 clients that do not read, and POST /broadcast of 30 KB
    notifications as fast as one keep-alive publisher can."""
    crowd = many(server.port, 5000)
    body = json.dumps({"message": "z" * 30000}).encode()
    request = (f"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
               + body)
    end = time.monotonic() + seconds
    sent = 0
    publisher = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    while time.monotonic() < end:
        try:
            publisher.sendall(request)
            publisher.recv(4096)
            sent += 1
        except OSError:
            publisher = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    close_all(crowd + [publisher])
    return f"{len(crowd)} non-readers, {sent} broadcasts of 30 KB in {seconds} s"


def status(port):
    return json.loads(http(port, "GET", "/status")[1])


def attack_channel_flood(server, seconds):
    """Channels: 200 clients that never read each subscribe to 100 fresh
    channels of 64-byte names (20,000, past --max-channels), while a
    keep-alive publisher publishes to fresh channels for the seconds; the
    channels held must stay within --max-channels."""
    crowd = many(server.port, 200)
    held = []
    for i, s in enumerate(crowd):
        frames = b"".join(
            masked(1, json.dumps({"type": "subscribe", "channel": f"c{i}-{j}-".ljust(64, "x")}).encode())
            for j in range(100))
        try:
            s.sendall(frames)
        except OSError:
            pass
    end = time.monotonic() + seconds
    sent = 0
    publisher = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    while time.monotonic() < end:
        body = json.dumps({"message": "p" * 200, "channel": f"p{sent}-".ljust(64, "y")}).encode()
        try:
            publisher.sendall(f"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                              + body)
            publisher.recv(4096)
            sent += 1
        except OSError:
            publisher = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if sent % 1000 == 0:
            held.append(status(server.port)["memory"]["channels_held"])
    held.append(status(server.port)["memory"]["channels_held"])
    close_all(crowd + [publisher])
    return (f"{len(crowd)} clients x 100 fresh channels, {sent} publishes to fresh channels; "
            f"at most {max(held)} channels held")


def health_probe(port, seconds, out):
    """Asks /health one request after another for `seconds` and sends the
    latencies (ms) back through `out`; a process of its own, so the
    attack's own sockets never hold the probe up."""
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            http(port, "GET", "/health", timeout=10)
        except OSError:
            pass
        latencies.append((time.monotonic() - t0) * 1000)
    out.send(latencies)
    out.close()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


class ReplayReader:
    """Reads one resumer's stream whole: the welcome, then every frame with
    an offset, which must follow each other from `since + 1`."""

    def __init__(self, sock, since):
        self.sock, self.next, self.buf = sock, since + 1, bytearray()
        self.upgraded = False
        self.replayed = None
        self.broken = None

    def feed(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.broken = bytes(self.buf[:40]).decode(errors="replace")
            del self.buf[:end + 4]
            self.upgraded = True
        at = 0
        while len(self.buf) - at >= 2:
            n, start = self.buf[at + 1] & 0x7F, at + 2
            if n == 126:
                n, start = int.from_bytes(self.buf[at + 2:at + 4], "big"), at + 4
            elif n == 127:
                n, start = int.from_bytes(self.buf[at + 2:at + 10], "big"), at + 10
            if len(self.buf) < start + n or start > len(self.buf):
                break
            opcode, payload = self.buf[at] & 0x0F, bytes(self.buf[start:start + n][-40:])
            head = bytes(self.buf[start:start + min(n, 400)])
            at = start + n
            if opcode == 8:
                self.broken = self.broken or f"closed {int.from_bytes(head[:2], 'big')}"
            elif self.replayed is None:
                m = re.search(rb'"replayed":(\d+)', head)
                self.replayed = int(m.group(1)) if m else -1
            else:
                m = re.search(rb'"offset":(\d+)\}$', payload)
                if m and int(m.group(1)) != self.next:
                    self.broken = self.broken or f"offset {m.group(1).decode()} after {self.next - 1}"
                self.next += 1 if m else 0
        del self.buf[:at]

    def complete(self, last):
        return self.broken is None and self.next == last + 1


def attack_resume_storm(server, seconds):
    """F1/F2: the history holds 1,000 broadcasts of 60 KB; then 2,000
    resumes from offset 0 arrive at once (all connected first, then every
    upgrade sent in one go). Ten of them read their whole replay and check
    it; the rest read nothing. /health is asked all along from a process of
    its own; reported: its worst and 99th-percentile latency, how many
    readers got their replay whole and in order, slow consumers dropped,
    and messages replayed."""
    import multiprocessing
    import selectors
    body = json.dumps({"message": "r" * 60000}).encode()
    for _ in range(1000):
        http(server.port, "POST", "/broadcast", body)
    first, rest = upgrade(server.port)
    while b"epoch" not in rest:
        rest += first.recv(4096)
    epoch = re.search(rb'"epoch":"([^"]+)"', rest).group(1).decode()
    last = int(re.search(rb'"offset":(\d+)', rest).group(1))
    first.close()
    socks = []
    for _ in range(2000):
        try:
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        except OSError:
            break
    here, there = multiprocessing.Pipe(duplex=False)
    probe = multiprocessing.Process(target=health_probe, args=(server.port, seconds, there))
    probe.start()
    time.sleep(0.2)  # the probe's first answers show the server at rest
    # The readers read from the moment their upgrade is sent, as a client
    # that wants its replay does.
    readers = {s: ReplayReader(s, 0) for s in socks[:10]}
    sel = selectors.DefaultSelector()
    for s in readers:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    end = time.monotonic() + seconds

    def read():
        while time.monotonic() < end and not all(r.complete(last) or r.broken for r in readers.values()):
            for key, _ in sel.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    readers[key.fileobj].feed(data)
                else:
                    sel.unregister(key.fileobj)
    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    for s in socks:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws?since=0&epoch={epoch} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        if s in readers:
            s.setblocking(True)
            s.sendall(request)
            s.setblocking(False)
        else:
            s.sendall(request)
    reading.join()
    latencies = here.recv()
    probe.join()
    sel.close()
    _, metrics_text = http(server.port, "GET", "/metrics")
    close_all(socks)

    def metric(name):
        m = re.search(rb"^" + name.encode() + rb" (\d+)", metrics_text, re.M)
        return int(m.group(1)) if m else -1
    whole = sum(r.complete(last) for r in readers.values())
    broken = [r.broken or f"at {r.next - 1} of {last}" for r in readers.values() if not r.complete(last)]
    return (f"{len(socks)} resumes of 1,000 × 60 KB at once; /health max {max(latencies, default=0):.0f} ms, "
            f"p99 {percentile(latencies, 0.99):.0f} ms over {len(latencies)} requests; "
            f"{whole}/{len(readers)} readers whole and in order{' ' + str(broken[:2]) if broken else ''}; "
            f"{metric('wsnotify_slow_consumers_dropped_total')} slow consumers dropped, "
            f"{metric('wsnotify_messages_replayed_total')} messages replayed")


ATTACKS = [
    ("chat_flood_nonreaders", ["--workers", "2"], attack_chat_flood_nonreaders),
    ("cross_worker_flood", ["--workers", "2"], attack_cross_worker_flood),
    ("small_chat_flood", [], attack_small_chat_flood),
    ("history_flood", [], attack_history_flood),
    ("unfinished_frames", [], attack_unfinished_frames),
    ("http_bodies", [], attack_http_bodies),
    ("unread_answers", [], attack_unread_answers),
    ("publish_storm", [], attack_publish_storm),
    ("resume_storm", ["--max-history-bytes", str(64 * MIB)], attack_resume_storm),
    ("channel_flood", [], attack_channel_flood),
]


def read_all(socks, seconds):
    """Reads every socket until none has had anything for `seconds`."""
    import selectors
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        for key, _ in sel.select(timeout=0.1):
            try:
                if key.fileobj.recv(1 << 16):
                    quiet_since = time.monotonic()
            except OSError:
                pass
    sel.close()


def calibrate(binary):
    """The base (a started server with no client), the cost of an idle
    connection, and the cost of a connection that has been used: it got
    broadcasts in bursts, sent a chat, read everything and fell quiet (its
    queue's ring keeps the capacity a burst gave it)."""
    server = Server(binary, [])
    time.sleep(0.5)
    base = server.rss()
    socks = many(server.port, 2000)
    time.sleep(1)
    idle = (server.rss() - base) / max(len(socks), 1)
    body = json.dumps({"message": "c" * 1000}).encode()
    for _ in range(200):
        http(server.port, "POST", "/broadcast", body)
    chat = masked(1, json.dumps({"type": "chat", "message": "hi"}).encode())
    for s in socks[:20]:
        s.sendall(chat)
    read_all(socks, 1.0)
    used = (server.rss() - base) / max(len(socks), 1)
    close_all(socks)
    server.stop()
    print(f"base RSS {base / MIB:.1f} MiB; {idle:.0f} bytes per idle connection, "
          f"{used:.0f} bytes per used connection ({len(socks)} connected)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/wsnotify")
    ap.add_argument("--small", action="store_true", help="small explicit bounds instead of the defaults")
    ap.add_argument("--only", nargs="*", help="attack names to run")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--calibrate", action="store_true", help="measure the base and the cost of an idle connection")
    opts = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 12000), hard))
    if opts.calibrate:
        calibrate(opts.bin)
        return 0
    defaults = defaults_from_help(opts.bin)
    rows = []
    failed = False
    for name, extra, attack in ATTACKS:
        if opts.only and name not in opts.only:
            continue
        args = extra + (small_beside(extra) if opts.small else [])
        server = Server(opts.bin, args)
        try:
            what = attack(server, opts.seconds)
            time.sleep(0.5)
            peak = server.peak()
        finally:
            server.stop()
        limit = bound(args, defaults)
        ok = peak <= limit
        failed |= not ok
        rows.append((name, " ".join(args) or "defaults", what, peak, limit, ok))
        print(f"{name}: peak {peak / MIB:.1f} MiB, bound {limit / MIB:.1f} MiB, "
              f"{'within' if ok else 'OVER'} ({what})", flush=True)
    print()
    print("| attack | options | what it did | peak RSS (MiB) | bound (MiB) | within |")
    print("|---|---|---|---|---|---|")
    for name, args, what, peak, limit, ok in rows:
        print(f"| {name} | {args} | {what} | {peak / MIB:.1f} | {limit / MIB:.1f} | {'yes' if ok else 'NO'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
