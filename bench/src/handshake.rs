//! The client's opening handshake: the upgrade request and a strict check
//! of the server's 101 answer. No I/O here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::frame::Rng;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A response head longer than this is an error.
pub const MAX_HEAD: usize = 8192;

/// A fresh Sec-WebSocket-Key (16 random bytes, base64) and the accept
/// value the server must answer with.
pub fn new_key(rng: &mut Rng) -> (String, [u8; 28]) {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next_u64().to_ne_bytes());
    raw[8..].copy_from_slice(&rng.next_u64().to_ne_bytes());
    let key = STANDARD.encode(raw);
    let accept = accept_for(&key);
    (key, accept)
}

/// base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2.
pub fn accept_for(key: &str) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let mut out = [0u8; 28];
    let n = STANDARD
        .encode_slice(sha.finalize(), &mut out)
        .expect("28 bytes hold a base64 SHA-1");
    debug_assert_eq!(n, 28);
    out
}

/// What a browser offers: permessage-deflate, any window size.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Appends the upgrade request (with `deflate`, offering permessage-deflate
/// as a browser does).
pub fn write_request(out: &mut Vec<u8>, host_header: &str, path: &str, key: &str, deflate: bool) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host_header.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    if deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(DEFLATE_OFFER.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Checks the server's answer at the start of `buf`: `Ok(None)` while the
/// head is incomplete, `Ok(Some(head_len))` for a valid 101 (frames may
/// follow the head in the same buffer), `Err` for anything else.
#[cfg(test)]
pub fn check_response(buf: &[u8], accept: &[u8; 28]) -> Result<Option<usize>, String> {
    Ok(check_response_offered(buf, accept, false)?.map(|(head, _)| head))
}

/// `check_response` after an offer of permessage-deflate (`offered`):
/// also whether the server accepted it (an answer without the
/// `no_context_takeover` parameters is accepted too; anything else in
/// the header, or an extension not offered, is an error).
pub fn check_response_offered(
    buf: &[u8],
    accept: &[u8; 28],
    offered: bool,
) -> Result<Option<(usize, bool)>, String> {
    let mut deflate = false;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(format!("handshake response head over {MAX_HEAD} bytes"));
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("malformed handshake response: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(format!(
            "handshake answered {} {}",
            code,
            resp.reason.unwrap_or("")
        ));
    }
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= h.value.trim_ascii().eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if accepted {
                return Err("two Sec-WebSocket-Accept headers".into());
            }
            if h.value.trim_ascii() != accept.as_slice() {
                return Err(format!(
                    "wrong Sec-WebSocket-Accept {:?}",
                    String::from_utf8_lossy(h.value)
                ));
            }
            accepted = true;
        } else if offered && name.eq_ignore_ascii_case("sec-websocket-extensions") {
            let value = String::from_utf8_lossy(h.value);
            let mut params = value.split(';').map(str::trim);
            if deflate || params.next() != Some("permessage-deflate") {
                return Err(format!("unexpected extension answer {value:?}"));
            }
            let mut fresh = false;
            for param in params {
                let name = param.split('=').next().unwrap_or("").trim();
                fresh |= name == "server_no_context_takeover";
                if !matches!(
                    name,
                    "server_no_context_takeover"
                        | "client_no_context_takeover"
                        | "server_max_window_bits"
                        | "client_max_window_bits"
                ) {
                    return Err(format!("unexpected permessage-deflate parameter {param:?}"));
                }
            }
            // Each message is inflated alone: no window kept per connection.
            if !fresh {
                return Err(format!(
                    "permessage-deflate without server_no_context_takeover: {value:?}"
                ));
            }
            deflate = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions")
            || name.eq_ignore_ascii_case("sec-websocket-protocol")
        {
            return Err(format!("unrequested {name} in the 101 answer"));
        }
    }
    if !upgrade {
        return Err("101 without Upgrade: websocket".into());
    }
    if !connection {
        return Err("101 without Connection: Upgrade".into());
    }
    if !accepted {
        return Err("101 without Sec-WebSocket-Accept".into());
    }
    Ok(Some((head_len, deflate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        assert_eq!(
            &accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_has_the_upgrade_headers() {
        let mut out = Vec::new();
        write_request(&mut out, "127.0.0.1:80", "/ws", "abc", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: abc\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let mut out = Vec::new();
        write_request(&mut out, "h", "/ws", "abc", true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
    }

    #[test]
    fn an_accepted_offer_is_reported() {
        let accept = accept_for("k");
        let ok = answer(&format!(
            "Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
            std::str::from_utf8(&accept).unwrap()
        ));
        assert_eq!(
            check_response_offered(ok.as_bytes(), &accept, true),
            Ok(Some((ok.len(), true)))
        );
        assert!(
            check_response(ok.as_bytes(), &accept).is_err(),
            "not offered"
        );
        let keeps = answer(&format!(
            "Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
            std::str::from_utf8(&accept).unwrap()
        ));
        assert!(check_response_offered(keeps.as_bytes(), &accept, true).is_err());
    }

    fn answer(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
        )
    }

    #[test]
    fn checks_the_101() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = accept_for(key);
        let good = answer("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n");
        let mut with_frame = good.clone().into_bytes();
        with_frame.extend_from_slice(b"\x81\x00");
        assert_eq!(check_response(&with_frame, &accept), Ok(Some(good.len())));
        assert_eq!(check_response(&good.as_bytes()[..20], &accept), Ok(None));
        assert!(check_response(
            answer("Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n").as_bytes(),
            &accept
        )
        .is_err());
        assert!(check_response(answer("").as_bytes(), &accept).is_err());
        assert!(check_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            &accept
        )
        .unwrap_err()
        .contains("503"));
        let ext = answer(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: x\r\n",
        );
        assert!(check_response(ext.as_bytes(), &accept).is_err());
    }

    #[test]
    fn new_keys_are_16_bytes_and_fresh() {
        let mut rng = Rng::new(3);
        let (a, acc) = new_key(&mut rng);
        let (b, _) = new_key(&mut rng);
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert_eq!(acc, accept_for(&a));
    }
}
