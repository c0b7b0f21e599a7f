//! The server's base: start-up, the listening line, the upgrade and /echo.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn welcome_is_the_first_message_on_ws() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut client = connect(&server, "/ws");
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["server"], "wsnotify");
    assert_eq!(welcome["worker"], 0);
    assert!(welcome["client_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert!(welcome["time"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn echo_returns_text_and_binary_unchanged() {
    let server = Server::start(&["--enable-echo"]);
    let mut client = connect(&server, "/echo");
    client
        .send(tungstenite::Message::Text("héllo".into()))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        tungstenite::Message::Text("héllo".into())
    );
    client
        .send(tungstenite::Message::Binary(vec![0, 255, 1]))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        tungstenite::Message::Binary(vec![0, 255, 1])
    );
}

#[test]
fn echo_is_off_by_default() {
    let server = Server::start(&[]);
    let (status, _, body) = http(server.addr, "GET", "/echo", &[], b"");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("\"error\""));
}

#[test]
fn unknown_path_is_a_json_404() {
    let server = Server::start(&[]);
    let (status, head, body) = http(server.addr, "GET", "/nope", &[], b"");
    assert_eq!(status, 404);
    assert_eq!(
        header_value(&head, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string());
}

#[test]
fn client_close_is_echoed_then_tcp_closed() {
    let server = Server::start(&["--enable-echo"]);
    let mut stream = raw_ws(&server, "/echo");
    use std::io::Write;
    stream
        .write_all(&client_frame(0x88, &[0x0F, 0xA0, b'b', b'y', b'e']))
        .unwrap();
    assert_eq!(expect_close(&mut stream), Some(4000));
}

#[test]
fn bad_options_exit_2_naming_the_option_or_variable() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wsnotify"));
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("run wsnotify")
    };
    let out = run(&["--port", "abc"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
    let out = run(&[], &[("WSNOTIFY_DRAIN_TIMEOUT", "soon")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WSNOTIFY_DRAIN_TIMEOUT"));
    let out = run(&["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wsnotify "));
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("WSNOTIFY_DRAIN_TIMEOUT"));
}

#[test]
fn a_taken_port_exits_1_with_or_without_workers_and_the_first_server_keeps_serving() {
    // With several workers a server binds with SO_REUSEPORT, which would
    // let a second one on the same port share its connections.
    for first in ["1", "2"] {
        let server = Server::start(&["--workers", first, "--notify-interval", "0"]);
        let port = server.addr.port().to_string();
        for second in ["1", "2"] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsnotify"))
                .args(["--host", "127.0.0.1", "--port", &port, "--workers", second])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run wsnotify");
            let exited = poll_until(Duration::from_secs(10), || child.try_wait().unwrap());
            if exited.is_none() {
                let _ = child.kill();
            }
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                exited.is_some(),
                "{first} then {second}: it serves too: {stderr}"
            );
            assert_eq!(
                out.status.code(),
                Some(1),
                "{first} then {second}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("port {port} is taken")),
                "{first} then {second}: {stderr}"
            );
            assert!(!stderr.contains("listening on"), "{stderr}");
        }
        // Every connection still reaches the first server.
        for _ in 0..8 {
            let (status, _, body) = http(server.addr, "GET", "/status", &[], b"");
            assert_eq!(status, 200);
            let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status["pid"], server.child.id());
        }
    }
}

#[test]
fn listening_line_is_printed_even_at_error_level_and_in_json() {
    let server = Server::start(&["--log-level", "error", "--log-format", "json"]);
    let line = server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .expect("listening line");
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert!(json["ts"].is_string() && json["level"].is_string());
    assert_eq!(json["msg"], format!("listening on http://{}", server.addr));
}

#[test]
fn ipv6_listening_line_uses_brackets() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wsnotify"));
    command
        .args(["--host", "::1", "--port", "0"])
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    if line.contains("cannot listen") {
        eprintln!("no IPv6 loopback here: {line}");
        return;
    }
    assert!(line.contains("listening on http://[::1]:"), "{line}");
}

#[test]
fn json_connect_lines_carry_client_and_peer() {
    let server = Server::start(&["--log-format", "json", "--notify-interval", "0"]);
    let mut client = connect(&server, "/ws");
    let id = next_json(&mut client)["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(server.wait_for_log("client connected", std::time::Duration::from_secs(5)));
    let line = server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("client connected"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["client"], id);
    assert!(json["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
}
