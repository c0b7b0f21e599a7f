//! Connection tokens against the real binary: every refusal before the
//! upgrade, `--require-token`, the welcome's `user`, the close at `exp`,
//! no token in any log line, and the options' errors.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;

/// The file holds this secret with whitespace around it.
const SECRET_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/token-secret.txt"
);
const SECRET: &[u8] = b"test-only secret: wsnotify tokens/e2e 0123456789";

fn mint_with(header: &Value, claims: &Value, secret: &[u8]) -> String {
    support::token::mint_with(header, claims, secret)
}

fn mint(claims: &Value) -> String {
    support::token::mint(claims, SECRET)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--notify-interval", "0", "--token-secret-file", SECRET_FILE];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// An upgrade request for `target` with extra header lines; the answer.
fn upgrade(server: &Server, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// The upgrade was refused 401 with a JSON error and the challenge; the error.
fn unauthorized(answer: (u16, String, Vec<u8>)) -> String {
    let (status, head, body) = answer;
    assert_eq!(status, 401, "{head}");
    assert_eq!(
        header_value(&head, "www-authenticate").as_deref(),
        Some("Bearer")
    );
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    body["error"].as_str().expect("an error text").to_owned()
}

/// The welcome of a client that connected with `path` and `headers`.
fn welcome(server: &Server, path: &str, headers: &[(&'static str, &str)]) -> (Client, Value) {
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(server.url(path)).unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut client, _) = tungstenite::client(request, stream).expect("handshake");
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome");
    (client, welcome)
}

#[test]
fn every_bad_token_is_refused_401_before_the_upgrade_and_good_ones_name_the_user() {
    let server = start(&["--admin-token", "admin-secret"]);
    let now_s = now_ms() / 1000;
    let other = b"another secret, long enough for HS256 keys";
    let payload = json!({"sub": "alice"});
    let cases = [
        (
            mint_with(&json!({"alg": "HS256"}), &payload, other),
            "signature",
        ),
        (
            mint_with(&json!({"alg": "none"}), &payload, SECRET),
            "HS256",
        ),
        (
            mint_with(&json!({"alg": "HS512"}), &payload, SECRET),
            "HS256",
        ),
        ("a.b".to_owned(), "malformed"),
        ("%%%.x.y".to_owned(), "malformed"),
        (mint(&json!({"sub": "alice", "exp": now_s - 1})), "expired"),
        (
            mint(&json!({"sub": "alice", "nbf": now_s + 3600})),
            "not valid yet",
        ),
        (mint(&json!({"exp": now_s + 3600})), "sub"),
        (mint(&json!({"sub": ""})), "sub"),
        (mint(&json!({"sub": "x".repeat(129)})), "sub"),
        (
            mint(&json!({"sub": "alice", "channels": "private:a"})),
            "channels",
        ),
    ];
    for (token, says) in &cases {
        let by_query = unauthorized(upgrade(&server, &format!("/ws?token={token}"), ""));
        assert!(by_query.contains(says), "{says}: {by_query}");
        let header = format!("Authorization: Bearer {token}\r\n");
        let by_header = unauthorized(upgrade(&server, "/ws", &header));
        assert_eq!(by_query, by_header);
    }
    let good = mint(&json!({"sub": "alice", "exp": now_s + 3600, "channels": ["private:a"]}));
    let (_alice, by_query) = welcome(&server, &format!("/ws?token={good}"), &[]);
    assert_eq!(by_query["user"], "alice");
    let bearer = format!("Bearer {}", mint(&json!({"sub": "bob"})));
    let (_bob, by_header) = welcome(&server, "/ws", &[("Authorization", &bearer)]);
    assert_eq!(by_header["user"], "bob");
    let (_, anonymous) = welcome(&server, "/ws", &[]);
    assert!(anonymous.get("user").is_none(), "{anonymous}");
    // The same header name still guards publishing, with its own token.
    let body = br#"{"message":"m"}"#;
    let publish = |auth: &str| {
        http(
            server.addr,
            "POST",
            "/broadcast",
            &[("Authorization", auth)],
            body,
        )
        .0
    };
    assert_eq!(publish("Bearer admin-secret"), 200);
    assert_eq!(publish(&format!("Bearer {good}")), 401);
    let metrics = metrics_text(&server);
    let refused = (2 * cases.len()) as f64;
    assert_eq!(
        metric(
            &metrics,
            "wsnotify_handshake_failures_total{reason=\"token\"}"
        ),
        refused
    );
    assert_eq!(metric(&metrics, "wsnotify_authenticated_clients"), 2.0);
}

#[test]
fn a_token_without_a_secret_is_refused_and_require_token_refuses_none() {
    let open = Server::start(&["--notify-interval", "0"]);
    let token = mint(&json!({"sub": "alice"}));
    let error = unauthorized(upgrade(&open, &format!("/ws?token={token}"), ""));
    assert!(error.contains("no token secret"), "{error}");
    let (_, anonymous) = welcome(&open, "/ws", &[]);
    assert!(anonymous.get("user").is_none());

    let strict = Server::start_with_env(
        &["--notify-interval", "0", "--enable-echo"],
        &[
            ("WSNOTIFY_REQUIRE_TOKEN", "yes"),
            ("WSNOTIFY_TOKEN_SECRET_FILE", SECRET_FILE),
        ],
    );
    assert_eq!(
        unauthorized(upgrade(&strict, "/ws", "")),
        "a token is required"
    );
    let basic = "Authorization: Basic dXNlcjpwdw==\r\n";
    assert_eq!(
        unauthorized(upgrade(&strict, "/ws", basic)),
        "a token is required"
    );
    let (_, user) = welcome(&strict, &format!("/ws?token={token}"), &[]);
    assert_eq!(user["user"], "alice");
    // /echo is no part of the notification protocol: no token asked there.
    assert_eq!(upgrade(&strict, "/echo", "").0, 101);
    assert_eq!(
        http(strict.addr, "GET", "/health", &[], b"").0,
        200,
        "GET is open"
    );
}

#[test]
fn the_server_closes_a_client_with_4001_when_its_token_expires() {
    let server = start(&[]);
    // Two seconds ahead, in whole seconds: at least one second to go.
    let exp = now_ms() / 1000 + 2;
    let token = mint(&json!({"sub": "alice", "exp": exp}));
    let (mut expiring, _) = welcome(&server, &format!("/ws?token={token}"), &[]);
    let (mut staying, _) = welcome(
        &server,
        &format!("/ws?token={}", mint(&json!({"sub": "bob"}))),
        &[],
    );
    // A quiet client: nothing it sends brings the close, the timer does.
    let closed = loop {
        match expiring.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.expect("a close code"),
            Ok(_) => {}
            Err(e) => panic!("no Close before the read timeout: {e}"),
        }
    };
    let at = now_ms();
    assert_eq!(u16::from(closed.code), 4001);
    assert_eq!(closed.reason, "token expired");
    assert!(at >= exp * 1000, "closed {} ms before exp", exp * 1000 - at);
    assert!(
        at < exp * 1000 + 3000,
        "closed {} ms after exp",
        at - exp * 1000
    );
    wait_until("the expiry counted", Duration::from_secs(5), || {
        metric(&metrics_text(&server), "wsnotify_tokens_expired_total") == 1.0
    });
    staying
        .send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .unwrap();
    assert_eq!(
        next_of_type(&mut staying, "pong")["type"],
        "pong",
        "no exp: stays"
    );
}

#[test]
fn no_log_line_carries_a_token() {
    for format in ["text", "json"] {
        let server = start(&[
            "--log-level",
            "trace",
            "--log-format",
            format,
            "--enable-echo",
        ]);
        let good = mint(&json!({"sub": "alice"}));
        let bad = mint_with(
            &json!({"alg": "HS256"}),
            &json!({"sub": "eve"}),
            b"not the secret, but long enough!!",
        );
        let (client, _) = welcome(&server, &format!("/ws?token={good}"), &[]);
        drop(client);
        unauthorized(upgrade(&server, &format!("/ws?token={bad}"), ""));
        unauthorized(upgrade(
            &server,
            "/ws",
            &format!("Authorization: Bearer {bad}\r\n"),
        ));
        for target in [
            format!("/nope?token={good}"),
            format!("/health;token={good}"),
            format!("/token={good}"),
        ] {
            http(
                server.addr,
                "GET",
                &target,
                &[("Authorization", &format!("Bearer {good}"))],
                b"",
            );
        }
        assert_eq!(upgrade(&server, &format!("/echo?token={good}"), "").0, 101);
        wait_until("the requests logged", Duration::from_secs(10), || {
            server.log_count("http request") >= 5 && server.log_count("client disconnected") >= 1
        });
        // Targets that carry one in the path are logged, hidden.
        assert!(
            server.log_count("token=[redacted]") >= 2,
            "{:?}",
            server.log_lines()
        );
        let signatures: Vec<&str> = [&good, &bad]
            .iter()
            .map(|t| t.rsplit('.').next().unwrap())
            .collect();
        for line in server.log_lines() {
            for part in &signatures {
                assert!(!line.contains(part), "a token in the log: {line}");
            }
            assert!(!line.contains("eyJ"), "a token part in the log: {line}");
        }
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsnotify"));
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run wsnotify")
}

/// Arguments, variables, and the option or variable the error names.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn secret_options_exit_2_naming_the_option_and_never_showing_the_secret() {
    let short = "short-secret-31-bytes-long-1234";
    let long = "a-secret-of-at-least-32-bytes-long-0123";
    let cases: [Refusal; 5] = [
        (&["--token-secret", short], &[], "--token-secret"),
        (
            &[],
            &[("WSNOTIFY_TOKEN_SECRET", short)],
            "WSNOTIFY_TOKEN_SECRET",
        ),
        (
            &["--token-secret", long, "--token-secret-file", SECRET_FILE],
            &[],
            "--token-secret-file",
        ),
        (
            &["--token-secret-file", "/nonexistent/wsnotify-secret"],
            &[],
            "--token-secret-file",
        ),
        (
            &["--token-secret-file", SECRET_FILE],
            &[("WSNOTIFY_TOKEN_SECRET", long)],
            "--token-secret-file",
        ),
    ];
    for (args, env, names) in cases {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(names), "{names}: {stderr}");
        assert!(
            !stderr.contains(short) && !stderr.contains(long),
            "{stderr}"
        );
        assert!(
            !stderr.contains(std::str::from_utf8(SECRET).unwrap()),
            "{stderr}"
        );
    }
    let help = run(&["--help"], &[("WSNOTIFY_TOKEN_SECRET", long)]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--token-secret-file") && text.contains("--require-token"));
    assert!(!text.contains(long));
}
