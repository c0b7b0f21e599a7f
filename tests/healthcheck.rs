//! `wsnotify healthcheck`: the built-in probe used by the Docker HEALTHCHECK,
//! run as a separate process against a real server.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsnotify"));
    command.arg("healthcheck").args(args);
    command
        .env_remove("WSNOTIFY_PORT")
        .env_remove("WSNOTIFY_HOST");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run wsnotify healthcheck")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A port that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn healthy_server_exits_0_with_one_line() {
    let server = Server::start(&[]);
    let url = format!("http://{}/health", server.addr);
    let out = healthcheck(&[&url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{}", text(&out));
    assert!(stdout.contains("200"), "{}", text(&out));
    assert!(stdout.contains(r#"{"status":"ok"}"#), "{}", text(&out));

    // Without a path the probe asks /health.
    let out = healthcheck(&[&format!("http://{}", server.addr)], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn without_a_url_it_follows_wsnotify_port_and_host() {
    let server = Server::start(&[]);
    let port = server.addr.port().to_string();
    let out = healthcheck(&[], &[("WSNOTIFY_PORT", &port)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = healthcheck(
        &[],
        &[("WSNOTIFY_PORT", &port), ("WSNOTIFY_HOST", "0.0.0.0")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Server variables the probe does not use do not disturb it, even bad ones.
    let out = healthcheck(
        &[],
        &[("WSNOTIFY_PORT", &port), ("WSNOTIFY_WORKERS", "many")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn closed_port_exits_1() {
    let port = closed_port();
    let out = healthcheck(&[&format!("http://127.0.0.1:{port}/health")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("unhealthy: "), "{}", text(&out));
    assert_eq!(stderr.lines().count(), 1, "{}", text(&out));

    let out = healthcheck(&[], &[("WSNOTIFY_PORT", &port.to_string())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn other_statuses_and_bad_arguments_exit_1() {
    let server = Server::start(&[]);
    let out = healthcheck(&[&format!("http://{}/nowhere", server.addr)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        text(&out)
    );
    for args in [
        &["https://127.0.0.1:1/health"][..],
        &["not a url"],
        &["http://127.0.0.1:1", "extra"],
        &["--bogus"],
    ] {
        let out = healthcheck(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
    }
    let out = healthcheck(&[], &[("WSNOTIFY_PORT", "0")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = healthcheck(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_silent_server_times_out_with_1() {
    // Accepts (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let start = Instant::now();
    let out = healthcheck(&[&url], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the probe took {took:?}: {}",
        text(&out)
    );
    drop(listener);
}

#[test]
fn draining_server_exits_1() {
    let mut server = Server::start(&["--drain-timeout", "30s"]);
    // A connected client keeps the drain going.
    let client = connect(&server, "/ws");
    server.signal(SIGTERM);
    assert!(
        server.wait_for_log("draining", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
    let out = healthcheck(&[&format!("http://{}/health", server.addr)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("503"), "{}", text(&out));
    assert!(stderr.contains("draining"), "{}", text(&out));
    // /status stays 200 while draining: what a liveness probe should ask.
    let out = healthcheck(&[&format!("http://{}/status", server.addr)], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    drop(client);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
}
