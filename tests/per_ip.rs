//! `--max-connections-per-ip`: one client address cannot hold every slot.
//! 127.0.0.1 and 127.0.0.2 are two clients on loopback (the client socket
//! is bound to its source address before connecting).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::*;
use tungstenite::handshake::HandshakeError;
use tungstenite::Message;

const OTHER: [u8; 4] = [127, 0, 0, 2];

fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A `/ws` client from `source`, or the status and head it was refused
/// with.
fn ws_from(source: [u8; 4], server: &Server) -> Result<Client, (u16, String)> {
    let stream = connect_from(source, server.addr);
    match tungstenite::client(server.url("/ws"), stream) {
        Ok((client, _)) => Ok(client),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let head = response
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\r\n", v.to_str().unwrap_or("?")))
                .collect();
            Err((response.status().as_u16(), head))
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn sample(server: &Server, name: &str) -> f64 {
    metric(&metrics_text(server), name)
}

/// `GET /health` from `source`.
fn health_from(source: [u8; 4], server: &Server) -> u16 {
    let mut stream = connect_from(source, server.addr);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut stream).0
}

fn round_trip(client: &mut Client) -> Duration {
    let sent = Instant::now();
    client
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .unwrap();
    next_of_type(client, "pong");
    sent.elapsed()
}

#[test]
fn an_address_over_the_limit_of_websocket_clients_gets_503_and_its_slots_back() {
    // Two workers: the count is the process's, wherever a connection lands.
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--workers",
        "2",
        "--max-connections-per-ip",
        "3",
    ]);
    let mut held: Vec<Client> = (0..3)
        .map(|i| ws_from(OTHER, &server).unwrap_or_else(|e| panic!("client {i}: {e:?}")))
        .collect();
    let (status, head) = ws_from(OTHER, &server).expect_err("a fourth is refused");
    assert_eq!(status, 503);
    assert_eq!(header_value(&head, "retry-after").as_deref(), Some("5"));
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
    // Another address is not affected.
    let mut mine = ws_from([127, 0, 0, 1], &server).expect("another address");
    next_of_type(&mut mine, "welcome");
    // The limit is on WebSocket clients: plain requests still pass.
    assert_eq!(health_from(OTHER, &server), 200);
    assert_eq!(
        sample(
            &server,
            "wsnotify_handshake_failures_total{reason=\"per_ip\"}"
        ),
        1.0
    );

    let mut gone = held.pop().unwrap();
    gone.close(None).unwrap();
    while gone.read().is_ok() {}
    let mut again = eventually("a slot freed", Duration::from_secs(5), || {
        ws_from(OTHER, &server).ok()
    });
    next_of_type(&mut again, "welcome");
}

/// Thousands of connections from one address, each sending its request
/// head a byte a second: the first N hold their HTTP-phase slots until the
/// header timeout, the rest are answered 503 at once (nothing waits for
/// their heads), and a client from another address is served promptly.
#[test]
fn a_slow_header_flood_from_one_address_leaves_room_for_others() {
    const FLOOD: usize = 2000;
    const LIMIT: usize = 100;
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--max-connections-per-ip",
        &LIMIT.to_string(),
    ]);
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| {
            let mut stream = connect_from(OTHER, server.addr);
            stream.write_all(b"G").unwrap();
            stream
        })
        .collect();
    for stream in &flood {
        stream.set_nonblocking(true).unwrap();
    }
    // Sweeps the connections not answered yet until the refused ones all
    // are: the held ones have nothing to read before their header timeout.
    let mut answered = vec![false; FLOOD];
    let mut refused = 0;
    let mut answer = [0u8; 512];
    wait_until("the 503s", Duration::from_secs(10), || {
        for (stream, answered) in flood.iter_mut().zip(&mut answered) {
            if *answered {
                continue;
            }
            match stream.read(&mut answer) {
                Ok(n) => {
                    let head = String::from_utf8_lossy(&answer[..n]);
                    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
                    assert_eq!(header_value(&head, "retry-after").as_deref(), Some("5"));
                    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
                    *answered = true;
                    refused += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("flood connection: {e}"),
            }
        }
        refused >= FLOOD - LIMIT
    });
    assert_eq!(refused, FLOOD - LIMIT);

    let mut mine = ws_from([127, 0, 0, 1], &server).expect("another address");
    next_of_type(&mut mine, "welcome");
    let mut slowest = Duration::ZERO;
    for byte in b"ET /" {
        for stream in &mut flood {
            // The refused ones may be closed by now; only the held matter.
            let _ = stream.write(&[*byte]);
        }
        for _ in 0..10 {
            slowest = slowest.max(round_trip(&mut mine));
            // Pacing, not a wait: ten pings spread over each second of
            // the flood's byte-a-second heads.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "{FLOOD} slow-header connections from one address: {refused} refused at once; \
         a client from another address: slowest of 40 pongs {slowest:?}"
    );
    // Starved, the client would wait for the flood's header timeouts (10 s);
    // the bound leaves room for a loaded machine without hiding that.
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    assert_eq!(
        sample(&server, "wsnotify_limit_hits_total{limit=\"per_ip_http\"}"),
        (FLOOD - LIMIT) as f64
    );
    assert_eq!(http(server.addr, "GET", "/health", &[], b"").0, 200);
}
