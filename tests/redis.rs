//! Fanout across instances through a real Redis: each test starts its own
//! redis-server on a free loopback port (no persistence) and stops it.

mod support;

use std::time::{Duration, Instant};

use support::redis::{redis_state, wait_redis, Redis};
use support::*;

fn instance(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--notify-interval", "0", "--redis", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_redis(&server, "connected");
    server
}

fn welcome(client: &mut Client) -> String {
    next_of_type(client, "welcome")["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn broadcast_chat_and_direct_cross_instances_exactly_once() {
    let redis = Redis::start(None);
    let a = instance(&redis, &["--workers", "2"]);
    let b = instance(&redis, &[]);
    let mut on_a = connect(&a, "/ws");
    let mut on_b = connect(&b, "/ws");
    let a_id = welcome(&mut on_a);
    let b_id = welcome(&mut on_b);
    assert_ne!(
        a_id.split('-').next(),
        b_id.split('-').next(),
        "instances have their own nonce"
    );

    let (status, _, body) = http(
        a.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"to all"}"#,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for client in [&mut on_a, &mut on_b] {
        let n = next_of_type(client, "notification");
        assert_eq!(n["message"], "to all");
        assert!(quiet(client, QUIET), "delivered twice");
    }

    on_b.send(tungstenite::Message::Text("hi from b".into()))
        .unwrap();
    for client in [&mut on_a, &mut on_b] {
        let chat = next_of_type(client, "chat");
        assert_eq!(
            (
                chat["from"].as_str().unwrap(),
                chat["message"].as_str().unwrap()
            ),
            (b_id.as_str(), "hi from b")
        );
        assert!(quiet(client, QUIET), "chat delivered twice");
    }

    let direct = format!(r#"{{"type":"direct","to":"{b_id}","message":"psst"}}"#);
    on_a.send(tungstenite::Message::Text(direct)).unwrap();
    let got = next_of_type(&mut on_b, "direct");
    assert_eq!(
        (
            got["from"].as_str().unwrap(),
            got["message"].as_str().unwrap()
        ),
        (a_id.as_str(), "psst")
    );
    assert!(
        quiet(&mut on_a, QUIET),
        "no error for a forwarded direct message"
    );

    let body = format!(r#"{{"message":"personal","client_id":"{b_id}"}}"#);
    let (status, _, answer) = http(a.addr, "POST", "/notify", &[], body.as_bytes());
    assert_eq!(status, 202);
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["status"], "forwarded");
    assert!(answer["id"].is_u64());
    assert_eq!(next_of_type(&mut on_b, "notification")["scope"], "personal");

    // An id of this instance that is gone is still a 404.
    let body = format!(
        r#"{{"message":"x","client_id":"{}-0-999"}}"#,
        a_id.split('-').next().unwrap()
    );
    assert_eq!(http(a.addr, "POST", "/notify", &[], body.as_bytes()).0, 404);

    let (_, _, metrics) = http(a.addr, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("wsnotify_redis_published_total 3"),
        "{metrics}"
    );
}

#[test]
fn periodic_notifications_stay_local() {
    let redis = Redis::start(None);
    let a = instance(&redis, &["--notify-interval", "200ms"]);
    let b = instance(&redis, &[]);
    let mut on_a = connect(&a, "/ws");
    let mut on_b = connect(&b, "/ws");
    welcome(&mut on_b);
    let periodic = next_of_type(&mut on_a, "notification");
    assert_eq!(periodic["source"], "periodic");
    // Published through Redis after A's periodic notification: had that
    // crossed too, it would reach B first.
    let (status, _, _) = http(
        a.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"marker"}"#,
    );
    assert_eq!(status, 200);
    let next = next_json(&mut on_b);
    assert_eq!(
        (next["type"].as_str(), next["message"].as_str()),
        (Some("notification"), Some("marker")),
        "a periodic notification crossed Redis: {next}"
    );
}

#[test]
fn fanout_resumes_after_redis_restarts() {
    let mut redis = Redis::start(None);
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let mut on_b = connect(&b, "/ws");
    welcome(&mut on_b);

    redis.stop();
    wait_redis(&a, "reconnecting");
    // Local delivery goes on while Redis is away.
    let mut on_a = connect(&a, "/ws");
    welcome(&mut on_a);
    assert_eq!(
        http(
            a.addr,
            "POST",
            "/broadcast",
            &[],
            br#"{"message":"while down"}"#
        )
        .0,
        200
    );
    assert_eq!(
        next_of_type(&mut on_a, "notification")["message"],
        "while down"
    );

    let restarted = Instant::now();
    redis.spawn();
    wait_redis(&a, "connected");
    wait_redis(&b, "connected");
    println!(
        "fanout resumed {:?} after Redis restarted",
        restarted.elapsed()
    );
    assert!(restarted.elapsed() < Duration::from_secs(8));
    assert_eq!(
        http(a.addr, "POST", "/broadcast", &[], br#"{"message":"back"}"#).0,
        200
    );
    assert_eq!(next_of_type(&mut on_b, "notification")["message"], "back");
    let (_, _, metrics) = http(a.addr, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        !metrics.contains("wsnotify_redis_reconnects_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wsnotify_redis_dropped_total 1\n"),
        "{metrics}"
    );
}

/// The next message that is a notification or an `epoch`, as (type,
/// message or epoch, offset).
fn next_in_stream(client: &mut Client) -> (String, String, Option<u64>) {
    loop {
        let m = next_json(client);
        let text = match m["type"].as_str() {
            Some("notification") => &m["message"],
            Some("epoch") => &m["epoch"],
            _ => continue,
        };
        return (
            m["type"].as_str().unwrap().to_owned(),
            text.as_str().unwrap().to_owned(),
            m["offset"].as_u64(),
        );
    }
}

/// Redis restarted without its data: the numbering starts again. The
/// instances take one new epoch, every connected client is told it (and
/// the offset the new numbering counts from) before the first message
/// numbered under it, and the old epoch resumes nothing.
#[test]
fn a_redis_restarted_empty_starts_one_new_epoch_told_to_every_client() {
    let mut redis = Redis::start(None);
    let a = instance(&redis, &["--workers", "2"]);
    let b = instance(&redis, &[]);
    let mut clients: Vec<Client> = (0..4).map(|_| connect(&a, "/ws")).collect();
    clients.push(connect(&b, "/ws"));
    let old: Vec<String> = clients
        .iter_mut()
        .map(|c| {
            next_of_type(c, "welcome")["epoch"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let old = &old[0];
    for i in 0..5 {
        let body = format!(r#"{{"message":"old {i}"}}"#);
        assert_eq!(
            http(a.addr, "POST", "/broadcast", &[], body.as_bytes()).0,
            200
        );
    }
    for client in &mut clients {
        let offsets: Vec<Option<u64>> = (0..5).map(|_| next_in_stream(client).2).collect();
        assert_eq!(offsets, (1..=5).map(Some).collect::<Vec<_>>());
    }

    redis.stop();
    wait_redis(&a, "reconnecting");
    wait_redis(&b, "reconnecting");
    redis.spawn();
    wait_redis(&a, "connected");
    wait_redis(&b, "connected");
    for i in 0..3 {
        let body = format!(r#"{{"message":"new {i}"}}"#);
        assert_eq!(
            http(b.addr, "POST", "/broadcast", &[], body.as_bytes()).0,
            200
        );
    }
    let mut epochs = Vec::new();
    for client in &mut clients {
        let (kind, epoch, offset) = next_in_stream(client);
        assert_eq!((kind.as_str(), offset), ("epoch", Some(0)), "{epoch}");
        assert_ne!(&epoch, old);
        let rest: Vec<_> = (0..3).map(|_| next_in_stream(client)).collect();
        let want: Vec<_> = (0..3)
            .map(|i| ("notification".into(), format!("new {i}"), Some(i + 1)))
            .collect();
        assert_eq!(rest, want);
        epochs.push(epoch);
    }
    assert!(
        epochs.iter().all(|e| *e == epochs[0]),
        "one epoch: {epochs:?}"
    );
    let mut fresh = connect(&a, "/ws");
    let welcome = next_of_type(&mut fresh, "welcome");
    assert_eq!(welcome["epoch"], epochs[0].as_str());
    for server in [&a, &b] {
        let mut resumed = connect(server, &format!("/ws?since=5&epoch={old}"));
        let welcome = next_of_type(&mut resumed, "welcome");
        assert_eq!(welcome["reason"], "unknown_epoch", "{welcome}");
    }
}

#[test]
fn foreign_messages_on_the_channel_are_ignored_and_logged() {
    let redis = Redis::start(Some("s3cret"));
    let a = instance(&redis, &["--redis-channel", "alerts"]);
    let mut client = connect(&a, "/ws");
    welcome(&mut client);
    redis.publish("alerts", b"hello from another program");
    redis.publish("alerts", b"wsnotify1 deadbeef *\nnot json");
    assert!(a.wait_for_log("foreign or malformed", Duration::from_secs(5)));
    assert!(quiet(&mut client, QUIET));
    // A well-formed envelope from another instance is delivered.
    redis.publish(
        "alerts",
        b"wsnotify1 deadbeef *\n{\"type\":\"notification\",\"message\":\"ok\"}",
    );
    assert_eq!(next_of_type(&mut client, "notification")["message"], "ok");
}

#[test]
fn a_wrong_password_keeps_retrying_and_says_why() {
    let redis = Redis::start(Some("right"));
    let url = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let server = Server::start(&["--notify-interval", "0", "--redis", &url]);
    assert!(
        server.wait_for_log("refused the handshake", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
    assert_eq!(redis_state(&server), "reconnecting");
    assert_eq!(http(server.addr, "GET", "/health", &[], b"").0, 200);
}
