//! The graceful drain, end to end: real processes, real signals.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use support::*;

const QUIET: &[&str] = &["--notify-interval", "0"];

fn start(extra: &[&str]) -> Server {
    let mut args = QUIET.to_vec();
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn wait_draining(server: &Server) {
    assert!(
        server.wait_for_log("draining", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
}

#[test]
fn first_signal_with_no_clients_exits_at_once() {
    for signal in [SIGINT, SIGTERM] {
        let mut server = start(&[]);
        let sent = Instant::now();
        server.signal(signal);
        let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
        let took = sent.elapsed();
        println!("signal {signal} with no clients: exit after {took:?}");
        assert_eq!(status.code(), Some(0));
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
}

#[test]
fn drain_notifies_refuses_and_keeps_serving_until_the_last_client_leaves() {
    let mut server = start(&["--drain-timeout", "30s"]);
    let mut a = connect(&server, "/ws");
    let mut b = connect(&server, "/ws");
    let a_id = next_json(&mut a)["client_id"].as_str().unwrap().to_owned();
    next_json(&mut b);

    server.signal(SIGTERM);
    for client in [&mut a, &mut b] {
        let notice = next_of_type(client, "shutdown_notice");
        assert_eq!(notice["reconnect"], true);
        assert!(
            notice["drain_timeout_s"]
                .as_u64()
                .is_some_and(|s| (29..=30).contains(&s)),
            "{notice}"
        );
        assert!(
            notice["reconnect_after_ms"]
                .as_u64()
                .is_some_and(|ms| ms <= 10_000),
            "{notice}"
        );
        assert!(notice["message"].is_string());
    }
    wait_draining(&server);

    let (status, _, body) = http(server.addr, "GET", "/health", &[], b"");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (503, r#"{"status":"draining"}"#)
    );
    let (status, _, body) = http(server.addr, "GET", "/status", &[], b"");
    assert_eq!(status, 200);
    let status_json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_json["state"], "draining");
    assert_eq!(status_json["drain"]["remaining"], 2);
    assert!(status_json["drain"]["deadline_in_s"]
        .as_u64()
        .is_some_and(|s| s <= 30));
    let upgrade = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (status, head, _) = raw_http(server.addr, upgrade.as_bytes());
    assert_eq!(status, 503);
    assert!(header_value(&head, "retry-after").is_some(), "{head}");
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));

    // Clients still chat, and notifications published now still arrive.
    a.send(tungstenite::Message::Text(
        r#"{"type":"chat","message":"still here"}"#.into(),
    ))
    .unwrap();
    assert_eq!(next_of_type(&mut b, "chat")["message"], "still here");
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"during drain"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        next_of_type(&mut a, "notification")["message"],
        "during drain"
    );
    assert_eq!(
        next_of_type(&mut b, "notification")["message"],
        "during drain"
    );
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/notify",
        &[],
        format!(r#"{{"message":"for a","client_id":"{a_id}"}}"#).as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(next_of_type(&mut a, "notification")["scope"], "personal");

    b.close(None).unwrap();
    while b.read().is_ok() {}
    assert!(server.wait_for_log("remaining=1", Duration::from_secs(5)));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "one client is still connected"
    );

    a.close(None).unwrap();
    let closed = Instant::now();
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exit after the last client");
    let latency = closed.elapsed();
    println!("exit latency after the last client's close: {latency:?}");
    assert_eq!(status.code(), Some(0));
    assert!(
        latency < Duration::from_millis(100),
        "exit took {latency:?}"
    );
}

#[test]
fn tcp_disconnect_of_the_last_client_also_ends_the_drain() {
    let mut server = start(&["--drain-timeout", "30s"]);
    let stream = raw_ws(&server, "/ws");
    server.signal(SIGINT);
    wait_draining(&server);
    let dropped = Instant::now();
    drop(stream);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    println!(
        "exit latency after the last client's TCP close: {:?}",
        dropped.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    assert!(dropped.elapsed() < Duration::from_millis(100));
}

#[test]
fn deadline_flushes_queued_messages_then_closes_with_1001() {
    let mut server = start(&["--drain-timeout", "1s"]);
    let mut stream = raw_ws(&server, "/ws");
    server.signal(SIGINT);
    wait_draining(&server);
    for i in 0..20 {
        let body = format!(r#"{{"message":"late {i}"}}"#);
        assert_eq!(
            http(server.addr, "POST", "/broadcast", &[], body.as_bytes()).0,
            200
        );
    }
    let started = Instant::now();
    let mut notifications = Vec::new();
    let code = loop {
        let frame = read_frame(&mut stream).expect("frame");
        match frame.opcode {
            1 => {
                let v: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
                if v["type"] == "notification" {
                    notifications.push(v["message"].as_str().unwrap().to_owned());
                }
            }
            8 => break u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
            _ => {}
        }
    };
    assert_eq!(code, 1001);
    assert_eq!(
        notifications,
        (0..20).map(|i| format!("late {i}")).collect::<Vec<_>>()
    );
    stream
        .write_all(&client_frame(0x88, &1001u16.to_be_bytes()))
        .unwrap();
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    println!("closed at the deadline after {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(server
        .log_lines()
        .iter()
        .any(|l| l.contains("drain deadline reached") && l.contains("closed=1")));
}

#[test]
fn a_client_that_never_reads_cannot_hold_the_process() {
    let mut server = start(&["--drain-timeout", "1s"]);
    let stream = raw_ws(&server, "/ws");
    // Fill the client's receive window and the server's queue.
    let big = "x".repeat(60_000);
    for _ in 0..8 {
        let body = format!(r#"{{"message":"{big}"}}"#);
        http(server.addr, "POST", "/broadcast", &[], body.as_bytes());
    }
    let signalled = Instant::now();
    server.signal(SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit within the deadline and the close grace");
    let took = signalled.elapsed();
    println!("exit with a non-reading client after {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(7), "took {took:?}");
    drop(stream);
}

#[test]
fn third_signal_forces_exit_130() {
    let mut server = start(&["--drain-timeout", "60s"]);
    let _client = raw_ws(&server, "/ws");
    server.signal(SIGINT);
    wait_draining(&server);
    server.signal(SIGTERM);
    assert!(
        server.wait_for_log("(2/3)", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
    assert!(server.child.try_wait().unwrap().is_none());
    server.signal(SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("forced exit");
    assert_eq!(status.code(), Some(130), "{status:?} {:?}", status.signal());
    assert!(server.log_lines().iter().any(|l| l.contains("(3/3)")));
}

#[test]
fn force_signals_two() {
    let mut server = start(&["--force-signals", "2"]);
    let _client = raw_ws(&server, "/ws");
    server.signal(SIGTERM);
    wait_draining(&server);
    server.signal(SIGTERM);
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(5))
            .expect("exit")
            .code(),
        Some(130)
    );
}

#[test]
fn periodic_notifications_stop_while_draining() {
    let mut server = Server::start(&["--notify-interval", "200ms", "--drain-timeout", "2s"]);
    let mut client = connect(&server, "/ws");
    next_of_type(&mut client, "notification");
    server.signal(SIGINT);
    next_of_type(&mut client, "shutdown_notice");
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    match client.read() {
        Ok(message) => panic!("nothing expected during the drain, got {message:?}"),
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("{e}"),
    }
    client.close(None).unwrap();
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(5))
            .expect("exit")
            .code(),
        Some(0)
    );
}

#[test]
fn a_thousand_clients_get_the_notice_and_the_1001_close() {
    const N: usize = 1000;
    let mut server = start(&["--drain-timeout", "2s"]);
    let mut streams: Vec<TcpStream> = (0..N).map(|_| raw_ws(&server, "/ws")).collect();
    server.signal(SIGTERM);
    let mut notices = 0;
    let mut closes = 0;
    for stream in &mut streams {
        let mut got_notice = false;
        loop {
            let frame = read_frame(stream).expect("frame");
            if frame.opcode == 1
                && String::from_utf8_lossy(&frame.payload).contains("shutdown_notice")
            {
                got_notice = true;
            }
            if frame.opcode == 8 {
                assert_eq!(
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                    1001
                );
                closes += 1;
                break;
            }
        }
        notices += usize::from(got_notice);
        let _ = stream.write_all(&client_frame(0x88, &1001u16.to_be_bytes()));
    }
    println!("{notices} notices, {closes} closes with 1001");
    assert_eq!((notices, closes), (N, N));
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(10))
            .expect("exit")
            .code(),
        Some(0)
    );
    assert!(server
        .log_lines()
        .iter()
        .any(|l| l.contains(&format!("closed={N}"))));
}

#[test]
fn progress_is_logged_every_interval() {
    let mut server = start(&["--drain-timeout", "3s", "--drain-log-interval", "500ms"]);
    let mut client = connect(&server, "/ws");
    server.signal(SIGINT);
    let signalled = Instant::now();
    wait_until("two progress lines", Duration::from_secs(5), || {
        server.log_count("draining remaining=1") >= 2
    });
    // The first line comes with the signal, the next one interval later.
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1300),
        "two progress lines after {took:?}"
    );
    client.close(None).unwrap();
    assert!(server.wait_exit(Duration::from_secs(5)).is_some());
    assert!(server
        .log_lines()
        .iter()
        .any(|l| l.contains("client disconnected") && l.contains("remaining=0")));
}

#[test]
fn systemd_notify_protocol() {
    let dir = std::env::temp_dir().join(format!("wsnotify-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut server = Server::start_with_env(
        &["--notify-interval", "0", "--drain-timeout", "20s"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    let mut client = connect(&server, "/ws");
    server.signal(SIGTERM);
    let n = socket.recv(&mut buf).unwrap();
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.contains("STOPPING=1"), "{message}");
    assert!(
        message.contains("STATUS=draining 1 connections, deadline in 20 s"),
        "{message}"
    );
    let extend: u64 = message
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("EXTEND_TIMEOUT_USEC");
    assert!(extend >= 20_000_000, "{extend}");
    client.close(None).unwrap();
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(5))
            .expect("exit")
            .code(),
        Some(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
