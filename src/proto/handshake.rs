//! The WebSocket opening handshake, server side (RFC 6455 4.2).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::http::{Request, Response, Status};
use crate::obs::metrics::HandshakeFailure;

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused: the HTTP answer, and a short label
/// for the handshake-failure metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub reason: HandshakeFailure,
    pub message: &'static str,
}

impl Refusal {
    pub fn response(&self) -> Response {
        let response = Response::error(self.status, self.message);
        if self.status == Status::UPGRADE_REQUIRED {
            return response
                .with_header("Sec-WebSocket-Version", "13")
                .with_header("Upgrade", "websocket");
        }
        if self.status == Status::METHOD_NOT_ALLOWED {
            return response.with_header("Allow", "GET");
        }
        response
    }
}

fn refuse(status: Status, reason: HandshakeFailure, message: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        message,
    }
}

/// Checks an upgrade request and returns the `Sec-WebSocket-Accept` value.
pub fn validate(req: &Request) -> Result<String, Refusal> {
    if req.method != "GET" {
        return Err(refuse(
            Status::METHOD_NOT_ALLOWED,
            HandshakeFailure::Method,
            "method not allowed",
        ));
    }
    if req.minor_version < 1 {
        return Err(refuse(
            Status::BAD_REQUEST,
            HandshakeFailure::HttpVersion,
            "WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !req.header_has_token("upgrade", "websocket") {
        return Err(refuse(
            Status::UPGRADE_REQUIRED,
            HandshakeFailure::NotUpgrade,
            "this endpoint needs a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    if !req.header_has_token("connection", "upgrade") {
        return Err(refuse(
            Status::BAD_REQUEST,
            HandshakeFailure::BadConnection,
            "Connection header must contain the upgrade token",
        ));
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(refuse(
            Status::UPGRADE_REQUIRED,
            HandshakeFailure::BadVersion,
            "unsupported WebSocket version (only 13)",
        ));
    }
    let key = req.header("sec-websocket-key").unwrap_or("");
    let decoded_len = BASE64.decode(key).map(|k| k.len()).unwrap_or(0);
    if decoded_len != 16 {
        return Err(refuse(
            Status::BAD_REQUEST,
            HandshakeFailure::BadKey,
            "missing or malformed Sec-WebSocket-Key",
        ));
    }
    Ok(accept_key(key))
}

/// `base64(sha1(key + GUID))`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The 101 answer that completes the upgrade, with the extension agreed on,
/// if any.
pub fn switching_protocols(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let extensions = match extensions {
        Some(value) => format!("Sec-WebSocket-Extensions: {value}\r\n"),
        None => String::new(),
    };
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extensions}Server: wsnotify\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{parse_head, Head};

    const GOOD: &str = "GET /ws HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse_head(text.as_bytes()) {
            Head::Complete { request, .. } => request,
            other => panic!("{other:?}"),
        }
    }

    fn status_of(text: &str) -> u16 {
        validate(&request(text)).unwrap_err().status.0
    }

    #[test]
    fn rfc_example_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            validate(&request(GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn header_values_are_case_insensitive_and_listed() {
        let text = GOOD
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        assert!(validate(&request(&text)).is_ok());
    }

    #[test]
    fn method_must_be_get() {
        let refusal = validate(&request(&GOOD.replace("GET", "POST"))).unwrap_err();
        assert_eq!(refusal.status, Status::METHOD_NOT_ALLOWED);
        assert!(refusal
            .response()
            .headers
            .contains(&("Allow", "GET".to_owned())));
    }

    #[test]
    fn http_1_0_is_refused() {
        assert_eq!(status_of(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
    }

    #[test]
    fn missing_upgrade_is_426_with_version() {
        let refusal = validate(&request(&GOOD.replace("Upgrade: websocket\r\n", ""))).unwrap_err();
        assert_eq!(refusal.status, Status::UPGRADE_REQUIRED);
        assert!(refusal
            .response()
            .headers
            .contains(&("Sec-WebSocket-Version", "13".to_owned())));
        assert_eq!(
            status_of(&GOOD.replace("Upgrade: websocket", "Upgrade: h2c")),
            426
        );
    }

    #[test]
    fn connection_must_contain_upgrade() {
        assert_eq!(
            status_of(&GOOD.replace("Connection: Upgrade", "Connection: keep-alive")),
            400
        );
        assert_eq!(status_of(&GOOD.replace("Connection: Upgrade\r\n", "")), 400);
    }

    #[test]
    fn version_other_than_13_is_426() {
        assert_eq!(status_of(&GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status_of(&GOOD.replace("Sec-WebSocket-Version: 13\r\n", "")),
            426
        );
    }

    #[test]
    fn key_must_decode_to_sixteen_bytes() {
        assert_eq!(
            status_of(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!!")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            400
        );
    }

    #[test]
    fn switching_protocols_carries_accept() {
        let text = String::from_utf8(switching_protocols("abc", None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: abc\r\n"));
        assert!(!text.contains("Extensions"));
        assert!(text.ends_with("\r\n\r\n"));
        let text =
            String::from_utf8(switching_protocols("abc", Some("permessage-deflate"))).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
