//! Offsets, the history and resume on reconnect (`/ws?since=N&epoch=E`):
//! on one instance, and across instances behind one real redis-server
//! (started and stopped here).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::redis::{wait_redis, Redis};
use support::*;

fn broadcast(server: &Server, message: &str) {
    let body = serde_json::json!({ "message": message }).to_string();
    let (status, _, _) = http(server.addr, "POST", "/broadcast", &[], body.as_bytes());
    assert_eq!(status, 200);
}

/// The welcome, then the next `n` notifications as (offset, message).
fn notifications(client: &mut Client, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let m = next_of_type(client, "notification");
            let offset = m["offset"].as_u64().expect("offset");
            (offset, m["message"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn resume(server: &Server, since: u64, epoch: &str) -> (Client, Value) {
    let mut client = connect(server, &format!("/ws?since={since}&epoch={epoch}"));
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome");
    (client, welcome)
}

#[test]
fn a_resumed_client_gets_exactly_what_it_missed_then_live_messages() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut client = connect(&server, "/ws");
    let welcome = next_json(&mut client);
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    assert_eq!(welcome["offset"], 0);
    assert!(welcome.get("recovered").is_none());
    for i in 1..=3 {
        broadcast(&server, &format!("before {i}"));
    }
    let seen = notifications(&mut client, 3);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    drop(client);

    for i in 1..=100 {
        broadcast(&server, &format!("missed {i}"));
    }
    let (mut client, welcome) = resume(&server, 3, &epoch);
    assert_eq!(welcome["recovered"], true, "{welcome}");
    assert_eq!(welcome["replayed"], 100);
    assert_eq!(welcome["offset"], 103);
    assert_eq!(welcome["epoch"], epoch.as_str());
    let replayed = notifications(&mut client, 100);
    for (i, (offset, message)) in replayed.iter().enumerate() {
        assert_eq!(*offset, 4 + i as u64);
        assert_eq!(*message, format!("missed {}", i + 1));
    }
    broadcast(&server, "live");
    assert_eq!(notifications(&mut client, 1), [(104, "live".to_owned())]);

    let metrics = metrics_text(&server);
    assert_eq!(
        metric(&metrics, "wsnotify_resumes_total{result=\"recovered\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "wsnotify_messages_replayed_total"), 100.0);
    assert_eq!(metric(&metrics, "wsnotify_history_messages"), 104.0);
    let bytes = metric(&metrics, "wsnotify_history_bytes");
    assert!(bytes > 104.0 * 100.0, "{bytes}");
    let (_, _, body) = http(server.addr, "GET", "/status", &[], b"");
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["history"]["messages"], 104);
    assert_eq!(status["history"]["bytes"].as_f64(), Some(bytes));
}

#[test]
fn resume_at_or_beyond_the_current_offset() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut first = connect(&server, "/ws");
    let epoch = next_json(&mut first)["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        broadcast(&server, &format!("m{i}"));
    }
    notifications(&mut first, 3);

    let (mut level, welcome) = resume(&server, 3, &epoch);
    assert_eq!(
        (welcome["recovered"].as_bool(), welcome["replayed"].as_u64()),
        (Some(true), Some(0))
    );
    // Ahead of this instance (it lags the client's previous one): nothing
    // up to `since` comes again.
    let (mut ahead, welcome) = resume(&server, 8, &epoch);
    assert_eq!(
        (welcome["recovered"].as_bool(), welcome["replayed"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(welcome["offset"], 8);
    for i in 4..=10 {
        broadcast(&server, &format!("m{i}"));
    }
    let offsets = |seen: Vec<(u64, String)>| seen.into_iter().map(|s| s.0).collect::<Vec<_>>();
    assert_eq!(
        offsets(notifications(&mut level, 7)),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(offsets(notifications(&mut ahead, 2)), [9, 10]);
    broadcast(&server, "m11");
    assert_eq!(offsets(notifications(&mut ahead, 1)), [11]);
    assert!(quiet(&mut ahead, Duration::from_millis(200)));
}

#[test]
fn past_the_history_a_resume_is_too_old() {
    let server = Server::start(&["--notify-interval", "0", "--history-size", "10"]);
    let mut client = connect(&server, "/ws");
    let epoch = next_json(&mut client)["epoch"].as_str().unwrap().to_owned();
    drop(client);
    for i in 1..=20 {
        broadcast(&server, &format!("m{i}"));
    }
    let (mut old, welcome) = resume(&server, 5, &epoch);
    assert_eq!(welcome["recovered"], false);
    assert_eq!(welcome["reason"], "too_old");
    assert_eq!(welcome["offset"], 20);
    assert!(welcome.get("replayed").is_none());
    assert!(
        quiet(&mut old, Duration::from_millis(200)),
        "nothing replayed"
    );

    let (mut edge, welcome) = resume(&server, 10, &epoch);
    assert_eq!(welcome["replayed"], 10);
    assert_eq!(notifications(&mut edge, 10)[0], (11, "m11".to_owned()));

    let off = Server::start(&["--notify-interval", "0", "--history-size", "0"]);
    let mut client = connect(&off, "/ws");
    let epoch = next_json(&mut client)["epoch"].as_str().unwrap().to_owned();
    broadcast(&off, "numbered anyway");
    assert_eq!(notifications(&mut client, 1)[0].0, 1);
    let (_, welcome) = resume(&off, 1, &epoch);
    assert_eq!(welcome["reason"], "too_old");
    let metrics = metrics_text(&off);
    assert_eq!(
        metric(&metrics, "wsnotify_resumes_total{result=\"too_old\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "wsnotify_history_bytes"), 0.0);
}

#[test]
fn a_replay_many_times_the_queue_bound_is_sent_whole_as_the_client_reads() {
    // 400 messages of 60 KB: 24 MB, more than loopback's socket buffers
    // take at once and a hundred times the queue bound.
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--workers",
        "2",
        "--max-queue-bytes",
        "262144",
    ]);
    let mut first = connect(&server, "/ws");
    let epoch = next_json(&mut first)["epoch"].as_str().unwrap().to_owned();
    drop(first);
    let big = "r".repeat(60_000);
    for _ in 0..400 {
        broadcast(&server, &big);
    }
    let (mut client, welcome) = resume(&server, 0, &epoch);
    assert_eq!(welcome["replayed"], 400, "{welcome}");
    let mut offsets: Vec<u64> = notifications(&mut client, 100)
        .iter()
        .map(|n| n.0)
        .collect();
    // Broadcasts during the replay come after it, in order.
    for i in 1..=3 {
        broadcast(&server, &format!("during {i}"));
    }
    offsets.extend(notifications(&mut client, 303).iter().map(|n| n.0));
    assert_eq!(offsets, (1..=403).collect::<Vec<u64>>());
    broadcast(&server, "live");
    assert_eq!(notifications(&mut client, 1), [(404, "live".to_owned())]);
    let metrics = metrics_text(&server);
    assert_eq!(
        metric(&metrics, "wsnotify_slow_consumers_dropped_total"),
        0.0
    );
    assert_eq!(metric(&metrics, "wsnotify_replays_active"), 0.0);
    // Each counted once, when its last byte went to the socket; those that
    // came during the replay were sent by it too.
    assert_eq!(metric(&metrics, "wsnotify_messages_replayed_total"), 403.0);
}

#[test]
fn a_restarted_instance_has_a_new_epoch() {
    let mut server = Server::start(&["--notify-interval", "0"]);
    let mut client = connect(&server, "/ws");
    let epoch = next_json(&mut client)["epoch"].as_str().unwrap().to_owned();
    broadcast(&server, "one");
    notifications(&mut client, 1);
    drop(client);
    server.signal(SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    let restarted = Server::start(&["--notify-interval", "0"]);
    let (mut client, welcome) = resume(&restarted, 1, &epoch);
    assert_eq!(welcome["recovered"], false);
    assert_eq!(welcome["reason"], "unknown_epoch");
    assert_ne!(welcome["epoch"], epoch.as_str());
    assert_eq!(welcome["offset"], 0);
    assert!(quiet(&mut client, Duration::from_millis(200)));
    assert_eq!(
        metric(
            &metrics_text(&restarted),
            "wsnotify_resumes_total{result=\"unknown_epoch\"}"
        ),
        1.0
    );
}

#[test]
fn malformed_resume_parameters_are_refused_before_the_upgrade() {
    let server = Server::start(&["--notify-interval", "0"]);
    for (query, names) in [
        ("since=-1&epoch=e", "since"),
        ("since=1.5&epoch=e", "since"),
        ("since=x&epoch=e", "since"),
        ("since=1", "epoch"),
        ("epoch=e", "since"),
        ("since=1&epoch=", "epoch"),
    ] {
        let request = format!(
            "GET /ws?{query} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let (status, head, body) = raw_http(server.addr, request.as_bytes());
        assert_eq!(status, 400, "{query}");
        assert!(header_value(&head, "content-type").is_some_and(|t| t.contains("json")));
        let body: Value = serde_json::from_slice(&body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(names), "{query}: {error}");
    }
    assert_eq!(
        metric(
            &metrics_text(&server),
            "wsnotify_handshake_failures_total{reason=\"bad_resume\"}"
        ),
        6.0
    );
}

#[test]
fn only_messages_for_everyone_carry_an_offset() {
    let server = Server::start(&["--notify-interval", "300ms"]);
    let mut a = connect(&server, "/ws");
    let a_id = next_json(&mut a)["client_id"].as_str().unwrap().to_owned();
    let mut b = connect(&server, "/ws");
    next_json(&mut b);

    let periodic = next_of_type(&mut a, "notification");
    assert_eq!(periodic["source"], "periodic");
    assert!(periodic.get("offset").is_none(), "{periodic}");

    a.send(tungstenite::Message::text(
        r#"{"type":"chat","message":"hi"}"#,
    ))
    .unwrap();
    let chat = next_of_type(&mut b, "chat");
    assert_eq!(chat["offset"], 1, "{chat}");
    assert_eq!(next_of_type(&mut a, "chat")["offset"], 1);

    let body = format!(r#"{{"message":"just you","client_id":"{a_id}"}}"#);
    let (status, _, _) = http(server.addr, "POST", "/notify", &[], body.as_bytes());
    assert_eq!(status, 200);
    let personal = loop {
        let m = next_of_type(&mut a, "notification");
        if m["scope"] == "personal" {
            break m;
        }
    };
    assert!(personal.get("offset").is_none(), "{personal}");

    let direct = format!(r#"{{"type":"direct","to":"{a_id}","message":"psst"}}"#);
    b.send(tungstenite::Message::text(direct)).unwrap();
    let direct = next_of_type(&mut a, "direct");
    assert!(direct.get("offset").is_none(), "{direct}");

    a.send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .unwrap();
    let pong = next_of_type(&mut a, "pong");
    assert!(pong.get("offset").is_none());

    broadcast(&server, "to all");
    let all = loop {
        let m = next_of_type(&mut b, "notification");
        if m["source"] == "api" {
            break m;
        }
    };
    assert_eq!(all["offset"], 2, "{all}");
}

#[test]
fn workers_share_one_sequence_in_one_order() {
    let server = Server::start(&["--notify-interval", "0", "--workers", "3"]);
    let mut clients: Vec<Client> = (0..9).map(|_| connect(&server, "/ws")).collect();
    let workers: std::collections::HashSet<u64> = clients
        .iter_mut()
        .map(|c| next_json(c)["worker"].as_u64().unwrap())
        .collect();
    assert!(workers.len() > 1, "clients on one worker only: {workers:?}");
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let addr = server.addr;
            std::thread::spawn(move || {
                for i in 0..100 {
                    let body = format!(r#"{{"message":"p{p}-{i}"}}"#);
                    let (status, _, _) = http(addr, "POST", "/broadcast", &[], body.as_bytes());
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let mut orders = Vec::new();
    for client in &mut clients {
        let seen = notifications(client, 300);
        let offsets: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(offsets, (1..=300).collect::<Vec<_>>());
        orders.push(seen);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order for all");
}

/// What one client of the lossless-drain test saw: the offset of its first
/// welcome and every broadcast after it as (offset, message).
struct Seen {
    start: u64,
    messages: Vec<(u64, String)>,
    recovered: bool,
}

/// How reading a connection ended.
#[derive(Debug, PartialEq)]
enum Left {
    /// The shutdown notice, with its reconnect hint.
    Notice(Duration),
    /// The time given, or the message `end`.
    Done,
    /// The server closed the connection.
    Closed,
}

/// Reads until `until` or the message `end`, recording notifications; with
/// no `until`, stops at the shutdown notice.
fn follow(client: &mut Client, seen: &mut Vec<(u64, String)>, until: Option<Instant>) -> Left {
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    loop {
        if until.is_some_and(|at| Instant::now() >= at) {
            return Left::Done;
        }
        let text = match client.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Left::Closed
            }
            Err(e) => panic!("read: {e}"),
        };
        let m: Value = serde_json::from_str(text.as_str()).unwrap();
        match m["type"].as_str() {
            Some("notification") => {
                let message = m["message"].as_str().unwrap().to_owned();
                let offset = m["offset"].as_u64().expect("a broadcast has an offset");
                let end = message == "end";
                seen.push((offset, message));
                if end {
                    return Left::Done;
                }
            }
            Some("shutdown_notice") if until.is_none() => {
                let hint = m["reconnect_after_ms"].as_u64().unwrap();
                return Left::Notice(Duration::from_millis(hint));
            }
            _ => {}
        }
    }
}

/// One client: on A until its shutdown notice's hint has passed (or A
/// closes), then on B resuming from the last offset it had.
fn drain_client(a: std::net::SocketAddr, b: std::net::SocketAddr, ready: &AtomicUsize) -> Seen {
    let connect_to = |addr, path: &str| {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let url = format!("ws://{addr}{path}");
        tungstenite::client(url, stream).expect("handshake").0
    };
    let mut client = connect_to(a, "/ws");
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let welcome = next_json(&mut client);
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let start = welcome["offset"].as_u64().unwrap();
    ready.fetch_add(1, Ordering::SeqCst);
    let mut messages = Vec::new();
    let Left::Notice(hint) = follow(&mut client, &mut messages, None) else {
        panic!("no shutdown notice");
    };
    // A Close at the drain deadline (a hint near its end on a busy
    // machine) sends the client on at once.
    follow(&mut client, &mut messages, Some(Instant::now() + hint));
    drop(client);
    let since = messages.last().map_or(start, |m| m.0);
    let mut client = connect_to(b, &format!("/ws?since={since}&epoch={epoch}"));
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let welcome = next_json(&mut client);
    let recovered = welcome["recovered"] == true;
    follow(
        &mut client,
        &mut messages,
        Some(Instant::now() + Duration::from_secs(30)),
    );
    Seen {
        start,
        messages,
        recovered,
    }
}

#[test]
fn a_drain_behind_redis_loses_nothing_and_repeats_nothing() {
    const CLIENTS: usize = 1000;
    const RATE_PER_S: u64 = 100;
    let redis = Redis::start(None);
    let url = redis.url();
    let base = ["--notify-interval", "0", "--redis", url.as_str()];
    let mut a = Server::start(&[&base[..], &["--drain-timeout", "12s"]].concat());
    let b = Server::start(&base);
    wait_redis(&a, "connected");
    wait_redis(&b, "connected");

    let ready = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (a, b, ready) = (a.addr, b.addr, Arc::clone(&ready));
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || drain_client(a, b, &ready))
                .unwrap()
        })
        .collect();
    wait_until("every client connected", Duration::from_secs(30), || {
        ready.load(Ordering::SeqCst) == CLIENTS
    });

    // Broadcasts at 100/s through B: one second before the drain, through
    // the whole reconnect spread (under 10 s, before the 12 s deadline), and
    // two seconds after.
    let mut publisher = std::net::TcpStream::connect(b.addr).unwrap();
    let mut publish = |message: &str| {
        let body = serde_json::json!({ "message": message }).to_string();
        let request = format!(
            "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut publisher, request.as_bytes()).unwrap();
        let (status, head, _) = read_response(&mut publisher);
        assert_eq!(status, 200);
        // The server ends a keep-alive connection after 1,000 requests
        // (13 s at 100/s is more), as a client would, the publisher then
        // connects again.
        if head.to_ascii_lowercase().contains("connection: close") {
            publisher = std::net::TcpStream::connect(b.addr).unwrap();
        }
    };
    let started = Instant::now();
    let mut published = Vec::new();
    let mut drained = false;
    while started.elapsed() < Duration::from_secs(13) {
        let message = format!("m{}", published.len());
        publish(&message);
        published.push(message);
        if !drained && started.elapsed() >= Duration::from_secs(1) {
            a.signal(SIGTERM);
            drained = true;
        }
        let due = started + Duration::from_millis(1000 * published.len() as u64 / RATE_PER_S);
        // Pacing, not a wait: the publisher's fixed rate.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let rate = published.len() as f64 / started.elapsed().as_secs_f64();
    publish("end");
    published.push("end".to_owned());

    let (mut missing, mut duplicates, mut out_of_order, mut recovered) = (0, 0, 0, 0);
    for client in clients {
        let seen = client.join().expect("client thread");
        recovered += usize::from(seen.recovered);
        let mut offsets = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (i, (offset, message)) in seen.messages.iter().enumerate() {
            if !offsets.insert(*offset) || !names.insert(message.as_str()) {
                duplicates += 1;
            } else if *offset != seen.start + 1 + i as u64 {
                out_of_order += 1;
            }
        }
        missing += published
            .iter()
            .filter(|m| !names.contains(m.as_str()))
            .count();
    }
    println!(
        "lossless drain: {CLIENTS} clients moved from A to B, {} broadcasts each at {rate:.0}/s: \
         {recovered} recovered, {missing} missing, {duplicates} duplicates, {out_of_order} out of order",
        published.len()
    );
    assert_eq!((missing, duplicates, out_of_order), (0, 0, 0));
    assert_eq!(recovered, CLIENTS);
    assert!(a.wait_exit(Duration::from_secs(15)).is_some(), "A drained");
}

#[test]
fn instances_on_one_redis_share_the_epoch_and_the_offsets() {
    let redis = Redis::start(None);
    let url = redis.url();
    let args = [
        "--notify-interval",
        "0",
        "--redis",
        url.as_str(),
        "--workers",
        "2",
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    wait_redis(&a, "connected");
    wait_redis(&b, "connected");
    let mut on_a = connect(&a, "/ws");
    let mut on_b = connect(&b, "/ws");
    let wa = next_json(&mut on_a);
    let wb = next_json(&mut on_b);
    assert_eq!(wa["epoch"], wb["epoch"]);
    let epoch = wa["epoch"].as_str().unwrap().to_owned();
    let publishers: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .map(|addr| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let body = format!(r#"{{"message":"{addr}-{i}"}}"#);
                    let (status, _, _) = http(addr, "POST", "/broadcast", &[], body.as_bytes());
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let seen_a = notifications(&mut on_a, 100);
    let seen_b = notifications(&mut on_b, 100);
    assert_eq!(seen_a, seen_b, "same offsets, same order");
    let offsets: Vec<u64> = seen_a.iter().map(|s| s.0).collect();
    assert_eq!(offsets, (1..=100).collect::<Vec<_>>());

    // Missed on A, recovered from B's history.
    drop(on_a);
    for i in 0..5 {
        broadcast(&a, &format!("later {i}"));
    }
    let (mut resumed, welcome) = resume(&b, 100, &epoch);
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let replayed = welcome["replayed"].as_u64().unwrap() as usize;
    let mut seen = notifications(&mut resumed, replayed);
    if replayed < 5 {
        // B's subscription had not brought them all yet: the rest is live.
        seen.extend(notifications(&mut resumed, 5 - replayed));
    }
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (101..=105).collect::<Vec<_>>()
    );

    let mut fresh = connect(&b, "/ws");
    assert_eq!(next_json(&mut fresh)["epoch"], epoch.as_str());
    broadcast(&a, "live");
    assert_eq!(notifications(&mut fresh, 1), [(106, "live".to_owned())]);
}

#[test]
fn without_redis_broadcasts_go_out_unnumbered_and_break_recovery() {
    let mut redis = Redis::start(None);
    let url = redis.url();
    let server = Server::start(&["--notify-interval", "0", "--redis", url.as_str()]);
    wait_redis(&server, "connected");
    let mut client = connect(&server, "/ws");
    let epoch = next_json(&mut client)["epoch"].as_str().unwrap().to_owned();
    broadcast(&server, "numbered");
    assert_eq!(notifications(&mut client, 1)[0].0, 1);

    redis.stop();
    wait_redis(&server, "reconnecting");
    broadcast(&server, "unnumbered");
    let m = next_of_type(&mut client, "notification");
    assert_eq!(m["message"], "unnumbered");
    assert!(m.get("offset").is_none(), "{m}");
    let (_, welcome) = resume(&server, 1, &epoch);
    assert_eq!(welcome["recovered"], false);
    assert_eq!(welcome["reason"], "too_old");
}
