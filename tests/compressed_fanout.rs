//! Compressed broadcasts with the real binary: a client that negotiated
//! permessage-deflate (raw frames: tungstenite 0.24 does not speak it)
//! receives a long broadcast compressed (RSV1) and inflates it to the
//! very message a plain client receives uncompressed; a short chat comes
//! plain to both; the broadcast is compressed once for both workers'
//! clients.

mod support;

use std::io::Read;
use std::net::TcpStream;

use flate2::{Decompress, FlushDecompress};
use serde_json::Value;
use support::{
    connect, header_value, http, metric, metrics_text, next_of_type, raw_ws_with, Server,
};

/// A `/ws` client offering permessage-deflate as a browser does; returns
/// the socket and the extension the server answered.
fn deflate_client(server: &Server) -> (TcpStream, Option<String>) {
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (stream, head) = raw_ws_with(server, "/ws", offer);
    (stream, header_value(&head, "sec-websocket-extensions"))
}

/// The next text message: whether it came compressed, and its JSON.
fn next_message(stream: &mut TcpStream) -> (bool, Value) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            usize::from(u16::from_be_bytes(b))
        }
        127 => panic!("no message here is that long"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    assert_eq!(head[0] & 0x8F, 0x81, "a whole text message in one frame");
    let compressed = head[0] & 0x40 != 0;
    if compressed {
        payload = inflate(&payload);
    }
    (compressed, serde_json::from_slice(&payload).expect("JSON"))
}

/// RFC 7692 section 7.2.2: the payload and 00 00 ff ff, raw-inflated.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 16);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid DEFLATE");
    out
}

fn broadcast(server: &Server, message: &str) {
    let body = serde_json::json!({ "message": message }).to_string();
    let (status, _, _) = http(server.addr, "POST", "/broadcast", &[], body.as_bytes());
    assert_eq!(status, 200);
}

#[test]
fn a_client_that_negotiated_gets_broadcasts_compressed_once_and_intact() {
    let server = Server::start(&["--workers", "2"]);
    let (mut zipped, answered) = deflate_client(&server);
    let answered = answered.expect("permessage-deflate negotiated");
    assert!(answered.starts_with("permessage-deflate"), "{answered}");
    assert!(
        answered.contains("server_no_context_takeover"),
        "{answered}"
    );
    let (second, _) = deflate_client(&server);
    let mut plain = connect(&server, "/ws");
    assert_eq!(next_message(&mut zipped).1["type"], "welcome");
    next_of_type(&mut plain, "welcome");
    drop(second);

    let long = "order=48213 status=shipped city=Lisbon amount=129.95 EUR; ".repeat(30);
    broadcast(&server, &long);
    let (compressed, got) = next_message(&mut zipped);
    assert!(compressed, "a long broadcast comes compressed");
    let plain_got = next_of_type(&mut plain, "notification");
    assert_eq!(
        got, plain_got,
        "the same message, byte for byte once inflated"
    );
    assert_eq!(got["message"], long.as_str());
    plain
        .send(tungstenite::Message::text(
            r#"{"type":"chat","message":"hi"}"#,
        ))
        .unwrap();
    let (compressed, got) = next_message(&mut zipped);
    assert!(!compressed, "a chat of a few bytes comes plain");
    assert_eq!(
        (got["type"].as_str(), got["message"].as_str()),
        (Some("chat"), Some("hi"))
    );

    let text = metrics_text(&server);
    assert_eq!(metric(&text, "wsnotify_messages_compressed_total"), 1.0);
}
