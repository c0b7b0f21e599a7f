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
