//! The external contract of SPEC.md, "HTTP endpoints" and "The /ws
//! protocol", checked against the real binary over real sockets.
//!
//! Every test starts its own server (port 0) and every read has a bounded
//! timeout (the helpers in `support` use 10 s), so a hang fails instead of
//! blocking the run. Tests that must show that something did *not* arrive
//! send a `ping` and require the very next message to be the `pong`.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;
use tungstenite::Message;

/// No periodic notifications: most tests want a quiet stream.
const QUIET: &[&str] = &["--notify-interval", "0"];

/// The request headers of a valid upgrade (the RFC 6455 example key).
const UPGRADE: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------- helpers

fn parse_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let (status, head, body) = http(server.addr, "GET", path, &[], b"");
    assert_eq!(
        header_value(&head, "content-type").as_deref(),
        Some("application/json"),
        "{path}: {head}"
    );
    (status, parse_body(&body))
}

fn status_json(server: &Server) -> Value {
    let (code, status) = get_json(server, "/status");
    assert_eq!(code, 200);
    status
}

/// POSTs `body` to `path`; answers the status, the head and the JSON body.
fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, Value) {
    let (status, head, body) = http(server.addr, "POST", path, headers, body.as_bytes());
    (status, head, parse_body(&body))
}

fn publish(server: &Server, body: Value) -> Value {
    let (status, head, answer) = post(server, "/broadcast", &[], &body.to_string());
    assert_eq!(status, 200, "{head}{answer}");
    assert_eq!(answer["status"], "sent", "{answer}");
    answer
}

/// Asserts a JSON error answer: the status and an `{"error": "..."}` body.
fn assert_error(response: (u16, String, Vec<u8>), status: u16) -> String {
    let (code, head, body) = response;
    assert_eq!(code, status, "{head}{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header_value(&head, "content-type").as_deref(),
        Some("application/json"),
        "{head}"
    );
    let body = parse_body(&body);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    head
}

/// Connects to /ws and reads the welcome; answers the client and its id.
fn join(server: &Server) -> (Client, String) {
    let mut client = connect(server, "/ws");
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let id = welcome["client_id"].as_str().expect("client_id").to_owned();
    (client, id)
}

fn send_text(client: &mut Client, text: &str) {
    client.send(Message::Text(text.into())).expect("send");
}

/// Sends a `ping` and requires the very next message to be its `pong`: proof
/// that nothing else was queued for this client, and that it is still open.
fn ping_pong(client: &mut Client) {
    send_text(client, r#"{"type":"ping"}"#);
    let next = next_json(client);
    assert_eq!(next["type"], "pong", "expected the pong next, got {next}");
}

/// A hand-written request to /ws with these header lines, one response read.
fn handshake(server: &Server, path: &str, lines: &[&str]) -> (u16, String, Vec<u8>) {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
    for line in lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    raw_http(server.addr, request.as_bytes())
}

fn upgrade_with(
    server: &Server,
    replace: &[(&str, &str)],
    extra: &[&str],
) -> (u16, String, Vec<u8>) {
    let mut lines: Vec<String> = UPGRADE.iter().map(|l| l.to_string()).collect();
    for (from, to) in replace {
        let line = lines
            .iter_mut()
            .find(|l| l.starts_with(from))
            .expect("replaced header");
        *line = to.to_string();
    }
    lines.retain(|l| !l.is_empty());
    lines.extend(extra.iter().map(|l| l.to_string()));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    handshake(server, "/ws", &lines)
}

fn wait_for_connections(server: &Server, n: u64) {
    wait_until(
        &format!("{n} connections in /status"),
        Duration::from_secs(5),
        || status_json(server)["connections"] == n,
    );
}

/// Reads messages until one satisfies `wanted`, for at most 5 s (a stream
/// of periodic notifications would otherwise keep a skipping loop alive).
fn next_where(client: &mut Client, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no {what} within 5 s");
        let message = next_json(client);
        if wanted(&message) {
            return message;
        }
    }
}

/// The next message of this `type` (others are skipped), within 5 s.
fn next_of(client: &mut Client, kind: &str) -> Value {
    next_where(client, kind, |m| m["type"] == kind)
}

/// Closes with the close handshake and waits for the server's Close.
fn close(mut client: Client) {
    client.close(None).expect("close");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no Close from the server within 5 s");
        match client.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("unexpected error while closing: {e}"),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, within a minute of now.
fn assert_rfc3339_utc_now(time: &str) {
    let bad = || panic!("not an RFC 3339 UTC time: {time:?}");
    let b = time.as_bytes();
    if b.len() < 20 || !time.ends_with('Z') {
        bad();
    }
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        if b[i] != c {
            bad();
        }
    }
    let fraction = &time[19..time.len() - 1];
    if !(fraction.is_empty()
        || (fraction.len() > 1
            && fraction.starts_with('.')
            && fraction[1..].bytes().all(|c| c.is_ascii_digit())))
    {
        bad();
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        let s = &time[r];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            bad();
        }
        s.parse().unwrap()
    };
    let (y, mo, d, h, mi, s) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    assert!(
        (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61,
        "{time}"
    );
    let unix = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((unix - now).abs() < 60, "{time} is not now");
}

/// Every server message has a `type` and an RFC 3339 UTC `time`.
fn assert_envelope(message: &Value) {
    assert!(message["type"].is_string(), "{message}");
    assert_rfc3339_utc_now(message["time"].as_str().expect("time is a string"));
}

/// The fields of `GET /status` and of the `status` message.
fn assert_status_fields(status: &Value, server: &Server) {
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    assert_eq!(status["pid"], server.child.id(), "{status}");
    assert_eq!(status["workers"], 1, "{status}");
    assert!(status["uptime_s"].is_u64(), "{status}");
    for counter in [
        "connections",
        "connections_total",
        "messages_sent",
        "messages_received",
    ] {
        assert!(status[counter].is_u64(), "{counter}: {status}");
    }
    assert_eq!(status["redis"], "disabled", "{status}");
    assert!(status.get("drain").is_none(), "no drain while running");
}

/// `{"message": "x…x"}` of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let body = format!("{{\"message\":\"{}\"}}", "x".repeat(len - 14));
    assert_eq!(body.len(), len);
    body
}

// ------------------------------------------------------------ HTTP: GETs

#[test]
fn index_serves_the_web_client() {
    let server = Server::start(QUIET);
    let (status, head, body) = http(server.addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(
        header_value(&head, "content-type").is_some_and(|t| t.starts_with("text/html")),
        "{head}"
    );
    let html = String::from_utf8(body).unwrap();
    for needle in [
        "<!DOCTYPE html>",
        "id=\"state\"",
        "id=\"client-id\"",
        "id=\"log\"",
        "id=\"chat-input\"",
        "id=\"chat-send\"",
        "id=\"connect\"",
        "id=\"disconnect\"",
        "id=\"user\"",
        "id=\"token\"",
        "id=\"channel\"",
        "id=\"join\"",
        "id=\"leave\"",
        "id=\"chat-channel\"",
        "/client.js",
        "/ws",
    ] {
        assert!(html.contains(needle), "the page lacks {needle}");
    }
}

#[test]
fn client_module_is_served_as_javascript_like_the_page() {
    let server = Server::start(QUIET);
    let (status, head, body) = http(server.addr, "GET", "/client.js", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header_value(&head, "content-type").as_deref(),
        Some("text/javascript; charset=utf-8"),
        "{head}"
    );
    let (_, page_head, _) = http(server.addr, "GET", "/", &[], b"");
    assert_eq!(
        header_value(&head, "cache-control"),
        header_value(&page_head, "cache-control")
    );
    let js = String::from_utf8(body).unwrap();
    for needle in [
        "export function connect",
        "new Socket",
        "since",
        "epoch",
        "reconnect_after_ms",
        "subscribe(channel, onMessage)",
        "unsubscribe(channel)",
        "options.token",
    ] {
        assert!(js.contains(needle), "the module lacks {needle}");
    }
    // HEAD: the same head, no body (read until the server closes).
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"HEAD /client.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        header_value(head, "content-length").and_then(|v| v.parse().ok()),
        Some(js.len())
    );
    assert_eq!(rest, "");
    assert_error(http(server.addr, "POST", "/client.js", &[], b""), 405);
}

#[test]
fn health_is_ok_while_serving() {
    let server = Server::start(QUIET);
    assert_eq!(get_json(&server, "/health"), (200, json!({"status": "ok"})));
}

#[test]
fn status_has_every_field_and_counts_connections_and_messages() {
    let server = Server::start(QUIET);
    let status = status_json(&server);
    assert_status_fields(&status, &server);
    for counter in [
        "connections",
        "connections_total",
        "messages_sent",
        "messages_received",
    ] {
        assert_eq!(status[counter], 0, "{counter}: {status}");
    }

    let (mut a, a_id) = join(&server); // sent 1 (welcome)
    let (mut b, _) = join(&server); // sent 2
    send_text(&mut a, r#"{"type":"chat","message":"count me"}"#); // received 1, sent 4
    assert_eq!(next_json(&mut a)["from"], a_id.as_str());
    assert_eq!(next_json(&mut b)["message"], "count me");
    ping_pong(&mut b); // received 2, sent 5

    let status = status_json(&server);
    assert_status_fields(&status, &server);
    assert_eq!(status["connections"], 2, "{status}");
    assert_eq!(status["connections_total"], 2, "{status}");
    assert_eq!(status["messages_sent"], 5, "{status}");
    assert_eq!(status["messages_received"], 2, "{status}");

    // The status message carries the same fields (received 3).
    send_text(&mut a, r#"{"type":"status_request"}"#);
    let message = next_json(&mut a);
    assert_eq!(message["type"], "status");
    assert_envelope(&message);
    assert_status_fields(&message, &server);
    assert_eq!(message["connections"], 2, "{message}");
    assert_eq!(message["connections_total"], 2, "{message}");
    assert_eq!(message["messages_received"], 3, "{message}");
    let sent = message["messages_sent"].as_u64().unwrap();
    assert!(sent == 5 || sent == 6, "{message}");

    let status = status_json(&server);
    assert_eq!(status["messages_sent"], 6, "{status}");
    assert_eq!(status["messages_received"], 3, "{status}");

    // Close frames are not data messages; the total stays.
    close(a);
    wait_for_connections(&server, 1);
    let status = status_json(&server);
    assert_eq!(status["connections_total"], 2, "{status}");
    assert_eq!(status["messages_sent"], 6, "{status}");
    assert_eq!(status["messages_received"], 3, "{status}");
    drop(b);
    wait_for_connections(&server, 0);
}

#[test]
fn metrics_expose_every_metric_with_help_and_type() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    send_text(&mut a, "hello"); // chat to a: sent 2, received 1
    assert_eq!(next_json(&mut a)["type"], "chat");
    publish(&server, json!({"message": "m"})); // sent 3, one notification
    assert_eq!(next_json(&mut a)["type"], "notification");
    assert_error(
        upgrade_with(
            &server,
            &[("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=")],
            &[],
        ),
        400,
    );

    let text = metrics_text(&server);
    let names = [
        ("wsnotify_connections_active", "gauge"),
        ("wsnotify_connections_total", "counter"),
        ("wsnotify_messages_sent_total", "counter"),
        ("wsnotify_messages_received_total", "counter"),
        ("wsnotify_bytes_sent_total", "counter"),
        ("wsnotify_bytes_received_total", "counter"),
        ("wsnotify_notifications_total", "counter"),
        ("wsnotify_handshake_failures_total", "counter"),
        ("wsnotify_slow_consumers_dropped_total", "counter"),
        ("wsnotify_draining", "gauge"),
        ("wsnotify_uptime_seconds", "gauge"),
    ];
    for (name, kind) in names {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name} lacks HELP"
        );
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "{name} lacks TYPE {kind}"
        );
    }
    // Every sample line belongs to a metric with HELP and TYPE, and every
    // name starts with wsnotify_.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(name.starts_with("wsnotify_"), "{line}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} lacks HELP"
        );
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} lacks TYPE"
        );
    }

    assert_eq!(metric(&text, "wsnotify_connections_active"), 1.0);
    assert_eq!(metric(&text, "wsnotify_connections_total"), 1.0);
    assert_eq!(metric(&text, "wsnotify_messages_sent_total"), 3.0);
    assert_eq!(metric(&text, "wsnotify_messages_received_total"), 1.0);
    assert!(metric(&text, "wsnotify_bytes_sent_total") > 0.0);
    assert!(metric(&text, "wsnotify_bytes_received_total") > 0.0);
    assert_eq!(metric(&text, "wsnotify_notifications_total"), 1.0);
    assert_eq!(
        metric(
            &text,
            "wsnotify_handshake_failures_total{reason=\"bad_key\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "wsnotify_handshake_failures_total{reason=\"capacity\"}"
        ),
        0.0
    );
    assert_eq!(metric(&text, "wsnotify_slow_consumers_dropped_total"), 0.0);
    assert_eq!(metric(&text, "wsnotify_draining"), 0.0);
    let uptime = metric(&text, "wsnotify_uptime_seconds");
    assert!((0.0..60.0).contains(&uptime), "{uptime}");

    // Values follow the status counters.
    let status = status_json(&server);
    let after = metrics_text(&server);
    assert_eq!(
        metric(&after, "wsnotify_messages_sent_total"),
        status["messages_sent"].as_f64().unwrap()
    );
    assert!(
        metric(&after, "wsnotify_bytes_received_total")
            >= metric(&text, "wsnotify_bytes_received_total")
    );
}

// ------------------------------------------------------ HTTP: publishing

#[test]
fn broadcast_reaches_every_client_with_all_fields() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, _) = join(&server);
    let instance = status_json(&server)["instance"].clone();

    let answer = publish(
        &server,
        json!({"message": "hello", "type": "alert", "data": {"k": [1, "two", null]}}),
    );
    assert_eq!(answer["recipients"], 2, "{answer}");
    let id = answer["id"].as_u64().expect("numeric id");
    for client in [&mut a, &mut b] {
        let n = next_json(client);
        assert_envelope(&n);
        assert_eq!(n["type"], "notification");
        assert_eq!(n["id"], id);
        assert_eq!(n["message"], "hello");
        assert_eq!(n["category"], "alert");
        assert_eq!(n["source"], "api");
        assert_eq!(n["scope"], "broadcast");
        assert!(n["instance"].as_str().is_some_and(|i| !i.is_empty()), "{n}");
        if instance.is_string() {
            assert_eq!(n["instance"], instance);
        }
        assert_eq!(n["data"], json!({"k": [1, "two", null]}));
    }
    // The instance names the issuer of the client ids.
    let n = {
        publish(&server, json!({"message": "which instance?"}));
        next_json(&mut a)
    };
    assert!(
        a_id.starts_with(&format!("{}-", n["instance"].as_str().unwrap())),
        "{a_id} vs {n}"
    );
}

#[test]
fn notify_is_an_alias_and_category_defaults_to_info() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    let mut last_id = 0;
    for (path, body, category, data) in [
        ("/notify", json!({"message": "one"}), "info", None),
        (
            "/notify",
            json!({"message": "two", "category": "warn"}),
            "warn",
            None,
        ),
        (
            "/broadcast",
            json!({"message": "three", "type": "t", "category": "c"}),
            "t",
            None,
        ),
        (
            "/broadcast",
            json!({"message": "four", "data": "plain"}),
            "info",
            Some(json!("plain")),
        ),
        (
            "/notify",
            json!({"message": "five", "data": [1, 2]}),
            "info",
            Some(json!([1, 2])),
        ),
        (
            "/notify",
            json!({"message": "six", "data": 7}),
            "info",
            Some(json!(7)),
        ),
    ] {
        let (status, head, answer) = post(&server, path, &[], &body.to_string());
        assert_eq!(status, 200, "{path} {body}: {head}{answer}");
        assert_eq!(answer["status"], "sent");
        assert_eq!(answer["recipients"], 1);
        let id = answer["id"].as_u64().unwrap();
        assert!(id > last_id, "ids increase: {id} after {last_id}");
        last_id = id;
        let n = next_json(&mut a);
        assert_eq!(n["type"], "notification");
        assert_eq!(n["id"], id);
        assert_eq!(n["message"], body["message"]);
        assert_eq!(n["category"], category, "{body}");
        assert_eq!(n["scope"], "broadcast");
        assert_eq!(n.get("data").cloned(), data, "{body}");
    }
    // No client: sent to nobody, still a notification with its own id.
    drop(a);
    wait_for_connections(&server, 0);
    let answer = publish(&server, json!({"message": "into the void"}));
    assert_eq!(answer["recipients"], 0);
    assert!(answer["id"].as_u64().unwrap() > last_id);
}

#[test]
fn publish_needs_no_content_type_and_accepts_any_declared_one() {
    let server = Server::start(QUIET);
    let body = r#"{"message":"typed"}"#;
    for headers in [
        &[][..],
        &[("Content-Type", "application/json")][..],
        &[("Content-Type", "text/plain")][..],
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
    ] {
        let (status, _, answer) = post(&server, "/broadcast", headers, body);
        assert_eq!(status, 200, "{headers:?}: {answer}");
    }
}

#[test]
fn personal_notification_goes_to_one_client_only() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, _) = join(&server);
    let answer = {
        let (status, head, answer) = post(
            &server,
            "/notify",
            &[],
            &json!({"message": "just for you", "client_id": a_id, "data": {"x": 1}}).to_string(),
        );
        assert_eq!(status, 200, "{head}{answer}");
        answer
    };
    assert_eq!(answer["status"], "sent");
    assert_eq!(answer["recipients"], 1);
    let n = next_json(&mut a);
    assert_envelope(&n);
    assert_eq!(n["type"], "notification");
    assert_eq!(n["id"], answer["id"]);
    assert_eq!(n["message"], "just for you");
    assert_eq!(n["scope"], "personal");
    assert_eq!(n["source"], "api");
    assert_eq!(n["category"], "info");
    assert_eq!(n["data"], json!({"x": 1}));
    ping_pong(&mut b); // b got nothing

    // An id of this instance that is not connected, and one that is not an
    // id at all: 404, and nobody gets anything.
    let instance = n["instance"].as_str().unwrap();
    for unknown in [format!("{instance}-0-999999"), "nobody".to_owned()] {
        let response = http(
            server.addr,
            "POST",
            "/broadcast",
            &[],
            json!({"message": "lost", "client_id": unknown})
                .to_string()
                .as_bytes(),
        );
        assert_error(response, 404);
    }
    // A client that left is unknown too.
    let (c, c_id) = join(&server);
    close(c);
    wait_for_connections(&server, 2);
    let response = http(
        server.addr,
        "POST",
        "/notify",
        &[],
        json!({"message": "gone", "client_id": c_id})
            .to_string()
            .as_bytes(),
    );
    assert_error(response, 404);
    ping_pong(&mut a);
    ping_pong(&mut b);
}

#[test]
fn publish_from_the_query_string_and_body_wins() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, _) = join(&server);

    let (status, _, answer) = post(
        &server,
        "/broadcast?message=hello+w%C3%B6rld%21&type=q",
        &[],
        "",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["recipients"], 2);
    let first = answer["id"].as_u64().unwrap();
    for client in [&mut a, &mut b] {
        let n = next_json(client);
        assert_eq!(n["message"], "hello wörld!");
        assert_eq!(n["category"], "q");
        assert_eq!(n["scope"], "broadcast");
    }

    let path = format!("/notify?message=only%20a&client_id={a_id}");
    let (status, _, answer) = post(&server, &path, &[], "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["recipients"], 1);
    assert!(answer["id"].as_u64().unwrap() > first);
    let n = next_json(&mut a);
    assert_eq!(n["message"], "only a");
    assert_eq!(n["scope"], "personal");
    ping_pong(&mut b);

    // A body wins over the query string, all of it.
    let path = format!("/broadcast?message=from-query&client_id={a_id}");
    let (status, _, answer) = post(&server, &path, &[], r#"{"message":"from-body"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["recipients"], 2);
    for client in [&mut a, &mut b] {
        let n = next_json(client);
        assert_eq!(n["message"], "from-body");
        assert_eq!(n["scope"], "broadcast");
    }

    // A query for an unknown client is a 404 like a body.
    assert_error(
        http(
            server.addr,
            "POST",
            "/notify?message=x&client_id=nobody",
            &[],
            b"",
        ),
        404,
    );
}

#[test]
fn publish_errors_are_400_with_a_json_error() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    for body in [
        "{",
        "not json",
        r#"{"message":"x"} trailing"#,
        "[1]",
        "\"message\"",
        "42",
        "null",
        "{}",
        r#"{"type":"alert"}"#,
        r#"{"message":5}"#,
        r#"{"message":null}"#,
    ] {
        assert_error(
            http(server.addr, "POST", "/broadcast", &[], body.as_bytes()),
            400,
        );
    }
    // An empty body without ?message=, and a query without message.
    assert_error(http(server.addr, "POST", "/notify", &[], b""), 400);
    assert_error(http(server.addr, "POST", "/notify?type=x", &[], b""), 400);
    // Nothing was published.
    ping_pong(&mut a);
    assert_eq!(
        metric(&metrics_text(&server), "wsnotify_notifications_total"),
        0.0
    );
}

#[test]
fn admin_token_guards_publishing_only() {
    // Without --admin-token only loopback peers may publish; every test
    // connects from 127.0.0.1, so the non-loopback 403 cannot be reached over
    // a real socket here. It is covered by `publish_authorization` in the
    // unit tests of src/app/routes.rs (peer 192.0.2.7 → 403).
    let server = Server::start(&["--notify-interval", "0", "--admin-token", "s3cret"]);
    let body = br#"{"message":"guarded"}"#;
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic czNjcmV0"),
        Some("Bearer s3cret2"),
        Some("s3cret"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        for path in ["/broadcast", "/notify"] {
            let head = assert_error(http(server.addr, "POST", path, &headers, body), 401);
            assert_eq!(
                header_value(&head, "www-authenticate").as_deref(),
                Some("Bearer"),
                "{auth:?}: {head}"
            );
        }
    }
    // The right token, from loopback.
    let (mut a, _) = join(&server); // /ws needs no token
    let (status, _, answer) = post(
        &server,
        "/broadcast",
        &[("Authorization", "Bearer s3cret")],
        r#"{"message":"authorized"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["recipients"], 1);
    assert_eq!(next_json(&mut a)["message"], "authorized");
    // GET endpoints stay open.
    for path in ["/", "/health", "/status", "/metrics"] {
        assert_eq!(http(server.addr, "GET", path, &[], b"").0, 200, "{path}");
    }
}

// ----------------------------------------------------------- HTTP: errors

#[test]
fn unknown_paths_are_404() {
    let server = Server::start(QUIET);
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/ws/extra"),
        ("GET", "/echo"),
    ] {
        assert_error(http(server.addr, method, path, &[], b""), 404);
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let server = Server::start(QUIET);
    for (method, path, allowed) in [
        ("POST", "/ws", "GET"),
        ("PUT", "/ws", "GET"),
        ("DELETE", "/health", "GET"),
        ("POST", "/status", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/", "GET"),
        ("GET", "/broadcast", "POST"),
        ("PUT", "/notify", "POST"),
    ] {
        let head = assert_error(http(server.addr, method, path, &[], b""), 405);
        let allow = header_value(&head, "allow").unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?}"
        );
    }
}

#[test]
fn body_of_64_kib_passes_and_one_byte_more_is_413() {
    let server = Server::start(QUIET);
    let (status, _, answer) = post(&server, "/broadcast", &[], &body_of_len(65536));
    assert_eq!(status, 200, "{answer}");
    let head = assert_error(
        http(
            server.addr,
            "POST",
            "/broadcast",
            &[],
            body_of_len(65537).as_bytes(),
        ),
        413,
    );
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
}

#[test]
fn head_over_8_kib_is_431() {
    let server = Server::start(QUIET);
    let near = "a".repeat(7 * 1024);
    assert_eq!(
        http(server.addr, "GET", "/health", &[("X-Fill", &near)], b"").0,
        200
    );
    let over = "a".repeat(9 * 1024);
    assert_error(
        http(server.addr, "GET", "/health", &[("X-Fill", &over)], b""),
        431,
    );
}

#[test]
fn upgrade_refusals() {
    let server = Server::start(QUIET);

    // GET /ws without Upgrade: 426 naming version 13.
    let head = assert_error(handshake(&server, "/ws", &[]), 426);
    assert_eq!(
        header_value(&head, "sec-websocket-version").as_deref(),
        Some("13")
    );
    let head = assert_error(http(server.addr, "GET", "/ws", &[], b""), 426);
    assert_eq!(
        header_value(&head, "sec-websocket-version").as_deref(),
        Some("13")
    );

    // A version other than 13: 426 naming 13.
    let head = assert_error(
        upgrade_with(
            &server,
            &[("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")],
            &[],
        ),
        426,
    );
    assert_eq!(
        header_value(&head, "sec-websocket-version").as_deref(),
        Some("13")
    );

    // Bad keys: too short, not base64, missing.
    for key in [
        "Sec-WebSocket-Key: c2hvcnQ=",
        "Sec-WebSocket-Key: not base64!!",
        "",
    ] {
        assert_error(
            upgrade_with(&server, &[("Sec-WebSocket-Key", key)], &[]),
            400,
        );
    }
    // Connection without the upgrade token, or none at all.
    for connection in ["Connection: keep-alive", ""] {
        assert_error(
            upgrade_with(&server, &[("Connection", connection)], &[]),
            400,
        );
    }

    // The same request done right is accepted.
    let (status, head, _) = upgrade_with(&server, &[], &[]);
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        header_value(&head, "sec-websocket-accept").as_deref(),
        Some(ACCEPT)
    );

    let text = metrics_text(&server);
    for (reason, count) in [
        ("not_upgrade", 2.0),
        ("bad_version", 1.0),
        ("bad_key", 3.0),
        ("bad_connection", 2.0),
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("wsnotify_handshake_failures_total{{reason=\"{reason}\"}}")
            ),
            count,
            "{reason}"
        );
    }
}

#[test]
fn disallowed_origin_is_403() {
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--allowed-origins",
        "https://app.example,http://localhost:8000",
    ]);
    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil",
    ] {
        assert_error(
            upgrade_with(&server, &[], &[&format!("Origin: {origin}")]),
            403,
        );
    }
    for origin in [
        "https://app.example",
        "HTTPS://APP.EXAMPLE",
        "http://localhost:8000",
    ] {
        let (status, head, _) = upgrade_with(&server, &[], &[&format!("Origin: {origin}")]);
        assert_eq!(status, 101, "{origin}: {head}");
    }
    // No Origin at all (a non-browser client) is allowed.
    let (status, head, _) = upgrade_with(&server, &[], &[]);
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_handshake_failures_total{reason=\"origin\"}"
        ),
        3.0
    );
}

#[test]
fn over_max_connections_is_503_with_retry_after_and_close() {
    let server = Server::start(&["--notify-interval", "0", "--max-connections", "2"]);
    let (mut a, _) = join(&server);
    let (b, _) = join(&server);

    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = "GET /ws HTTP/1.1\r\nHost: test\r\n".to_owned();
    for line in UPGRADE {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, body) = read_response(&mut stream);
    assert_error((status, head.clone(), body), 503);
    assert!(
        header_value(&head, "retry-after").is_some_and(|v| v.parse::<u64>().is_ok()),
        "{head}"
    );
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the server closes after a 503");
    assert!(rest.is_empty(), "nothing after the 503");

    // HTTP keeps working, and the refused client was never counted.
    let status = status_json(&server);
    assert_eq!(status["connections"], 2);
    assert_eq!(status["connections_total"], 2);
    ping_pong(&mut a);

    // Once a client leaves there is room again.
    drop(b);
    wait_for_connections(&server, 1);
    let (_c, _) = join(&server);
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_handshake_failures_total{reason=\"capacity\"}"
        ),
        1.0
    );
}

#[test]
fn unfinished_head_times_out_with_408() {
    let server = Server::start(&["--notify-interval", "0", "--header-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut stream);
    let waited = started.elapsed();
    assert_error((status, head.clone(), body), 408);
    assert!(
        // The server's timers tick every 100 ms, so allow a tick of slack.
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "408 after {waited:?}"
    );
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("closed after the 408");
    assert!(rest.is_empty());
}

// ------------------------------------------------- HTTP: connection reuse

#[test]
fn keep_alive_answers_several_requests_on_one_connection() {
    let server = Server::start(QUIET);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_ne!(header_value(&head, "connection").as_deref(), Some("close"));
    assert_eq!(parse_body(&body), json!({"status": "ok"}));

    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(parse_body(&body)["state"], "running");

    // A publish with a body, then two pipelined requests in one write.
    let body = r#"{"message":"kept alive"}"#;
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: k\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, answer) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(parse_body(&answer)["status"], "sent");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: k\r\n\r\nGET /nope HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    assert_eq!(read_response(&mut stream).0, 404);

    // Connection: close is honoured.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(header_value(&head, "connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn expect_100_continue_then_body() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = format!(
        "{{\"message\":\"continued\",\"data\":\"{}\"}}",
        "p".repeat(2000)
    );
    let head = format!(
        "POST /broadcast HTTP/1.1\r\nHost: e\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (status, _, interim) = read_response(&mut stream);
    assert_eq!(status, 100);
    assert!(interim.is_empty());
    stream.write_all(body.as_bytes()).unwrap();
    let (status, _, answer) = read_response(&mut stream);
    assert_eq!(status, 200);
    let answer = parse_body(&answer);
    assert_eq!(answer["recipients"], 1);
    let n = next_json(&mut a);
    assert_eq!(n["message"], "continued");
    assert_eq!(n["data"].as_str().map(str::len), Some(2000));
}

// ---------------------------------------------------------- /ws protocol

#[test]
fn welcome_comes_first_with_every_field() {
    let server = Server::start(QUIET);
    let mut client = connect(&server, "/ws");
    let welcome = next_json(&mut client);
    assert_envelope(&welcome);
    assert_eq!(welcome["type"], "welcome");
    assert!(
        welcome["client_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{welcome}"
    );
    assert_eq!(welcome["server"], "wsnotify");
    assert_eq!(welcome["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(welcome["worker"], 0);
    assert!(welcome["worker"].is_u64());
    ping_pong(&mut client);
}

#[test]
fn chat_reaches_everyone_including_the_sender() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, b_id) = join(&server);
    let (mut c, _) = join(&server);
    send_text(&mut a, r#"{"type":"chat","message":"hi all ✓"}"#);
    for client in [&mut a, &mut b, &mut c] {
        let chat = next_json(client);
        assert_envelope(&chat);
        assert_eq!(chat["type"], "chat");
        assert_eq!(chat["from"], a_id.as_str());
        assert_eq!(chat["message"], "hi all ✓");
    }
    send_text(&mut b, r#"{"type":"chat","message":""}"#);
    for client in [&mut a, &mut b, &mut c] {
        let chat = next_json(client);
        assert_eq!(
            (chat["from"].as_str(), chat["message"].as_str()),
            (Some(b_id.as_str()), Some(""))
        );
    }
}

#[test]
fn direct_goes_to_one_client_and_unknown_targets_are_errors() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, b_id) = join(&server);
    let (mut c, _) = join(&server);
    send_text(
        &mut a,
        &json!({"type": "direct", "to": b_id, "message": "psst"}).to_string(),
    );
    let direct = next_json(&mut b);
    assert_envelope(&direct);
    assert_eq!(direct["type"], "direct");
    assert_eq!(direct["from"], a_id.as_str());
    assert_eq!(direct["message"], "psst");
    ping_pong(&mut a); // the sender gets no copy and no error
    ping_pong(&mut c); // nobody else gets it
    ping_pong(&mut b);

    // To oneself works like to anyone.
    send_text(
        &mut a,
        &json!({"type": "direct", "to": a_id, "message": "me"}).to_string(),
    );
    assert_eq!(next_json(&mut a)["from"], a_id.as_str());

    let instance = a_id.rsplitn(3, '-').nth(2).unwrap().to_owned();
    for to in [
        "nobody".to_owned(),
        format!("{instance}-0-424242"),
        String::new(),
    ] {
        send_text(
            &mut a,
            &json!({"type": "direct", "to": to, "message": "lost"}).to_string(),
        );
        let error = next_json(&mut a);
        assert_envelope(&error);
        assert_eq!(error["type"], "error", "to {to:?}: {error}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
        ping_pong(&mut a);
    }
    ping_pong(&mut b);
    ping_pong(&mut c);
}

#[test]
fn ping_is_answered_with_pong() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    for _ in 0..3 {
        send_text(&mut a, r#"{"type":"ping"}"#);
        let pong = next_json(&mut a);
        assert_envelope(&pong);
        assert_eq!(pong["type"], "pong");
    }
}

#[test]
fn text_that_is_not_a_json_object_is_chat_as_typed() {
    let server = Server::start(QUIET);
    let (mut a, a_id) = join(&server);
    let (mut b, _) = join(&server);
    for text in ["hi", "\"hi\"", "42", "[1]", "null", "{broken", "  spaced  "] {
        send_text(&mut a, text);
        for client in [&mut a, &mut b] {
            let chat = next_json(client);
            assert_eq!(chat["type"], "chat", "{text}: {chat}");
            assert_eq!(chat["from"], a_id.as_str());
            assert_eq!(chat["message"], text, "exactly the text sent");
        }
    }
}

#[test]
fn bad_messages_get_an_error_and_the_connection_stays_open() {
    let server = Server::start(QUIET);
    let (mut a, _) = join(&server);
    let (mut b, _) = join(&server);
    for text in [
        "{}",
        r#"{"message":"no type"}"#,
        r#"{"type":"nope"}"#,
        r#"{"type":5}"#,
        r#"{"type":"chat"}"#,
        r#"{"type":"chat","message":5}"#,
        r#"{"type":"chat","message":null}"#,
        r#"{"type":"direct","message":"x"}"#,
        r#"{"type":"direct","to":"x"}"#,
    ] {
        send_text(&mut a, text);
        let error = next_json(&mut a);
        assert_envelope(&error);
        assert_eq!(error["type"], "error", "{text}: {error}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
        ping_pong(&mut a);
    }
    a.send(Message::Binary(vec![1, 2, 3])).unwrap();
    let error = next_json(&mut a);
    assert_eq!(error["type"], "error", "{error}");
    ping_pong(&mut a);
    // None of it reached anyone else.
    ping_pong(&mut b);
    assert_eq!(status_json(&server)["connections"], 2);
}

#[test]
fn periodic_notifications_count_up_with_increasing_ids() {
    let server = Server::start(&["--notify-interval", "300ms"]);
    let (mut a, _) = join(&server);
    let (mut b, _) = join(&server);
    // b joined after a, so every periodic notification b sees counts 2.
    let parse = |n: &Value| -> (u64, u64) {
        let text = n["message"].as_str().expect("message");
        let rest = text
            .strip_prefix("Periodic notification #")
            .unwrap_or_else(|| panic!("{text}"));
        let (count, clients) = rest
            .split_once(" - active clients: ")
            .unwrap_or_else(|| panic!("{text}"));
        (count.parse().unwrap(), clients.parse().unwrap())
    };
    let mut seen = Vec::new();
    let started = Instant::now();
    let first = next_of(&mut b, "notification");
    seen.push(first);
    let published = publish(&server, json!({"message": "between"}));
    while seen.len() < 4 {
        seen.push(next_of(&mut b, "notification"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let ids: Vec<u64> = seen.iter().map(|n| n["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "one sequence: {ids:?}"
    );
    let periodic: Vec<&Value> = seen.iter().filter(|n| n["source"] == "periodic").collect();
    assert_eq!(periodic.len(), 3, "{seen:?}");
    let api: Vec<&Value> = seen.iter().filter(|n| n["source"] == "api").collect();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0]["id"], published["id"]);
    let counts: Vec<(u64, u64)> = periodic.iter().map(|n| parse(n)).collect();
    for w in counts.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "#N counts up: {counts:?}");
    }
    for (n, (_, clients)) in periodic.iter().zip(&counts) {
        assert_envelope(n);
        assert_eq!(*clients, 2, "{n}");
        assert_eq!(n["category"], "info");
        assert_eq!(n["scope"], "broadcast");
        assert!(n["instance"].is_string());
        assert!(n.get("data").is_none());
    }
    // a got the same ones.
    let a_first = next_where(&mut a, "the first notification b saw", |n| {
        n["type"] == "notification" && n["id"] == seen[0]["id"]
    });
    assert_eq!(a_first["message"], seen[0]["message"]);
}

#[test]
fn notify_interval_zero_sends_no_periodic_notifications() {
    // The server's own ping is the clock: it comes 700 ms after the join,
    // and a periodic notification due by then would have come before it.
    let server = Server::start(&["--notify-interval", "0", "--ping-interval", "700ms"]);
    let (mut a, _) = join(&server);
    match a.read().expect("the server's ping") {
        Message::Ping(_) => {}
        other => panic!("expected the server's ping first, got {other:?}"),
    }
    ping_pong(&mut a);
    assert_eq!(
        metric(&metrics_text(&server), "wsnotify_notifications_total"),
        0.0
    );
}

#[test]
fn every_server_message_has_a_type_and_utc_time() {
    let server = Server::start(&["--notify-interval", "200ms"]);
    let (mut a, a_id) = join(&server);
    let (mut b, _) = join(&server);
    send_text(&mut a, "chat");
    send_text(
        &mut a,
        &json!({"type": "direct", "to": a_id, "message": "d"}).to_string(),
    );
    send_text(&mut a, r#"{"type":"ping"}"#);
    send_text(&mut a, r#"{"type":"status_request"}"#);
    send_text(&mut a, r#"{"type":"bogus"}"#);
    publish(&server, json!({"message": "api"}));
    let mut kinds = HashSet::new();
    let wanted = ["chat", "direct", "pong", "status", "error", "notification"];
    let end = Instant::now() + Duration::from_secs(5);
    while !wanted.iter().all(|k| kinds.contains(*k)) || !kinds.contains("periodic") {
        assert!(Instant::now() < end, "only saw {kinds:?}");
        let m = next_json(&mut a);
        assert_envelope(&m);
        if m["source"] == "periodic" {
            kinds.insert("periodic".to_owned());
        }
        kinds.insert(m["type"].as_str().unwrap().to_owned());
    }
    let m = next_json(&mut b);
    assert_envelope(&m);
}

#[test]
fn client_ids_are_unique_and_counts_return_to_zero() {
    let server = Server::start(QUIET);
    let mut clients = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let (client, id) = join(&server);
        assert!(ids.insert(id.clone()), "duplicate id {id}");
        clients.push(client);
    }
    assert_eq!(ids.len(), 50);
    let status = status_json(&server);
    assert_eq!(status["connections"], 50);
    assert_eq!(status["connections_total"], 50);
    assert_eq!(
        metric(&metrics_text(&server), "wsnotify_connections_active"),
        50.0
    );

    // Half leave with a close handshake, half just drop the TCP connection.
    let mut closing = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            closing.push(std::thread::spawn(move || close(client)));
        } else {
            drop(client);
        }
    }
    for handle in closing {
        handle.join().expect("clean close");
    }
    wait_for_connections(&server, 0);
    let text = metrics_text(&server);
    assert_eq!(metric(&text, "wsnotify_connections_active"), 0.0);
    assert_eq!(metric(&text, "wsnotify_connections_total"), 50.0);

    // New clients after that still get fresh ids.
    let (_c, id) = join(&server);
    assert!(!ids.contains(&id));
}

#[test]
fn several_workers_act_as_one_server() {
    let server = Server::start(&["--workers", "2", "--notify-interval", "250ms"]);
    // The kernel spreads connections over the workers: connect until both
    // have a client (bounded; all 64 on one worker has odds of 2^-63).
    let mut clients: Vec<(Client, String, u64)> = Vec::new();
    let mut ids = HashSet::new();
    while !(clients.iter().any(|c| c.2 == 0) && clients.iter().any(|c| c.2 == 1)) {
        assert!(clients.len() < 64, "every connection went to one worker");
        let mut client = connect(&server, "/ws");
        let welcome = next_of(&mut client, "welcome");
        let id = welcome["client_id"].as_str().unwrap().to_owned();
        let worker = welcome["worker"].as_u64().expect("worker");
        assert!(worker < 2, "{welcome}");
        assert!(ids.insert(id.clone()), "duplicate id {id}");
        clients.push((client, id, worker));
    }
    let count = clients.len();
    let status = status_json(&server);
    assert_eq!(status["workers"], 2);
    assert_eq!(status["connections"], count as u64);

    let zero = clients.iter().position(|c| c.2 == 0).unwrap();
    let one = clients.iter().position(|c| c.2 == 1).unwrap();

    // Chat from one worker reaches every client of both.
    let from = clients[zero].1.clone();
    send_text(&mut clients[zero].0, "across workers");
    for (client, _, _) in clients.iter_mut() {
        let chat = next_of(client, "chat");
        assert_eq!(
            (chat["from"].as_str(), chat["message"].as_str()),
            (Some(from.as_str()), Some("across workers"))
        );
    }

    // A direct message to a client of the other worker.
    let to = clients[one].1.clone();
    send_text(
        &mut clients[zero].0,
        &json!({"type": "direct", "to": to, "message": "over there"}).to_string(),
    );
    let direct = next_of(&mut clients[one].0, "direct");
    assert_eq!(direct["from"], from.as_str());
    assert_eq!(direct["message"], "over there");

    // A broadcast counts the clients of every worker; a personal message
    // finds its client on whichever worker holds it.
    let answer = publish(&server, json!({"message": "to all workers"}));
    assert_eq!(answer["recipients"], count as u64, "{answer}");
    for (client, _, _) in clients.iter_mut() {
        let n = next_where(client, "the broadcast", |n| n["source"] == "api");
        assert_eq!(n["id"], answer["id"]);
    }
    for target in [zero, one] {
        let id = clients[target].1.clone();
        let answer = publish(&server, json!({"message": "personal", "client_id": id}));
        assert_eq!(answer["recipients"], 1, "{answer}");
        let n = next_where(&mut clients[target].0, "the personal message", |n| {
            n["source"] == "api"
        });
        assert_eq!(n["id"], answer["id"]);
        assert_eq!(n["scope"], "personal");
    }

    // Periodic notifications go out once per process, to both workers.
    // Only periodic ones are left unread on this client.
    let a = next_of(&mut clients[zero].0, "notification");
    assert_eq!(a["source"], "periodic", "{a}");
    let b = next_where(&mut clients[one].0, "the same periodic notification", |n| {
        n["type"] == "notification" && n["id"].as_u64() >= a["id"].as_u64()
    });
    assert_eq!(
        b["id"], a["id"],
        "same periodic notification on both workers"
    );
    assert_eq!(b["message"], a["message"]);
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("active clients: {count}")),
        "{a}"
    );

    drop(clients);
    wait_for_connections(&server, 0);
}

/// Broadcasts of one loop turn are written at its end, in one go per
/// client; a client's own messages made later in the same turn must still
/// come after them. Chat, direct, chat and a ping in one TCP segment arrive
/// in that order.
#[test]
fn messages_from_one_read_keep_their_order() {
    let server = Server::start(QUIET);
    let (mut b, b_id) = join(&server);
    let mut a = raw_ws(&server, "/ws");
    let welcome = read_frame(&mut a).expect("welcome");
    let a_id = serde_json::from_slice::<Value>(&welcome.payload).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut burst = Vec::new();
    for text in [
        json!({"type": "chat", "message": "one"}),
        json!({"type": "direct", "to": b_id, "message": "two"}),
        json!({"type": "chat", "message": "three"}),
        json!({"type": "ping"}),
    ] {
        burst.extend(client_frame(0x81, text.to_string().as_bytes()));
    }
    a.write_all(&burst).unwrap();
    for expected in ["one", "two", "three"] {
        let message = next_json(&mut b);
        assert_eq!(message["message"], expected, "{message}");
        assert_eq!(message["from"], a_id.as_str());
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = read_frame(&mut a).expect("open");
        let message: Value = serde_json::from_slice(&frame.payload).unwrap();
        seen.push(message["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["chat", "chat", "pong"]);
}

/// Clients joining while broadcasts flow get their welcome first, and then
/// only broadcasts published after they joined.
#[test]
fn the_welcome_comes_first_while_broadcasts_flow() {
    let server = Server::start(QUIET);
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut published = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, _) =
                    http(addr, "POST", "/broadcast", &[], br#"{"message":"flow"}"#);
                assert_eq!(status, 200);
                published += 1;
            }
            published
        })
    };
    for _ in 0..50 {
        let mut client = connect(&server, "/ws");
        assert_eq!(next_json(&mut client)["type"], "welcome");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(publisher.join().unwrap() > 0);
}
