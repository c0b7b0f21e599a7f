//! What a client sends for the script's `Request` and `Message`
//! operations: well-formed requests and masked client frames, with the
//! fuzzer choosing the paths, headers, bodies and ids, so inputs reach the
//! routes and messages rather than stopping at a parse error (`Raw` and
//! `Frames` cover the malformed).

use serde_json::json;

use crate::records::{client_frame, KEY};

/// Where the broadcast stream stands, for resumes that can succeed.
pub struct Stream<'a> {
    pub epoch: &'a str,
    pub last: u64,
}

/// A client id of this process's workers (`arg` picks the worker and the
/// sequence number, small so it names clients that exist), or of another
/// instance.
fn client_id(instance: &str, arg: u8) -> String {
    let instance = if arg & 0x80 != 0 {
        "feedface"
    } else {
        instance
    };
    format!("{instance}-{}-{}", arg & 3, (arg >> 2) & 0x1F)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CLOSE: u8 = 1;
const HTTP10: u8 = 2;
const EXPECT: u8 = 4;
const CUT: u8 = 8;
const TOKEN: u8 = 0x10;
const WRONG_TOKEN: u8 = 0x20;
const RAW_BODY: u8 = 0x40;
const ORIGIN: u8 = 0x80;

/// The request of kind `kind` (modulo 12), with `flags`: bit 0
/// `Connection: close`, bit 1 HTTP/1.0, bit 2 `Expect: 100-continue`,
/// bit 3 only a prefix is sent (the rest never comes), bit 4 the right
/// bearer token, bit 5 a wrong one, bit 6 a POST body sent as it is rather
/// than in JSON, bit 7 an `Origin` (`HTTP://FUZZ` when `arg` is even, which
/// an allowed `http://fuzz` admits, another one when it is odd).
pub fn request(
    kind: u8,
    flags: u8,
    arg: u8,
    body: &[u8],
    instance: &str,
    stream: &Stream,
) -> Vec<u8> {
    let kind = kind % 12;
    let (method, target, body) = line_and_body(kind, flags, arg, body, instance, stream);
    let origin = (flags & ORIGIN != 0).then_some(if arg & 1 == 0 {
        "HTTP://FUZZ"
    } else {
        "http://elsewhere"
    });
    let mut bytes = head(kind, method, &target, flags, origin, body.len()).into_bytes();
    bytes.extend_from_slice(&body);
    if flags & CUT != 0 {
        bytes.truncate(usize::from(arg) * bytes.len() / 256);
    }
    bytes
}

fn line_and_body(
    kind: u8,
    flags: u8,
    arg: u8,
    body: &[u8],
    instance: &str,
    stream: &Stream,
) -> (&'static str, String, Vec<u8>) {
    let get = |target: &str| ("GET", target.to_string(), Vec::new());
    match kind {
        0 | 11 => get("/ws"),
        1 => get(&resume_target(arg, stream)),
        2 => get("/echo"),
        3 => get("/health"),
        4 => get("/status"),
        5 => get("/metrics"),
        6 => {
            let target = ["/", "/health", "/status"][usize::from(arg % 3)];
            ("HEAD", target.to_string(), Vec::new())
        }
        7 => {
            let body = publish_body(flags, arg, body, None);
            ("POST", "/broadcast".to_string(), body)
        }
        8 => {
            let body = publish_body(flags, arg, body, Some(&client_id(instance, arg)));
            ("POST", "/notify".to_string(), body)
        }
        9 => get("/"),
        _ => {
            let text = text(body);
            let query: String = text.chars().filter(char::is_ascii_alphanumeric).collect();
            ("POST", format!("/broadcast?message={query}"), Vec::new())
        }
    }
}

fn head(
    kind: u8,
    method: &str,
    target: &str,
    flags: u8,
    origin: Option<&str>,
    body_len: usize,
) -> String {
    let minor = if flags & HTTP10 != 0 { 0 } else { 1 };
    let mut head = format!("{method} {target} HTTP/1.{minor}\r\nHost: fuzz\r\n");
    match kind {
        0..=2 => head.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n"
        )),
        // An upgrade the handshake refuses: no key, an unknown version.
        11 => head
            .push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"),
        _ => {}
    }
    if let Some(origin) = origin {
        head.push_str(&format!("Origin: {origin}\r\n"));
    }
    if flags & CLOSE != 0 {
        head.push_str("Connection: close\r\n");
    }
    if flags & TOKEN != 0 {
        head.push_str("Authorization: Bearer secret\r\n");
    } else if flags & WRONG_TOKEN != 0 {
        head.push_str("Authorization: Bearer guess\r\n");
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
        if flags & EXPECT != 0 {
            head.push_str("Expect: 100-continue\r\n");
        }
    }
    head.push_str("\r\n");
    head
}

/// `/ws?since=..&epoch=..`: `arg` bit 7 takes `since` as it is (0-63,
/// often ahead of the stream), otherwise a few offsets behind the last;
/// bit 6 names an epoch that never was.
fn resume_target(arg: u8, stream: &Stream) -> String {
    let since = if arg & 0x80 != 0 {
        u64::from(arg & 0x3F)
    } else {
        stream.last.saturating_sub(u64::from(arg % 8))
    };
    let epoch = if arg & 0x40 != 0 {
        "0000000000000000"
    } else {
        stream.epoch
    };
    format!("/ws?since={since}&epoch={epoch}")
}

fn publish_body(flags: u8, arg: u8, body: &[u8], to: Option<&str>) -> Vec<u8> {
    if flags & RAW_BODY != 0 {
        return body.to_vec();
    }
    let category = ["info", "success", "warning", "error"][usize::from(arg % 4)];
    let mut publish = json!({ "message": text(body), "type": category });
    if let Some(to) = to {
        publish["client_id"] = to.into();
    }
    if arg & 0x10 != 0 {
        publish["data"] = json!({ "n": arg, "list": [1, 2, 3] });
    }
    publish.to_string().into_bytes()
}

/// A `/ws` message of kind `kind` (modulo 6) as masked client frames; with
/// `arg` bit 6 it is sent in two fragments with a Ping between them.
pub fn message(kind: u8, arg: u8, bytes: &[u8], instance: &str) -> Vec<u8> {
    let said = text(bytes);
    let payload = match kind % 6 {
        0 if said.is_empty() => "hi".to_string(),
        0 => said,
        1 => json!({ "type": "chat", "message": said }).to_string(),
        2 => json!({ "type": "ping" }).to_string(),
        3 => json!({ "type": "status_request" }).to_string(),
        4 => {
            json!({ "type": "direct", "to": client_id(instance, arg), "message": said }).to_string()
        }
        _ => json!({ "type": said }).to_string(),
    };
    let payload = payload.as_bytes();
    let mask = [arg, arg ^ 0x5A, 0x33, 0xC3];
    let mut out = Vec::new();
    if arg & 0x40 != 0 && payload.len() >= 2 {
        // The split may fall inside a UTF-8 character: the server checks the
        // message whole, so it is still a valid one.
        let half = payload.len() / 2;
        client_frame(&mut out, false, 0x1, &payload[..half], mask, false);
        client_frame(&mut out, true, 0x9, b"mid", mask, false);
        client_frame(&mut out, true, 0x0, &payload[half..], mask, false);
    } else {
        client_frame(&mut out, true, 0x1, payload, mask, false);
    }
    out
}
