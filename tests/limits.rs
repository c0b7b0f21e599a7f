//! Resource limits that a hostile or careless peer runs into.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A client that pipelines a thousand requests (the most one connection
/// gets) and does not read the answers: the server stops answering (and
/// reading) until the client reads, so its memory stays flat, and every
/// answer still arrives, in order, the last one closing the connection.
#[test]
fn pipelined_requests_from_a_client_that_does_not_read_are_bounded_and_all_answered() {
    const N: usize = 1000;
    let server = Server::start(&["--notify-interval", "0"]);
    let before = rss_kib(server.child.id());
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut batch = Vec::with_capacity(request.len() * 100);
        for _ in 0..100 {
            batch.extend_from_slice(request);
        }
        for _ in 0..N / 100 {
            writer.write_all(&batch).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let during = rss_kib(server.child.id());
    println!("server RSS before {before} KiB, while the client does not read {during} KiB");
    // Unbounded, a thousand copies of the 12 KB page would be 12 MB, of
    // which the kernel's socket buffers take at most a few.
    assert!(
        during < before + 4 * 1024,
        "RSS grew from {before} to {during} KiB"
    );

    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    let mut line = String::new();
    while answered < N {
        line.clear();
        reader.read_line(&mut line).expect("status line");
        assert!(
            line.starts_with("HTTP/1.1 200"),
            "answer {answered}: {line:?}"
        );
        let mut length = 0;
        let mut closing = false;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            closing |= lower.starts_with("connection: close");
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        answered += 1;
        assert_eq!(closing, answered == N, "only the last answer closes");
    }
    sender.join().unwrap();
    line.clear();
    assert_eq!(
        reader.read_line(&mut line).unwrap_or(0),
        0,
        "the server closes after the last answer"
    );
}
