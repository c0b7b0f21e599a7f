//! What a client must have read: the wire rules (`wire.rs`) for every
//! connection and, for a `/ws` client, the notification protocol: the
//! welcome first, every text frame a JSON object with a `type` and a
//! `time`, and the broadcast stream in order: the messages with an
//! `offset` come one after the other from where the welcome says the
//! client stands, with no gap and no repeat (without Redis every worker
//! hands out every offset, so a client misses none while it is one).

use std::sync::OnceLock;

use serde_json::Value;
use wsnotify::proto::http::{body_length, parse_head, BodyLength, Head};

use super::socket::Socket;
use crate::wire::{self, Frame, Received};

/// The Close frame of a slow-consumer drop: code 1008, "slow consumer".
pub const SLOW_CONSUMER_CLOSE: &[u8] = b"\x88\x0f\x03\xf0slow consumer";

/// What the connection's client read, checked; `cut` allows the last
/// response or frame to stop short (the connection was let go with bytes
/// the client had not taken).
pub fn read(socket: &Socket, cut: bool) -> Received {
    let mut stream = &socket.received[..];
    if skips_known_bugs() {
        stream = without_known_bug(stream);
    }
    let received = wire::read(stream, cut);
    if received.upgraded() {
        let upgrade = received.responses.len() - 1;
        if answered_path(&socket.sent, upgrade).as_deref() == Some("/ws") {
            notify_client(&received.frames);
        }
    }
    received
}

/// `WSNOTIFY_FUZZ_KNOWN_BUGS=skip` steps around the server bug the target
/// found (fuzz/README.md, finding 1), so a run can look for others.
fn skips_known_bugs() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var("WSNOTIFY_FUZZ_KNOWN_BUGS").as_deref() == Ok("skip"))
}

/// Finding 1: a client dropped as a slow consumer before its `101` went
/// out gets the drop's Close frame where its `101` was due, as much of it
/// as its socket took. Such a stream (no `101`, ending in that frame or
/// its start) is checked without it.
fn without_known_bug(stream: &[u8]) -> &[u8] {
    if stream.windows(12).any(|w| w == b"HTTP/1.1 101") {
        return stream;
    }
    (1..=SLOW_CONSUMER_CLOSE.len())
        .rev()
        .find_map(|n| stream.strip_suffix(&SLOW_CONSUMER_CLOSE[..n]))
        .unwrap_or(stream)
}

/// Whether the server may have had bytes for it when it let it go: only
/// when the client did not always take everything, or its socket failed.
pub fn may_be_cut(socket: &Socket) -> bool {
    socket.ever_limited || socket.broken
}

/// The path of the request that final response number `index` answered:
/// each complete request gets one, in order (the errors that answer
/// anything else close the connection, so nothing follows them).
fn answered_path(sent: &[u8], index: usize) -> Option<String> {
    let mut rest = sent;
    for i in 0.. {
        let Head::Complete { request, len } = parse_head(rest) else {
            return None;
        };
        let BodyLength::Fixed(body) = body_length(&request) else {
            return None;
        };
        if i == index {
            return Some(request.path);
        }
        rest = rest.get(len + body..)?;
    }
    None
}

fn notify_client(frames: &[Frame]) {
    let Some(first) = frames.first() else {
        return;
    };
    assert_eq!(first.opcode, 0x1, "a /ws client's first frame is not text");
    let welcome = json(first);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let offset = welcome["offset"]
        .as_u64()
        .expect("a welcome with an offset");
    let replayed = match welcome["recovered"] {
        Value::Bool(true) => welcome["replayed"].as_u64().expect("replayed"),
        _ => 0,
    };
    let mut next = offset + 1 - replayed;
    for frame in frames[1..].iter().filter(|f| f.opcode == 0x1) {
        let message = json(frame);
        assert_ne!(message["type"], "welcome", "a second welcome");
        if let Some(offset) = message.get("offset") {
            assert_eq!(
                offset.as_u64(),
                Some(next),
                "offset {offset} where {next} was due: {message}"
            );
            next += 1;
        }
    }
}

fn json(frame: &Frame) -> Value {
    let value: Value = serde_json::from_slice(&frame.payload)
        .unwrap_or_else(|e| panic!("a /ws text frame that is not JSON ({e})"));
    assert!(value["type"].is_string(), "no type: {value}");
    assert!(value["time"].is_string(), "no time: {value}");
    value
}
