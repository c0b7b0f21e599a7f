//! Keepalive: server pings, and the idle timeout that removes clients that
//! went silent, half-open TCP connections included (a peer whose host
//! vanished answers nothing, exactly like the silent clients here).

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn pings_go_out_every_ping_interval() {
    let server = Server::start(&["--notify-interval", "0", "--ping-interval", "300ms"]);
    let mut ws = raw_ws(&server, "/ws");
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let frame = read_frame(&mut ws).expect("open");
        if frame.opcode == 0x9 {
            assert!(frame.fin && frame.payload.len() <= 125);
            pings += 1;
            ws.write_all(&client_frame(0x8A, &frame.payload)).unwrap();
        }
    }
    // 1.5 s at one ping per 0.3 s (each up to two 100 ms ticks late).
    assert!((3..=5).contains(&pings), "{pings} pings in 1.5 s");
}

/// A client that sends nothing and ignores pings is closed with 1000
/// "idle timeout" once `--idle-timeout` has passed since its last frame.
#[test]
fn a_silent_client_is_closed_with_1000_after_the_idle_timeout() {
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--ping-interval",
        "300ms",
        "--idle-timeout",
        "1s",
    ]);
    let mut ws = raw_ws(&server, "/ws");
    let start = Instant::now();
    let close = loop {
        let frame = read_frame(&mut ws).expect("a Close before the end");
        if frame.opcode == 0x8 {
            break frame;
        }
    };
    let after = start.elapsed();
    assert_eq!(&close.payload[..2], &1000u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"idle timeout");
    assert!(
        after >= Duration::from_millis(1000) && after < Duration::from_millis(1600),
        "closed after {after:?}"
    );
    ws.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(read_frame(&mut ws), None, "TCP closes after the handshake");
    let metrics = metrics_text(&server);
    assert_eq!(metric(&metrics, "wsnotify_connections_active"), 0.0);
    assert_eq!(
        metric(
            &metrics,
            "wsnotify_limit_hits_total{limit=\"idle_timeout\"}"
        ),
        1.0
    );
}

/// Any frame counts as a sign of life, and a pong is the cheapest: a client
/// that only answers pings stays connected well past the idle timeout.
#[test]
fn answering_pings_keeps_a_client_connected() {
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--ping-interval",
        "300ms",
        "--idle-timeout",
        "1s",
    ]);
    let mut client = connect(&server, "/ws");
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    // tungstenite answers each ping on its next read.
    while start.elapsed() < Duration::from_secs(3) {
        match client.read() {
            Ok(tungstenite::Message::Ping(_)) => pings += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("closed after {:?}: {e}", start.elapsed()),
        }
    }
    assert!(pings >= 5, "{pings} pings in 3 s");
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"alive"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        next_of_type(&mut client, "notification")["message"],
        "alive"
    );
}
