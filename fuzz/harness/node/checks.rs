//! What a client must have read: the wire rules (`wire.rs`) for every
//! connection and, for a `/ws` client, the notification protocol: the
//! welcome first, every text frame a JSON object with a `type` and a
//! `time`, and the broadcast stream in order: the messages with an
//! `offset` come one after the other from where the welcome says the
//! client stands, with no gap and no repeat (without Redis every worker
//! hands out every offset, so a client misses none while it is one).

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
    let received = wire::read(&socket.received, cut);
    if received.upgraded() {
        let upgrade = received.responses.len() - 1;
        if answered_path(&socket.sent, upgrade).as_deref() == Some("/ws") {
            notify_client(&received.frames);
        }
    }
    received
}

/// Where the head of the `101` in `bytes` ends, if one is there.
pub fn end_of_101(bytes: &[u8]) -> Option<usize> {
    let at = bytes.windows(12).position(|w| w == b"HTTP/1.1 101")?;
    let head = bytes[at..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(at + head)
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
