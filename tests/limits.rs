//! Resource limits that a hostile or careless peer runs into.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// A client that pipelines a thousand requests (the most one connection
/// gets) and does not read the answers: the server stops answering (and
/// reading) until the client reads, so its memory stays flat, and every
/// answer still arrives, in order, the last one closing the connection.
#[test]
fn pipelined_requests_from_a_client_that_does_not_read_are_bounded_and_all_answered() {
    const N: usize = 1000;
    let server = Server::start(&["--notify-interval", "0"]);
    let before = server.memory_kib("VmRSS");
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
    // Counted when the unread answers reach the bound and the server stops
    // answering: from then on it holds what it will hold.
    wait_until("the answers held back", Duration::from_secs(10), || {
        metric(
            &metrics_text(&server),
            "wsnotify_limit_hits_total{limit=\"http_backpressure\"}",
        ) >= 1.0
    });
    let during = server.memory_kib("VmRSS");
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

/// Under `ulimit -n 64`, a flood of connections exhausts the descriptors.
/// The server warns that its connection limit cannot fit, pauses accepting
/// instead of spinning on EMFILE, and serves again once the flood leaves.
#[test]
fn out_of_descriptors_the_server_pauses_accepting_then_recovers() {
    let server = Server::start_with_open_file_limit(64, &["--notify-interval", "0"]);
    assert!(
        server.wait_for_log(
            "does not fit in the open-file limit 64",
            Duration::from_secs(1)
        ),
        "{:?}",
        server.log_lines()
    );
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr).expect("connect (the backlog takes it)"))
        .collect();
    assert!(
        server.wait_for_log("accept failed", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
    let cpu_before = server.cpu_time();
    // A measuring window, not a wait: spinning shows as CPU time per second
    // (and /metrics cannot be asked: the server has no descriptor for it).
    std::thread::sleep(Duration::from_secs(2));
    let cpu_used = server.cpu_time() - cpu_before;
    println!("CPU used in 2 s without descriptors: {cpu_used:?}");
    assert!(
        cpu_used < Duration::from_millis(200),
        "spinning: {cpu_used:?} of CPU in 2 s"
    );
    let warnings = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert_eq!(warnings, 1, "one warning per shortage, not one per pause");

    drop(flood);
    let (status, _, _) = http(server.addr, "GET", "/health", &[], b"");
    assert_eq!(status, 200);
    assert!(server.wait_for_log("accepting again", Duration::from_secs(1)));
    let mut client = connect(&server, "/ws");
    assert_eq!(next_json(&mut client)["type"], "welcome");
    let paused = metric(
        &metrics_text(&server),
        "wsnotify_limit_hits_total{limit=\"out_of_descriptors\"}",
    );
    assert!(paused >= 1.0, "{paused}");
}

/// A client that never reads while 10 KB notifications are published in a
/// loop: its queue passes --max-queue-bytes, it is dropped, the server's
/// peak memory stays small, and a reading client gets every notification.
/// The resume history is kept small: at its default 1,000 entries it would
/// hold 10 MB of these frames, by design (docs/protocol.md, Resume).
#[test]
fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    const MESSAGES: usize = 3000;
    let server = Server::start(&["--notify-interval", "0", "--history-size", "100"]);
    let baseline = server.memory_kib("VmRSS");
    let mut stalled = raw_ws(&server, "/ws");
    let mut reader = connect(&server, "/ws");
    assert_eq!(next_json(&mut reader)["type"], "welcome");
    let counter = std::thread::spawn(move || {
        let mut seen = 0;
        while seen < MESSAGES {
            let message = next_of_type(&mut reader, "notification");
            assert_eq!(message["data"]["n"], seen, "in order, none lost");
            seen += 1;
        }
        seen
    });

    let body = format!(
        r#"{{"message":"{}","data":{{"n":N}}}}"#,
        "x".repeat(10 * 1024)
    );
    let mut publisher = TcpStream::connect(server.addr).unwrap();
    publisher
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for n in 0..MESSAGES {
        let body = body.replace("\"n\":N", &format!("\"n\":{n}"));
        let request = format!(
            "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        publisher.write_all(request.as_bytes()).unwrap();
        let (status, _, _) = read_response(&mut publisher);
        assert_eq!(status, 200);
        // A thousand requests is the most one keep-alive connection gets.
        if n % 500 == 499 {
            publisher = TcpStream::connect(server.addr).unwrap();
            publisher
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
    }
    assert_eq!(counter.join().unwrap(), MESSAGES);
    let peak = server.memory_kib("VmHWM");
    println!("published {MESSAGES} x 10 KB: server RSS baseline {baseline} KiB, peak {peak} KiB");
    // Unbounded, the stalled client's queue alone would be about 30 MB.
    assert!(
        peak < baseline + 8 * 1024,
        "peak RSS {peak} KiB over baseline {baseline} KiB"
    );
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_slow_consumers_dropped_total"
        ),
        1.0
    );

    // What the stalled client finds when it reads at last: whatever the
    // kernel buffered, then the end of the connection (a Close 1008 only
    // if there was room to write it).
    let mut last = None;
    while let Some(frame) = read_frame(&mut stalled) {
        last = Some(frame);
    }
    if let Some(frame) = last.filter(|f| f.opcode == 0x8) {
        assert_eq!(&frame.payload[..2], &1008u16.to_be_bytes());
    }
}

/// Sends `bytes` on a fresh connection, stops writing, and returns the
/// status of the answer, checking that the server then closes.
fn answer_to(server: &Server, bytes: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer and stop reading before the last byte; what it
    // says is the point, not whether every byte went out.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(
        header_value(&head, "connection").as_deref(),
        Some("close"),
        "{head}"
    );
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the error answer");
    status
}

/// Garbage of every kind gets a fitting error and a close; a client
/// connected meanwhile notices nothing.
#[test]
fn garbage_gets_an_error_and_a_close_and_other_clients_carry_on() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut bystander = connect(&server, "/ws");
    assert_eq!(next_json(&mut bystander)["type"], "welcome");

    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    // A TLS 1.2 ClientHello as a browser opening https:// on this port sends.
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xf8, 0x01, 0x00, 0x00, 0xf4, 0x03, 0x03,
    ];
    client_hello.extend_from_slice(&random[..245]);
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 1 << 20));
    long_line.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    let mut million_headers = b"GET / HTTP/1.1\r\n".to_vec();
    for _ in 0..1_000_000 {
        million_headers.extend_from_slice(b"a: b\r\n");
    }
    million_headers.extend_from_slice(b"\r\n");
    let cases: [(&str, &[u8], u16); 7] = [
        ("random bytes", &random, 400),
        ("TLS ClientHello", &client_hello, 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        ("1 MiB request line", &long_line, 431),
        ("a million headers", &million_headers, 431),
        (
            "NUL in the target",
            b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "NUL in a header",
            b"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n",
            400,
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(answer_to(&server, bytes), expected, "{name}");
    }
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_limit_hits_total{limit=\"head_too_large\"}"
        ),
        2.0
    );
    // Random bytes after a good upgrade are a protocol error: Close 1002.
    let mut ws = raw_ws(&server, "/ws");
    ws.write_all(&random[..4096]).unwrap();
    let mut close = None;
    while let Some(frame) = read_frame(&mut ws) {
        if frame.opcode == 0x8 {
            close = Some(frame);
            break;
        }
    }
    let close = close.expect("a Close frame");
    assert_eq!(&close.payload[..2], &1002u16.to_be_bytes());

    let (status, _, _) = http(
        server.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"still here"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        next_of_type(&mut bystander, "notification")["message"],
        "still here"
    );
    assert!(
        server.log_lines().iter().all(|l| !l.contains("panic")),
        "{:?}",
        server.log_lines()
    );
}

/// The request-body rules that keep a hostile publisher from smuggling a
/// second request or holding a connection open.
#[test]
fn request_bodies_are_length_checked_and_timed() {
    let server = Server::start(&["--notify-interval", "0", "--header-timeout", "1s"]);
    let post = |headers: &str, body: &str| {
        answer_to(
            &server,
            format!("POST /broadcast HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}").as_bytes(),
        )
    };
    let chunked = "5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(post("Transfer-Encoding: chunked\r\n", chunked), 411);
    assert_eq!(
        post(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            chunked
        ),
        400,
        "Content-Length beside Transfer-Encoding"
    );
    assert_eq!(
        post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        400,
        "conflicting lengths"
    );
    for bad in ["abc", "-1", "1e3", "0x10", "99999999999999999999999"] {
        assert_eq!(
            post(&format!("Content-Length: {bad}\r\n"), ""),
            400,
            "{bad}"
        );
    }
    assert_eq!(post("Content-Length: 65537\r\n", ""), 413);

    // A body that never arrives is cut by the header timeout.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            b"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"message\"",
        )
        .unwrap();
    let start = std::time::Instant::now();
    let (status, _, _) = read_response(&mut stream);
    let waited = start.elapsed();
    assert_eq!(status, 408);
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    let metrics = metrics_text(&server);
    for (limit, hits) in [
        ("chunked_body", 1.0),
        ("body_too_large", 1.0),
        ("header_timeout", 1.0),
    ] {
        let sample = format!("wsnotify_limit_hits_total{{limit=\"{limit}\"}}");
        assert_eq!(metric(&metrics, &sample), hits, "{limit}");
    }
}

/// A message over --max-message-bytes is refused from its frame header,
/// before its payload is read, with Close 1009.
#[test]
fn an_oversized_message_is_closed_with_1009_and_counted() {
    let server = Server::start(&["--notify-interval", "0", "--max-message-bytes", "1024"]);
    let mut ws = raw_ws(&server, "/ws");
    // Only the header of a 1 MiB text frame: the verdict cannot wait for
    // the payload.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.write_all(&header).unwrap();
    let close = loop {
        let frame = read_frame(&mut ws).expect("a Close");
        if frame.opcode == 0x8 {
            break frame;
        }
    };
    assert_eq!(&close.payload[..2], &1009u16.to_be_bytes());
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_limit_hits_total{limit=\"message_too_big\"}"
        ),
        1.0
    );
}
