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


def write(target, seeds):
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


write("frame_decoder", FRAMES)
write("request_head", HEADS)
write("connection", CONNECTION)
