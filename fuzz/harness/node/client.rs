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

/// The request of kind `kind` (modulo 12), with `flags`: bit 0
/// `Connection: close`, bit 1 HTTP/1.0, bit 2 `Expect: 100-continue`,
/// bit 3 only a prefix is sent (the rest never comes), bit 4 the right
/// bearer token, bit 5 a wrong one, bit 6 a POST body sent as it is rather
/// than in JSON.
pub fn request(
    kind: u8,
    flags: u8,
    arg: u8,
    body: &[u8],
    instance: &str,
    stream: &Stream,
) -> Vec<u8> {
    let (method, target, body) = match kind % 12 {
        0 => ("GET", "/ws".to_string(), Vec::new()),
        1 => ("GET", resume_target(arg, stream), Vec::new()),
        2 => ("GET", "/echo".to_string(), Vec::new()),
        3 => ("GET", "/health".to_string(), Vec::new()),
        4 => ("GET", "/status".to_string(), Vec::new()),
        5 => ("GET", "/metrics".to_string(), Vec::new()),
        6 => (
            "HEAD",
            ["/", "/health", "/status"][usize::from(arg % 3)].to_string(),
            Vec::new(),
        ),
        7 => (
            "POST",
            "/broadcast".to_string(),
            publish_body(flags, arg, body, None),
        ),
        8 => {
            let to = client_id(instance, arg);
            (
                "POST",
                "/notify".to_string(),
                publish_body(flags, arg, body, Some(&to)),
            )
        }
        9 => ("GET", "/".to_string(), Vec::new()),
        10 => {
            let query: String = text(body)
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            ("POST", format!("/broadcast?message={query}"), Vec::new())
        }
        _ => ("GET", "/ws".to_string(), Vec::new()),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.{}\r\nHost: fuzz\r\n",
        if flags & 2 != 0 { 0 } else { 1 }
    );
    if matches!(kind % 12, 0..=2) {
        head.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        ));
    } else if kind % 12 == 11 {
        // An upgrade the handshake refuses: no key, an unknown version.
        head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n");
    }
    if flags & 1 != 0 {
        head.push_str("Connection: close\r\n");
    }
    if flags & 0x10 != 0 {
        head.push_str("Authorization: Bearer secret\r\n");
    } else if flags & 0x20 != 0 {
        head.push_str("Authorization: Bearer guess\r\n");
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if flags & 4 != 0 {
            head.push_str("Expect: 100-continue\r\n");
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    if flags & 8 != 0 {
        bytes.truncate(usize::from(arg) * bytes.len() / 256);
    }
    bytes
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
    if flags & 0x40 != 0 {
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
        // Split on a character boundary would be kinder; a split inside one
        // is still a valid message once the fragments are joined.
        let half = payload.len() / 2;
        client_frame(&mut out, false, 0x1, &payload[..half], mask, false);
        client_frame(&mut out, true, 0x9, b"mid", mask, false);
        client_frame(&mut out, true, 0x0, &payload[half..], mask, false);
    } else {
        client_frame(&mut out, true, 0x1, payload, mask, false);
    }
    out
}
