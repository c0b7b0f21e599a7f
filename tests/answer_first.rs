//! `POST /broadcast` is answered before its fanout is written: the
//! recipient count is known before the writes, so publishers do not see
//! the fanout time as their latency.

mod support;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Enough clients that writing the fanout takes many milliseconds.
const CLIENTS: usize = 2_000;

/// The publisher pipelines an upgrade behind its `POST /broadcast`, so the
/// server takes both in one read, the request first. A client joining
/// writes the turn's broadcasts out first (they are not for it), so before
/// the fix the fanout was written there and the answer only at the end of
/// the turn: when the publisher had its answer the last client had the
/// broadcast already. Now the answer is written first, and the last
/// client's copy is still thousands of writes away when the publisher
/// reads it.
#[test]
fn the_publisher_is_answered_before_the_last_client_gets_the_broadcast() {
    let server = Server::start(&["--max-connections", "2100", "--notify-interval", "0"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| raw_ws(&server, "/ws")).collect();
    for client in &mut clients {
        let welcome = read_frame(client).expect("welcome");
        assert!(String::from_utf8_lossy(&welcome.payload).contains("welcome"));
    }
    let mut publisher = keep_alive(&server);
    let body = br#"{"message":"answered first"}"#;
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let upgrade = "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut pipelined = request.into_bytes();
    pipelined.extend_from_slice(body);
    pipelined.extend_from_slice(upgrade.as_bytes());
    publisher.write_all(&pipelined).unwrap();

    let (status, _, answer) = read_response(&mut publisher);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let last = clients.last_mut().unwrap();
    last.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match last.peek(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => {
            panic!("the last client had the broadcast before the publisher's answer: {other:?}")
        }
    }
    last.set_nonblocking(false).unwrap();
    let frame = read_frame(last).expect("the broadcast");
    assert!(String::from_utf8_lossy(&frame.payload).contains("answered first"));
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["recipients"], CLIENTS as u64, "{answer}");
}

/// A connection the server has accepted and answered once (keep-alive).
fn keep_alive(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    stream
}
