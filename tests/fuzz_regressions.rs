//! Bugs the whole-connection fuzz target (fuzz/fuzz_targets/connection.rs)
//! found, each replayed here on a real socket.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// An upgrade that arrives together with the client's FIN: the FIN was
/// already read into the socket when the connection became a WebSocket, and
/// no new readiness event announced it, so the client stayed counted until
/// the idle timeout.
#[test]
fn an_upgrade_followed_at_once_by_fin_is_closed_promptly() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(UPGRADE).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("the server closes");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(got.starts_with(b"HTTP/1.1 101"));
    let metrics = metrics_text(&server);
    assert_eq!(metric(&metrics, "wsnotify_connections_active"), 0.0);
}

/// A refused HEAD request gets the head of the error answer, no body.
#[test]
fn a_refused_head_request_gets_no_body() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 411"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "no body after the head: {text:?}"
    );
}

/// Bytes after a client's Close used to be left unread when the server
/// closed, so the kernel reset the connection and destroyed echoes and the
/// Close reply the client had not read yet. Now they are read and dropped
/// until the client's FIN.
#[test]
fn bytes_after_a_close_do_not_reset_the_connection() {
    let server = Server::start(&["--notify-interval", "0", "--enable-echo"]);
    let mut ws = raw_ws(&server, "/echo");
    let payload = vec![0x42u8; 4000];
    let mut burst = Vec::new();
    for _ in 0..16 {
        burst.extend(client_frame(0x82, &payload));
    }
    burst.extend(client_frame(0x88, &1000u16.to_be_bytes()));
    for _ in 0..20 {
        burst.extend(client_frame(0x82, &payload));
    }
    ws.write_all(&burst).unwrap();
    // Read late, as a slow client would: not before every echo and the
    // Close reply wait unread, and the worker has gone on to answer a
    // later request (the turn that wrote them, and any close of the socket
    // that went with it, is over).
    let owed = 16 * (4 + payload.len()) + 4;
    let mut waiting = vec![0u8; owed];
    wait_until(
        "every echo and the Close reply",
        Duration::from_secs(10),
        || ws.peek(&mut waiting).map_or(true, |n| n >= owed),
    );
    assert_eq!(http(server.addr, "GET", "/health", &[], b"").0, 200);
    ws.shutdown(Shutdown::Write).unwrap();
    let mut echoes = 0;
    let close = loop {
        let frame = read_frame(&mut ws).expect("every echo and the Close reply");
        match frame.opcode {
            0x2 => {
                assert_eq!(frame.payload, payload);
                echoes += 1;
            }
            0x8 => break frame,
            other => panic!("opcode {other}"),
        }
    };
    assert_eq!(echoes, 16);
    assert_eq!(&close.payload[..2], &1000u16.to_be_bytes());
    assert_eq!(read_frame(&mut ws), None, "then the end of the stream");
}
