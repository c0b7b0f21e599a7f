//! The client side of RFC 6455 framing: frames we send are always masked
//! (a fresh random key per frame); frames the server sends are decoded in
//! place and checked strictly. No I/O here.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message the decoder accepts (a guard for the generator's own
/// memory; the server's messages are far smaller).
pub const MAX_MESSAGE: usize = 16 << 20;

/// xorshift64*: cheap randomness for mask keys, handshake keys and seeds.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::new(t ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn mask(&mut self) -> [u8; 4] {
        ((self.next_u64() >> 32) as u32).to_ne_bytes()
    }
}

/// XORs `buf` with the 4-byte key, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Every chunk was 8 bytes long, so the remainder starts on key[0].
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Appends a masked, final frame to `out` whose payload `fill` writes into
/// the `len` bytes it is given (so a payload can be generated in place).
pub fn encode_with(
    out: &mut Vec<u8>,
    opcode: u8,
    len: usize,
    key: [u8; 4],
    fill: impl FnOnce(&mut [u8]),
) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.resize(start + len, 0);
    fill(&mut out[start..]);
    apply_mask(&mut out[start..], key);
}

/// Appends a masked, final frame carrying `payload`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    encode_with(out, opcode, payload.len(), key, |dst| {
        dst.copy_from_slice(payload)
    });
}

/// Appends a masked Close frame with a status code and reason.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, key: [u8; 4]) {
    let len = 2 + reason.len();
    encode_with(out, OP_CLOSE, len, key, |dst| {
        dst[..2].copy_from_slice(&code.to_be_bytes());
        dst[2..].copy_from_slice(reason.as_bytes());
    });
}

/// A violation of RFC 6455 by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    ReservedBits,
    MaskedByServer,
    UnknownOpcode(u8),
    ControlTooLong(usize),
    ControlFragmented,
    NonMinimalLength,
    LengthTooLarge,
    UnexpectedContinuation,
    ExpectedContinuation,
    InvalidUtf8,
    CloseOneByte,
    InvalidCloseCode(u16),
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::ReservedBits => write!(f, "reserved bits set"),
            ProtoError::MaskedByServer => write!(f, "server frame is masked"),
            ProtoError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            ProtoError::ControlTooLong(n) => write!(f, "control frame of {n} bytes"),
            ProtoError::ControlFragmented => write!(f, "fragmented control frame"),
            ProtoError::NonMinimalLength => write!(f, "payload length not minimally encoded"),
            ProtoError::LengthTooLarge => write!(f, "message too large"),
            ProtoError::UnexpectedContinuation => write!(f, "continuation without a message"),
            ProtoError::ExpectedContinuation => {
                write!(f, "new data frame inside a fragmented message")
            }
            ProtoError::InvalidUtf8 => write!(f, "invalid UTF-8 in a text message or close reason"),
            ProtoError::CloseOneByte => write!(f, "close frame with a 1-byte payload"),
            ProtoError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
        }
    }
}

/// A complete message (or control frame) from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Close(Option<u16>, &'a [u8]),
    /// A text message compressed with permessage-deflate (RSV1), whole in
    /// one frame: its raw-deflate payload.
    Deflated(&'a [u8]),
}

/// What one decoding step found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The next frame is not complete; it is `need` bytes long in all (or
    /// at least `need`, while its header is incomplete).
    Incomplete { need: usize },
    /// A non-final fragment of `consumed` bytes, kept for reassembly.
    Fragment { consumed: usize },
    /// A frame of `consumed` bytes that completed a message.
    Msg { consumed: usize, msg: Msg<'a> },
}

/// Per-connection decoder state: only a fragmented message in progress.
#[derive(Default)]
pub struct Decoder {
    /// permessage-deflate was negotiated: RSV1 may mark a compressed
    /// message (sent whole in one frame by the servers measured).
    pub deflate: bool,
    /// Opcode of the fragmented message in progress, 0 when none.
    frag_op: u8,
    /// Its payload so far; allocated only if the server ever fragments.
    frag: Vec<u8>,
    /// `frag` was handed out as a finished message and is cleared next step.
    frag_done: bool,
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl Decoder {
    /// Decodes one frame from the start of `buf`, which holds unmasked
    /// server bytes. Payloads are borrowed from `buf` (or, for a reassembled
    /// message, from the decoder): nothing is copied for a single frame.
    pub fn step<'a>(&'a mut self, buf: &'a [u8]) -> Result<Step<'a>, ProtoError> {
        if self.frag_done {
            self.frag.clear();
            self.frag_done = false;
        }
        if buf.len() < 2 {
            return Ok(Step::Incomplete { need: 2 });
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let deflated = self.deflate && b0 & 0x40 != 0 && fin && opcode == OP_TEXT;
        if b0 & 0x70 != 0 && !deflated {
            return Err(ProtoError::ReservedBits);
        }
        if b1 & 0x80 != 0 {
            return Err(ProtoError::MaskedByServer);
        }
        if !matches!(
            opcode,
            OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(ProtoError::UnknownOpcode(opcode));
        }
        let control = opcode >= 0x8;
        let len7 = (b1 & 0x7F) as usize;
        if control {
            if !fin {
                return Err(ProtoError::ControlFragmented);
            }
            if len7 > 125 {
                return Err(ProtoError::ControlTooLong(len7));
            }
        }
        let (header, len) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(Step::Incomplete { need: 4 });
                }
                let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                if len < 126 {
                    return Err(ProtoError::NonMinimalLength);
                }
                (4, len)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(Step::Incomplete { need: 10 });
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len <= 0xFFFF {
                    return Err(ProtoError::NonMinimalLength);
                }
                if len > MAX_MESSAGE as u64 {
                    return Err(ProtoError::LengthTooLarge);
                }
                (10, len as usize)
            }
            n => (2, n),
        };
        let total = header + len;
        if buf.len() < total {
            return Ok(Step::Incomplete { need: total });
        }
        let payload = &buf[header..total];
        let consumed = total;
        let msg = match opcode {
            OP_CONT => {
                if self.frag_op == 0 {
                    return Err(ProtoError::UnexpectedContinuation);
                }
                if self.frag.len() + payload.len() > MAX_MESSAGE {
                    return Err(ProtoError::LengthTooLarge);
                }
                self.frag.extend_from_slice(payload);
                if !fin {
                    return Ok(Step::Fragment { consumed });
                }
                let op = std::mem::replace(&mut self.frag_op, 0);
                self.frag_done = true;
                if op == OP_TEXT {
                    if std::str::from_utf8(&self.frag).is_err() {
                        return Err(ProtoError::InvalidUtf8);
                    }
                    Msg::Text(&self.frag)
                } else {
                    Msg::Binary(&self.frag)
                }
            }
            OP_TEXT | OP_BINARY => {
                if self.frag_op != 0 {
                    return Err(ProtoError::ExpectedContinuation);
                }
                if !fin {
                    self.frag_op = opcode;
                    self.frag.clear();
                    self.frag.extend_from_slice(payload);
                    return Ok(Step::Fragment { consumed });
                }
                if deflated {
                    Msg::Deflated(payload)
                } else if opcode == OP_TEXT {
                    if std::str::from_utf8(payload).is_err() {
                        return Err(ProtoError::InvalidUtf8);
                    }
                    Msg::Text(payload)
                } else {
                    Msg::Binary(payload)
                }
            }
            OP_CLOSE => match payload.len() {
                0 => Msg::Close(None, &[]),
                1 => return Err(ProtoError::CloseOneByte),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !valid_close_code(code) {
                        return Err(ProtoError::InvalidCloseCode(code));
                    }
                    let reason = &payload[2..];
                    if std::str::from_utf8(reason).is_err() {
                        return Err(ProtoError::InvalidUtf8);
                    }
                    Msg::Close(Some(code), reason)
                }
            },
            OP_PING => Msg::Ping(payload),
            _ => Msg::Pong(payload),
        };
        Ok(Step::Msg { consumed, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked frame as a server sends it.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(len as u8);
        } else if len <= 0xFFFF {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// Decodes a masked client frame: (fin, opcode, unmasked payload, length).
    fn unmask_client(frame: &[u8]) -> (bool, u8, Vec<u8>, usize) {
        assert!(frame[1] & 0x80 != 0, "client frame must be masked");
        let (len, mut pos) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&frame[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let key = [frame[pos], frame[pos + 1], frame[pos + 2], frame[pos + 3]];
        pos += 4;
        let payload: Vec<u8> = frame[pos..pos + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        (frame[0] & 0x80 != 0, frame[0] & 0x0F, payload, pos + len)
    }

    fn one(buf: &[u8]) -> Result<Step<'_>, ProtoError> {
        // A leaked decoder keeps the borrow simple in tests.
        let dec = Box::leak(Box::new(Decoder::default()));
        dec.step(buf)
    }

    #[test]
    fn encodes_masked_frames_of_every_length_class() {
        let mut rng = Rng::new(7);
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut out = Vec::new();
            let key = rng.mask();
            encode(&mut out, OP_TEXT, &payload, key);
            let (fin, op, got, total) = unmask_client(&out);
            assert!(fin);
            assert_eq!(op, OP_TEXT);
            assert_eq!(got, payload, "len {len}");
            assert_eq!(total, out.len());
            let header = if len < 126 {
                2
            } else if len <= 0xFFFF {
                4
            } else {
                10
            };
            assert_eq!(out.len(), header + 4 + len);
        }
    }

    #[test]
    fn mask_matches_bytewise_xor_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn mask_keys_vary() {
        let mut rng = Rng::new(1);
        let a = rng.mask();
        let b = rng.mask();
        assert_ne!(a, b);
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let mut out = Vec::new();
        encode_close(&mut out, 1000, "bye", [1, 2, 3, 4]);
        let (fin, op, payload, _) = unmask_client(&out);
        assert!(fin);
        assert_eq!(op, OP_CLOSE);
        assert_eq!(payload, b"\x03\xe8bye");
    }

    #[test]
    fn decodes_text_in_place() {
        let f = server_frame(true, OP_TEXT, b"hello");
        assert_eq!(
            one(&f),
            Ok(Step::Msg {
                consumed: 7,
                msg: Msg::Text(b"hello")
            })
        );
    }

    #[test]
    fn reports_incomplete_frames_with_the_bytes_needed() {
        let f = server_frame(true, OP_TEXT, &[b'a'; 300]);
        assert_eq!(one(&f[..1]), Ok(Step::Incomplete { need: 2 }));
        assert_eq!(one(&f[..3]), Ok(Step::Incomplete { need: 4 }));
        assert_eq!(one(&f[..100]), Ok(Step::Incomplete { need: 304 }));
        let big = server_frame(true, OP_BINARY, &vec![0; 70000]);
        assert_eq!(one(&big[..9]), Ok(Step::Incomplete { need: 10 }));
        assert_eq!(one(&big[..10]), Ok(Step::Incomplete { need: 70010 }));
        assert!(matches!(
            one(&big),
            Ok(Step::Msg {
                consumed: 70010,
                msg: Msg::Binary(_)
            })
        ));
    }

    #[test]
    fn reassembles_fragments_with_interleaved_control_frames() {
        let mut buf = server_frame(false, OP_TEXT, b"he");
        buf.extend(server_frame(true, OP_PING, b"p"));
        buf.extend(server_frame(false, OP_CONT, "llo ".as_bytes()));
        buf.extend(server_frame(true, OP_CONT, "wörld".as_bytes()));
        buf.extend(server_frame(true, OP_TEXT, b"next"));
        let mut dec = Decoder::default();
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            match dec.step(&buf[pos..]).unwrap() {
                Step::Fragment { consumed } => pos += consumed,
                Step::Msg { consumed, msg } => {
                    pos += consumed;
                    seen.push(format!("{msg:?}"));
                }
                Step::Incomplete { .. } => panic!("incomplete"),
            }
        }
        assert_eq!(
            seen,
            vec![
                format!("{:?}", Msg::Ping(b"p")),
                format!("{:?}", Msg::Text("hello wörld".as_bytes())),
                format!("{:?}", Msg::Text(b"next")),
            ]
        );
    }

    #[test]
    fn utf8_is_checked_across_fragment_boundaries() {
        // "ö" split over two fragments is valid.
        let mut buf = server_frame(false, OP_TEXT, &[0xC3]);
        buf.extend(server_frame(true, OP_CONT, &[0xB6]));
        let mut dec = Decoder::default();
        let Step::Fragment { consumed } = dec.step(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(
            dec.step(&buf[consumed..]),
            Ok(Step::Msg {
                consumed: 3,
                msg: Msg::Text("ö".as_bytes())
            })
        );
        let mut dec = Decoder::default();
        let mut bad = server_frame(false, OP_TEXT, &[0xC3]);
        bad.extend(server_frame(true, OP_CONT, b"x"));
        let Step::Fragment { consumed } = dec.step(&bad).unwrap() else {
            panic!()
        };
        assert_eq!(dec.step(&bad[consumed..]), Err(ProtoError::InvalidUtf8));
    }

    #[test]
    fn rejects_protocol_violations() {
        let cases: Vec<(Vec<u8>, ProtoError)> = vec![
            (vec![0x81 | 0x40, 0], ProtoError::ReservedBits),
            (vec![0x81 | 0x10, 0], ProtoError::ReservedBits),
            (vec![0x81, 0x80, 0, 0, 0, 0], ProtoError::MaskedByServer),
            (vec![0x83, 0], ProtoError::UnknownOpcode(3)),
            (vec![0x8B, 0], ProtoError::UnknownOpcode(0xB)),
            (vec![0x09, 0], ProtoError::ControlFragmented),
            (vec![0x89, 126, 0, 126], ProtoError::ControlTooLong(126)),
            (vec![0x81, 126, 0, 5], ProtoError::NonMinimalLength),
            (
                vec![0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                ProtoError::NonMinimalLength,
            ),
            (
                vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtoError::LengthTooLarge,
            ),
            (vec![0x80, 1, b'x'], ProtoError::UnexpectedContinuation),
            (
                server_frame(true, OP_TEXT, &[0xFF]),
                ProtoError::InvalidUtf8,
            ),
            (server_frame(true, OP_CLOSE, &[3]), ProtoError::CloseOneByte),
            (
                server_frame(true, OP_CLOSE, &1005u16.to_be_bytes()),
                ProtoError::InvalidCloseCode(1005),
            ),
            (
                server_frame(true, OP_CLOSE, &999u16.to_be_bytes()),
                ProtoError::InvalidCloseCode(999),
            ),
            (
                server_frame(true, OP_CLOSE, &[0x03, 0xE8, 0xC0]),
                ProtoError::InvalidUtf8,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(one(&bytes), Err(want.clone()), "{bytes:x?}");
        }
        // A new data frame while a fragmented one is open.
        let mut buf = server_frame(false, OP_TEXT, b"a");
        buf.extend(server_frame(true, OP_TEXT, b"b"));
        let mut dec = Decoder::default();
        let Step::Fragment { consumed } = dec.step(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(
            dec.step(&buf[consumed..]),
            Err(ProtoError::ExpectedContinuation)
        );
    }

    #[test]
    fn close_frames_decode_code_and_reason() {
        assert_eq!(
            one(&server_frame(true, OP_CLOSE, &[])),
            Ok(Step::Msg {
                consumed: 2,
                msg: Msg::Close(None, &[])
            })
        );
        assert_eq!(
            one(&server_frame(true, OP_CLOSE, b"\x03\xe9going")),
            Ok(Step::Msg {
                consumed: 9,
                msg: Msg::Close(Some(1001), b"going")
            })
        );
    }
}
