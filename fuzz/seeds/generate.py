#!/usr/bin/env python3
"""Writes the checked-in seed corpus: fuzz/seeds/<target>/<name>.

Run from anywhere: python3 fuzz/seeds/generate.py. The output is
deterministic, so re-running it leaves git clean.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(fin, opcode, payload, mask=MASK):
    """A masked client frame, with the shortest length encoding."""
    out = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n <= 125:
        out.append(0x80 | n)
    elif n <= 0xFFFF:
        out.append(0x80 | 126)
        out += struct.pack(">H", n)
    else:
        out.append(0x80 | 127)
        out += struct.pack(">Q", n)
    out += mask
    out += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(out)


# The first two bytes of a frame_decoder input also seed its split points;
# they are still the frame header, so every seed is a real stream.
FRAMES = {
    "text_hello": frame(True, 0x1, b"Hello"),
    "binary": frame(True, 0x2, bytes([0, 1, 2, 0xFF])),
    "fragmented_text_with_ping": frame(False, 0x1, "κό".encode()[:3])
    + frame(True, 0x9, b"p")
    + frame(True, 0x0, "κό".encode()[3:] + b"!"),
    "close_1000_bye": frame(True, 0x8, struct.pack(">H", 1000) + b"bye"),
    "close_empty_then_late_text": frame(True, 0x8, b"") + frame(True, 0x1, b"late"),
    "text_16bit_length": frame(True, 0x1, b"a" * 130),
    "json_subscribe": frame(True, 0x1, b'{"op":"subscribe","topic":"t"}'),
}

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HEADS = {
    "upgrade_ws": (
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ),
    "post_with_body": (
        "POST /broadcast HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n"
        '{"text":"hi!"}\n'
    ),
    "get_status_query": "GET /status?verbose=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "post_chunked": "POST /broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "pipelined_gets": "GET / HTTP/1.1\r\n\r\nGET /status HTTP/1.1\r\n\r\n",
}



# connection: byte 0 picks the path and flags (bits 0-2: 0 /ws, 1 /echo,
# 2 /health, 3 /broadcast, 4 raw; 0x08 records, 0x10 yield between chunks,
# 0x20 lazy reader, 0x40 small receive buffer, 0x80 split the head too),
# byte 1 seeds the split points (bit 7 with 0x40: a 536-byte MSS as well)
# and byte 2 picks the largest chunk (bits 0-5,
# index mod 10 into 1, 2, 3, 5, 8, 16, 64, 256, 1024, whole) and, with bits 6
# and 7 both set, a 2 ms pause before the FIN; the rest follows the head.
WS, ECHO, HEALTH, BROADCAST, RAW = 0, 1, 2, 3, 4
RECORDS, YIELD, LAZY, SMALL_RCVBUF, SPLIT_HEAD = 0x08, 0x10, 0x20, 0x40, 0x80
WHOLE = 9
PAUSE = 0xC0


def conn(flags, split_seed, chunk, rest):
    if isinstance(rest, str):
        rest = rest.encode()
    return bytes([flags, split_seed, chunk]) + rest


def record(kind, data=b"", fin=True, length=None, flag7=False, code_index=None):
    """One record of the connection target's records mode (see
    encode_records in fuzz_targets/connection.rs). kind indexes
    [1, 1, 1, 1, 2, 2, 0, 0, 0, 9, 9, 10, 8, 8, 1]: 0 text, 4 binary,
    6 continuation, 9 ping, 11 pong, 12 close. With a length, the payload
    is data repeated to that many bytes (two-byte length form)."""
    if isinstance(data, str):
        data = data.encode()
    long_len = length is not None
    r0 = kind | (0 if fin else 0x30) | (0x40 if long_len else 0) | (0x80 if flag7 else 0)
    out = bytearray([r0])
    out += struct.pack(">H", length) if long_len else bytes([len(data)])
    if code_index is not None:
        out.append(code_index)
    if long_len:
        out.append(len(data))
    return bytes(out + data)


def raw_record(data):
    return bytes([0x0F, len(data)]) + data


UPGRADE = (
    "GET {} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)
CONNECTION = {
    "ws_messages_close": conn(
        WS, 0x11, WHOLE,
        frame(True, 0x1, b"hello")
        + frame(True, 0x1, b'{"type":"ping"}')
        + frame(True, 0x1, b'{"type":"status_request"}')
        + frame(True, 0x1, b'{"type":"direct","to":"nobody","message":"m"}')
        + frame(True, 0x2, b"\x00\x01")
        + frame(True, 0x9, b"p")
        + frame(True, 0x8, struct.pack(">H", 1000) + b"bye"),
    ),
    "ws_bytewise_no_close": conn(WS | YIELD, 0x22, 0, frame(True, 0x1, b"hi") + frame(True, 0xA, b"")),
    "ws_pause_no_close": conn(WS, 0x23, WHOLE | PAUSE, frame(True, 0x1, b"hi") + frame(True, 0x9, b"")),
    "echo_fragmented_close_3000": conn(
        ECHO, 0x33, 2,
        frame(False, 0x1, "κό".encode()[:3])
        + frame(True, 0x9, b"p")
        + frame(True, 0x0, "κό".encode()[3:] + b"!")
        + frame(True, 0x2, bytes(range(200)))
        + frame(True, 0x8, struct.pack(">H", 3000)),
    ),
    "echo_invalid_utf8": conn(ECHO | SPLIT_HEAD, 0x44, 5, frame(True, 0x1, b"ok\xff")),
    "echo_unmasked": conn(ECHO, 0x55, WHOLE, b"\x81\x02hi"),
    "echo_records": conn(
        ECHO | RECORDS, 0x66, 4,
        record(0, "hello")
        + record(0, "abc", fin=False)
        + record(9, "p")
        + record(6, "def")
        + record(4, b"\x00\xff\x10\x20")
        + record(4, "xyz", length=200, flag7=True)
        + record(11, "")
        + record(12, "bye", flag7=True, code_index=0),
    ),
    "echo_records_too_big": conn(ECHO | RECORDS, 0x77, 7, record(0, "a", length=5000)),
    "echo_records_bad_close_code": conn(ECHO | RECORDS, 0x78, WHOLE, record(12, "", flag7=True, code_index=4)),
    "ws_records_json": conn(
        WS | RECORDS, 0x88, 8,
        record(0, '{"type":"chat","message":"\\u0001x"}')
        + record(0, '{"type":"dance"}')
        + record(0, '"just text"')
        + raw_record(frame(True, 0x1, b"raw"))
        + record(12, "", flag7=True, code_index=3),
    ),
    "ws_lazy_slow_consumer": conn(
        WS | RECORDS | LAZY | SMALL_RCVBUF, 0x99, WHOLE | PAUSE,
        b"".join(record(0, "\x01", length=4000) for _ in range(12)),
    ),
    "health_pipelined": conn(
        HEALTH, 0xAA, 6,
        "GET /status HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.0\r\n\r\n",
    ),
    "broadcast_json": conn(BROADCAST, 0xBB, WHOLE, '{"message":"deploy finished","type":"success"}'),
    "raw_pipelined_upgrade": conn(
        RAW, 0xCC, 3,
        ("GET /health HTTP/1.1\r\n\r\n" + UPGRADE.format("/echo")).encode()
        + frame(True, 0x1, b"after upgrade")
        + frame(True, 0x8, b""),
    ),
    "raw_expect_continue": conn(
        RAW, 0xDD, WHOLE,
        "POST /broadcast HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 30\r\n\r\n{\"message\":",
    ),
    "raw_chunked_and_garbage": conn(
        RAW | YIELD, 0xEE, 1,
        "POST /notify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    "raw_tls_hello": conn(RAW, 0xFF, WHOLE, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
}


# node_memory: 14 configuration bytes (each picks from its table modulo its
# length; see fuzz/harness/node/script.rs), then operations. A connection
# is named by its index among the connections open at that moment.
def node_config(workers=1, echo=False, token=False, origins=False, per_ip=0, queue=7, message=5,
                history=3, total=5, max_conns=3, header=3, ping=0, idle=0,
                notify=0, ttl=1, drain=2):
    """Indexes into the tables: queue [512, 1K, 2K, 4K, 8K, 16K, 64K, 1M],
    message [16, 125, 126, 1K, 4K, 64K], history [0, 1, 3, 100], total
    [1K, 4K, 16K, 64K, 1M, 256M], max_conns [1, 2, 4, 10000], header
    [0.5, 1, 2, 10 s], ping [off, 1, 3, 30 s], idle [off, 2, 5, 75 s],
    notify [off, off, 1, 5 s], ttl [1, 300 s], drain [0, 1, 5, 30, 120 s];
    per_ip [0, 0, 1, 2, 3]."""
    flags = (1 if echo else 0) | (2 if token else 0) | (4 if origins else 0)
    return bytes([workers - 1, flags, per_ip, queue, message, history, total,
                  max_conns, header, ping, idle, notify, ttl, drain])


def accept(node=0, frm=0):
    """frm: 0 127.0.0.1, 1 127.0.0.2, 2 192.0.2.7, 3 ::1."""
    return bytes([0, node, frm])


def raw(conn, data):
    data = data.encode() if isinstance(data, str) else data
    return bytes([2, conn, len(data)]) + data


def frames(conn, records):
    return bytes([3, conn]) + struct.pack(">H", len(records)) + records


CHAT, CHAT_JSON, PING, STATUS_REQUEST, DIRECT, BAD_TYPE = range(6)


def message(conn, kind, arg=0, text=b""):
    """arg: a direct message's worker (bits 0-1) and client number (bits
    2-6), bit 7 another instance; bit 6 two fragments around a Ping."""
    text = text.encode() if isinstance(text, str) else text
    return bytes([5, conn, kind, arg, len(text)]) + text


(WS, RESUME, ECHO_PATH, HEALTH, STATUS, METRICS, HEAD, BROADCAST, NOTIFY,
 INDEX, BROADCAST_QUERY, BAD_UPGRADE) = range(12)
CLOSE, HTTP10, EXPECT, CUT, TOKEN, WRONG_TOKEN, RAW_BODY, ORIGIN = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80


def request(conn, kind, flags=0, arg=0, body=b""):
    body = body.encode() if isinstance(body, str) else body
    return bytes([6, conn, kind, flags, arg, len(body)]) + body


def fin(conn):
    return bytes([8, conn])


NOTHING, EVERYTHING = 0, 3


def room(conn, b):
    """b % 4: 0 nothing, 1 (b >> 2) * 7 + 1 bytes, 2 (b >> 2) * 509 + 1
    bytes, 3 everything."""
    return bytes([9, conn, b])


def fail(conn, on_read=True):
    return bytes([10, conn, 0 if on_read else 1])


def clock(ms=0, s=0):
    return bytes([11, ms // 25 if not s else 128 + s])


DRAIN = bytes([13])


def turn(mask=0):
    return bytes([14, mask])


STATUS_CHECK = bytes([15])


def chats(conn, count, size):
    """`count` text records of `size` bytes each (two-byte length form)."""
    record = bytes([0x40]) + struct.pack(">H", size) + bytes([1]) + b"x"
    return frames(conn, record * count)


NODE = {
    # A /ws client whose socket takes nothing; periodic notifications push
    # its queue past 1 KiB before its 101 is written; dropped as a slow
    # consumer, it still reads the 101 (and its welcome), then the Close
    # (a server bug found by this target, fuzz/README.md).
    "slow_consumer_before_its_101": node_config(queue=1, notify=2)
    + accept(0) + room(0, NOTHING) + request(0, WS) + clock(s=3)
    + room(0, EVERYTHING),
    "two_workers_chat": node_config(workers=2)
    + accept(0) + accept(1)
    + request(0, WS) + request(1, WS)
    + message(0, CHAT, text="hello from zero") + turn()
    + message(1, CHAT_JSON, text="hello from one") + message(1, PING)
    + message(0, STATUS_REQUEST) + turn() + STATUS_CHECK + clock(s=1),
    "resume_replay": node_config(history=3)
    + accept(0) + request(0, WS)
    + message(0, CHAT, text="one") + message(0, CHAT, text="two")
    + message(0, CHAT, text="three") + turn()
    + accept(0) + request(1, RESUME, arg=2)
    + accept(0) + request(2, RESUME, arg=0x80 | 40)
    + accept(0) + request(3, RESUME, arg=0x40)
    + message(0, CHAT, text="four") + turn() + STATUS_CHECK,
    "slow_consumer": node_config(queue=1, total=5)
    + accept(0) + accept(0) + request(0, WS) + request(1, WS) + turn()
    + room(0, NOTHING) + chats(1, 6, 300) + turn()
    + room(0, EVERYTHING) + turn()
    + room(1, 2) + chats(0, 3, 200) + turn() + room(1, EVERYTHING) + turn(),
    "total_queue_shed": node_config(queue=6, total=1)
    + accept(0) + accept(0) + accept(0)
    + request(0, WS) + request(1, WS) + request(2, WS) + turn()
    + room(0, NOTHING) + room(1, NOTHING) + chats(2, 8, 400) + turn()
    + room(1, EVERYTHING) + room(0, EVERYTHING) + STATUS_CHECK,
    "drain_mid_stream": node_config(workers=2, ping=1, idle=2, drain=2, notify=2)
    + accept(0) + accept(1) + accept(1)
    + request(0, WS) + request(1, WS) + request(2, ECHO_PATH) + turn()
    + DRAIN + turn() + message(1, CHAT, text="still here")
    + request(2, HEALTH) + clock(s=3) + message(0, PING) + clock(s=10),
    "http_mix": node_config(workers=2, header=1)
    + accept(0) + request(0, HEALTH) + request(0, STATUS) + request(0, METRICS)
    + request(0, HEAD, arg=1) + request(0, INDEX)
    + request(0, BROADCAST, arg=1, body="deploy finished")
    + request(0, BROADCAST_QUERY, body="query")
    + request(0, BROADCAST, flags=EXPECT | RAW_BODY, body='{"message":1}')
    + accept(1, 2) + request(1, BROADCAST, body="not from loopback")
    + accept(1) + request(2, STATUS, flags=CUT, arg=100) + clock(s=2)
    + accept(0, 3) + raw(2, "GET /health HTTP/1.0\r\n\r\n") + turn(),
    "notify_across_workers": node_config(workers=3)
    + accept(1) + accept(2) + request(0, WS) + request(1, WS) + turn()
    + accept(0) + request(2, NOTIFY, arg=(1 << 2) | 1, body="for 1-1")
    + accept(0) + request(3, NOTIFY, arg=(1 << 2) | 2, body="for 2-1")
    + accept(0) + request(4, NOTIFY, arg=(9 << 2) | 1, body="for nobody")
    + turn() + turn(1) + turn(2) + turn() + STATUS_CHECK,
    "direct_across_workers": node_config(workers=3)
    + accept(0) + accept(1) + accept(2)
    + request(0, WS) + request(1, WS) + request(2, WS) + turn()
    + message(0, DIRECT, arg=(1 << 2) | 1, text="to worker one")
    + message(1, DIRECT, arg=(1 << 2) | 2, text="to worker two")
    + message(2, DIRECT, arg=(7 << 2) | 0, text="to nobody")
    + message(2, DIRECT, arg=0x80 | (1 << 2), text="elsewhere")
    + turn(2) + turn(1) + turn() + turn(),
    "echo_fragments": node_config(echo=True, message=3)
    + accept(0) + request(0, ECHO_PATH) + turn()
    + frames(0, bytes([0x30, 3]) + b"abc" + bytes([9, 1]) + b"p" + bytes([6, 3]) + b"def")
    + frames(0, bytes([4, 4]) + b"\x00\x01\x02\x03")
    + message(0, CHAT, arg=0x40, text="κόσμε")
    + frames(0, bytes([0x40, 0x10, 0x00, 1]) + b"z")
    + accept(0) + request(1, ECHO_PATH) + frames(1, bytes([0x8C, 2, 0]) + b"ok"),
    "limits_per_address_and_capacity": node_config(per_ip=2, max_conns=1)
    + accept(0) + accept(0) + accept(0)
    + request(0, WS) + request(1, WS) + turn()
    + accept(0, 1) + request(2, WS) + turn() + STATUS_CHECK,
    # Open connections are renumbered as others close: #0 fails on read,
    # then #1 is index 0 (fails on its next write, a ping) and #2 index 1.
    "failures_and_fins": node_config(workers=2, ping=1)
    + accept(0) + accept(1) + accept(0)
    + request(0, WS) + request(1, WS) + request(2, HEALTH) + turn()
    + fail(0, on_read=True) + fail(0, on_read=False) + turn()
    + raw(1, "GET /sta") + fin(1) + clock(s=2)
    + accept(1) + request(1, WS) + raw(1, b"\x81\x85\x01\x02") + fin(1)
    + turn() + STATUS_CHECK,
    # An allowed origin (arg even), another one (arg odd), and a token.
    "origins_and_tokens": node_config(echo=True, origins=True, token=True)
    + accept(0) + accept(0) + accept(0)
    + request(0, WS, flags=ORIGIN, arg=0) + request(1, ECHO_PATH, flags=ORIGIN, arg=1)
    + request(2, BROADCAST, flags=TOKEN, body="with the token")
    + request(2, BROADCAST, flags=WRONG_TOKEN, body="with a guess")
    + request(2, BROADCAST, body="without") + turn() + STATUS_CHECK,
    "partial_writes_and_timers": node_config(ping=1, idle=1, header=0, notify=2)
    + accept(0) + request(0, WS) + room(0, 1 | (3 << 2))
    + message(0, CHAT, text="a" * 100) + turn() + clock(ms=250)
    + room(0, 2) + clock(s=1) + room(0, EVERYTHING)
    + accept(0) + request(1, HEALTH) + clock(ms=600) + clock(s=3),
}


def write(target, seeds, root=HERE):
    directory = os.path.join(root, target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


write("frame_decoder", FRAMES)
write("request_head", HEADS)
write("connection", CONNECTION)
write("node_memory", NODE)
