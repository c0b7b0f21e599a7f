//! What a client reads from the server, checked as it reads it: HTTP/1.1
//! responses, then, after a `101`, server frames. Shared by the in-memory
//! targets (`memory.rs` for one connection, `node.rs` for whole workers).
//!
//! A violation panics: known statuses with their reason phrases, a
//! `Content-Length` on every final response and a body of that length (none
//! for HEAD), nothing after `Connection: close`; frames with FIN set, no
//! mask, RSV bits clear, the shortest length encoding, known opcodes,
//! control frames of at most 125 bytes, text in UTF-8, Close payloads of 0
//! or 2+ bytes with a code the server may send and a UTF-8 reason, nothing
//! after a Close. With `cut` (the connection ended with bytes unsent) the
//! last response or frame may stop short, but what came of it must be the
//! start of one.

use wsnotify::proto::http::Status;

const KNOWN_STATUSES: [u16; 16] = [
    100, 101, 200, 202, 400, 401, 403, 404, 405, 408, 411, 413, 426, 431, 503, 505,
];
const SERVER_CLOSE_CODES: [u16; 7] = [1000, 1001, 1002, 1007, 1008, 1009, 1011];

/// A final response (a `100 Continue` is checked, not kept).
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Everything a client read, in order.
#[derive(Default)]
pub struct Received {
    pub responses: Vec<Response>,
    /// The frames after the `101`, if one came.
    pub frames: Vec<Frame>,
}

impl Received {
    pub fn upgraded(&self) -> bool {
        self.responses.last().is_some_and(|r| r.status == 101)
    }

    pub fn closed_by_frame(&self) -> bool {
        self.frames.last().is_some_and(|f| f.opcode == 0x8)
    }
}

/// Reads a whole stream: responses, then frames after a `101`.
pub fn read(mut out: &[u8], cut: bool) -> Received {
    let mut received = Received::default();
    while !out.is_empty() {
        let Some(end) = find(out, b"\r\n\r\n") else {
            assert!(cut, "an unfinished response head");
            let start = &out[..out.len().min(9)];
            assert!(
                b"HTTP/1.1 ".starts_with(start),
                "not a status line: {:?}",
                String::from_utf8_lossy(out)
            );
            return received;
        };
        let end = end + 4;
        let head = std::str::from_utf8(&out[..end]).expect("a response head that is not UTF-8");
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {head:?}"));
        assert!(KNOWN_STATUSES.contains(&status), "status {status}");
        out = &out[end..];
        if status == 100 {
            assert_eq!(head, "HTTP/1.1 100 Continue\r\n\r\n");
            continue;
        }
        let reason = Status(status).reason();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")),
            "reason phrase of {status}: {head:?}"
        );
        if status == 101 {
            received.responses.push(Response {
                status,
                body: Vec::new(),
            });
            received.frames = read_frames(out, cut);
            return received;
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
        // A HEAD answer has no body: the next response (or the end) follows.
        let head_only = out.is_empty() || (length > 0 && out.starts_with(b"HTTP/1.1 "));
        let mut body = Vec::new();
        if !head_only {
            if out.len() < length {
                assert!(cut, "a body cut short");
                return received;
            }
            body = out[..length].to_vec();
            out = &out[length..];
        }
        if head.contains("\r\nConnection: close\r\n") {
            assert!(out.is_empty(), "bytes after Connection: close");
        }
        received.responses.push(Response { status, body });
    }
    received
}

fn read_frames(mut out: &[u8], cut: bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        check_header(out);
        let complete = frame_len(out).is_some_and(|n| n <= out.len());
        if !complete {
            assert!(cut, "a frame cut short");
            return frames;
        }
        let (b0, b1) = (out[0], out[1]);
        let (len, at) = match b1 & 0x7F {
            126 => {
                let len = usize::from(u16::from_be_bytes([out[2], out[3]]));
                assert!(len >= 126, "a length not in its shortest form");
                (len, 4)
            }
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&out[2..10]);
                let len = u64::from_be_bytes(be) as usize;
                assert!(len > 0xFFFF, "a length not in its shortest form");
                (len, 10)
            }
            n => (usize::from(n), 2),
        };
        let payload = &out[at..at + len];
        out = &out[at + len..];
        let opcode = b0 & 0x0F;
        match opcode {
            0x1 => assert!(
                std::str::from_utf8(payload).is_ok(),
                "text that is not UTF-8"
            ),
            0x9 | 0xA => assert!(len <= 125, "a control frame of {len} bytes"),
            0x8 => {
                check_close(payload);
                assert!(out.is_empty(), "bytes after a Close");
            }
            _ => {}
        }
        frames.push(Frame {
            opcode,
            payload: payload.to_vec(),
        });
    }
    frames
}

/// The first two bytes of a server frame, as far as they came.
fn check_header(out: &[u8]) {
    let b0 = out[0];
    assert!(b0 & 0x80 != 0, "a fragmented server frame");
    assert_eq!(b0 & 0x70, 0, "reserved bits");
    let opcode = b0 & 0x0F;
    assert!(
        matches!(opcode, 0x1 | 0x2 | 0x8 | 0x9 | 0xA),
        "opcode {opcode:#x}"
    );
    if let Some(b1) = out.get(1) {
        assert_eq!(b1 & 0x80, 0, "a masked server frame");
    }
}

fn check_close(payload: &[u8]) {
    let len = payload.len();
    assert!(len <= 125 && len != 1, "a Close payload of {len} bytes");
    if len >= 2 {
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        let echoed = (1000..=4999).contains(&code);
        assert!(
            echoed || SERVER_CLOSE_CODES.contains(&code),
            "close code {code}"
        );
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "a reason that is not UTF-8"
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the frame at the start of `out`, once its header is there.
fn frame_len(out: &[u8]) -> Option<usize> {
    let b1 = *out.get(1)?;
    match b1 & 0x7F {
        126 => Some(4 + usize::from(u16::from_be_bytes([*out.get(2)?, *out.get(3)?]))),
        127 => {
            let mut be = [0; 8];
            be.copy_from_slice(out.get(2..10)?);
            usize::try_from(u64::from_be_bytes(be))
                .ok()?
                .checked_add(10)
        }
        n => Some(2 + usize::from(n)),
    }
}
