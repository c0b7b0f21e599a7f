//! Client input for the connection fuzz targets: frame records encoded as
//! masked client frames, and the generator that splits and masks them.
//! Shared by the loopback target, the in-memory one and its replay test.

use wsnotify::proto::frame::apply_mask;

/// Close codes the records pick from: valid, reserved and undefined ones.
const CLOSE_CODES: [u16; 20] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1015, 1016, 999, 0, 2999,
    3000, 4999, 5000, 65535,
];

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Encodes the input as records, each a well-formed masked client frame:
///
/// - `r0`: bits 0-3 pick the opcode (mostly Text, Binary and Continuation,
///   then Ping, Pong and Close; 15 is a raw record: a length byte and that
///   many bytes sent as they are), bits 4-5 both set clear FIN, bit 6 takes
///   the length from two bytes (mod 9000, past `max_message_bytes`) instead
///   of one (0-127: control frames over 125 bytes included), bit 7 puts a
///   code from `CLOSE_CODES` (picked by the next byte) in front of a Close
///   payload and uses the 8-byte length encoding for other frames;
/// - the payload is the next bytes of the input (with a two-byte length, only
///   as many as one more byte says), repeated up to the length (`a` when
///   there are none).
pub fn encode_records(input: &[u8], cap: usize, rng: &mut Rng) -> Vec<u8> {
    const OPCODES: [u8; 15] = [1, 1, 1, 1, 2, 2, 0, 0, 0, 9, 9, 10, 8, 8, 1];
    let mut out = Vec::new();
    let mut rest = input;
    let take_byte = |rest: &mut &[u8]| -> u8 {
        let Some((&b, tail)) = rest.split_first() else {
            return 0;
        };
        *rest = tail;
        b
    };
    while let Some((&r0, tail)) = rest.split_first() {
        if out.len() >= cap {
            break;
        }
        rest = tail;
        let kind = usize::from(r0 & 0x0F);
        if kind == 15 {
            let n = usize::from(take_byte(&mut rest)).min(rest.len());
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            continue;
        }
        let opcode = OPCODES[kind];
        let fin = r0 & 0x30 != 0x30;
        let len = if r0 & 0x40 != 0 {
            let hi = take_byte(&mut rest);
            let lo = take_byte(&mut rest);
            usize::from(u16::from_be_bytes([hi, lo])) % 9000
        } else {
            usize::from(take_byte(&mut rest) & 0x7F)
        };
        let mut payload = Vec::with_capacity(len + 2);
        if opcode == 8 && r0 & 0x80 != 0 {
            let code = CLOSE_CODES[usize::from(take_byte(&mut rest)) % CLOSE_CODES.len()];
            payload.extend_from_slice(&code.to_be_bytes());
        }
        // A long payload takes only as many input bytes as the next byte
        // says, so one short input can hold several large frames.
        let n = if r0 & 0x40 != 0 {
            usize::from(take_byte(&mut rest))
        } else {
            len
        };
        let n = n.min(len).min(rest.len());
        let data = &rest[..n];
        rest = &rest[n..];
        payload.extend_from_slice(data);
        let fill: &[u8] = if data.is_empty() { b"a" } else { data };
        // Whole copies of the fill, then its start: slice copies, not a
        // byte loop (the fuzz build instruments every loop comparison).
        let mut missing = len - n;
        while missing > 0 {
            let take = missing.min(fill.len());
            payload.extend_from_slice(&fill[..take]);
            missing -= take;
        }
        let long = r0 & 0x80 != 0 && opcode != 8;
        let mask = (rng.next() as u32).to_ne_bytes();
        client_frame(&mut out, fin, opcode, &payload, mask, long);
    }
    out
}

/// One masked client frame; `long` uses the 64-bit length encoding.
pub fn client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
    long: bool,
) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n <= 125 && !long => out.push(0x80 | n as u8),
        n if n <= 0xFFFF && !long => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// The handshake key every fuzzed upgrade sends (RFC 6455 1.3's example).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The largest chunk a stream is split into, chosen by an input byte.
const MAX_CHUNK: [usize; 10] = [1, 2, 3, 5, 8, 16, 64, 256, 1024, usize::MAX];

/// `MAX_CHUNK` picked by the low six bits of `byte`.
pub fn max_chunk(byte: u8) -> usize {
    MAX_CHUNK[usize::from(byte & 0x3F) % MAX_CHUNK.len()]
}

/// What a fuzzed connection asks for, from the low three bits of the
/// input's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Ws,
    Echo,
    Health,
    Broadcast,
    Raw,
}

impl Path {
    pub fn from_flags(flags: u8) -> Path {
        match flags & 7 {
            0 | 5 => Path::Ws,
            1 | 6 => Path::Echo,
            2 => Path::Health,
            3 => Path::Broadcast,
            _ => Path::Raw,
        }
    }

    /// The request head written first; `body_len` is a broadcast's
    /// `Content-Length`. Empty for raw bytes.
    pub fn head(self, body_len: usize) -> String {
        let upgrade = |path: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        };
        match self {
            Path::Ws => upgrade("/ws"),
            Path::Echo => upgrade("/echo"),
            Path::Health => "GET /health HTTP/1.1\r\nHost: fuzz\r\n\r\n".to_string(),
            Path::Broadcast => format!(
                "POST /broadcast HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {body_len}\r\n\r\n"
            ),
            Path::Raw => String::new(),
        }
    }
}
