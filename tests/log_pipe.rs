//! A log reader that stalls (stderr a pipe nobody reads) must not stall the
//! clients: the server keeps answering while its log waits, drops what does
//! not fit and counts it, and says how many lines it dropped once stderr is
//! read again.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;
use tungstenite::Message;

/// Each one logs a line of about 90 bytes at info: 540 KB in all, past the
/// pipe (64 KiB) and the server's log buffer (256 KiB).
const BROADCASTS: usize = 6_000;
const BATCH: usize = 50;

#[test]
fn a_log_reader_that_stalls_does_not_stall_the_clients() {
    let server = Server::start(&["--notify-interval", "0"]);
    server.hold_log(true);

    let request = "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"message\":\"log\"}";
    let batch = request.repeat(BATCH);
    let started = Instant::now();
    for _ in 0..BROADCASTS / BATCH {
        // A connection per batch: keep-alive connections serve a bounded
        // number of requests. A worker blocked on its log would leave these
        // unanswered: the read timeout turns that into a failure.
        let mut publisher = TcpStream::connect(server.addr).unwrap();
        publisher
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        publisher.write_all(batch.as_bytes()).unwrap();
        for _ in 0..BATCH {
            assert_eq!(read_response(&mut publisher).0, 200);
        }
    }
    let flood = started.elapsed();

    // Still held: a new client is welcomed and its ping answered at once.
    let mut client = connect(&server, "/ws");
    next_of_type(&mut client, "welcome");
    let asked = Instant::now();
    client.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    next_of_type(&mut client, "pong");
    let pong = asked.elapsed();
    let dropped = metric(&metrics_text(&server), "wsnotify_log_lines_dropped_total");
    println!(
        "{BROADCASTS} broadcasts answered in {flood:?} with stderr unread; \
         a ping answered in {pong:?}; {dropped} log lines dropped"
    );
    assert!(pong < Duration::from_secs(1), "{pong:?}");
    assert!(dropped > 0.0, "the log buffer never filled");

    server.hold_log(false);
    assert!(
        server.wait_for_log("log lines dropped", Duration::from_secs(10)),
        "no report of the dropped lines: {:?}",
        server.log_lines().last()
    );
}
