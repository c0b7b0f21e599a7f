//! Channels across instances through a real Redis: each test starts its own
//! redis-server on a free loopback port (no persistence) and stops it.

mod support;

use std::collections::BTreeMap;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::redis::{wait_redis, Redis};
use support::*;
use tungstenite::Message;
use wsnotify::node::redis::script;
use wsnotify::proto::resp::{self, Reply};

fn instance(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--notify-interval", "0", "--redis", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_redis(&server, "connected");
    server
}

const SECRET: &str = "redis channels e2e secret, 32 bytes at least";

/// An HS256 connection token for user `sub` under `SECRET`.
fn token(sub: &str) -> String {
    support::token::mint(&json!({ "sub": sub }), SECRET.as_bytes())
}

fn metric_of(server: &Server, sample: &str) -> u64 {
    metric(&metrics_text(server), sample) as u64
}

/// Waits until `server`'s workers follow `count` channels on Redis.
fn wait_following(server: &Server, count: u64) {
    wait_until(
        &format!("{count} channels followed on Redis"),
        Duration::from_secs(10),
        || metric_of(server, "wsnotify_redis_channel_subscriptions") == count,
    );
}

/// Subscribes `client` to each of `channels`, reading each answer.
fn subscribe(client: &mut Client, channels: &[String]) {
    for channel in channels {
        let json = format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#);
        client.send(Message::Text(json)).unwrap();
        let answer = next_json(client);
        assert_eq!(answer["type"], "subscribed", "{answer}");
    }
}

/// The next `n` messages of channels `client` gets: (channel, offset,
/// message), in arrival order.
fn channel_messages(client: &mut Client, n: usize) -> Vec<(String, u64, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = next_json(client);
        let Some(channel) = m["channel"].as_str() else {
            continue;
        };
        let offset = m["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("no offset: {m}"));
        let text = m["message"].as_str().unwrap_or_default();
        got.push((channel.to_owned(), offset, text.to_owned()));
    }
    got
}

fn publish(server: &Server, body: &str) -> serde_json::Value {
    let (status, _, answer) = http(server.addr, "POST", "/broadcast", &[], body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice(&answer).unwrap()
}

/// Runs a command the server would send, as built by `script`.
fn run(redis: &Redis, command: &[u8]) -> Reply {
    let (Reply::Array(Some(items)), _) = resp::parse(command).unwrap().unwrap() else {
        panic!("not a command")
    };
    let args: Vec<Vec<u8>> = items
        .into_iter()
        .map(|i| match i {
            Reply::Bulk(Some(b)) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = redis.command(&args);
    resp::parse(&reply).unwrap().expect("a whole reply").0
}

fn position(redis: &Redis, name: &str) -> (String, u64) {
    let reply = run(redis, &script::channel_position("ws", "fresh", name));
    script::parse_position(&reply).expect("epoch and offset")
}

#[test]
fn each_channel_is_numbered_from_one_in_the_stream_s_epoch_and_again_after_a_flush() {
    let redis = Redis::start(None);
    let (epoch, everyone) = script::parse_position(&run(&redis, &script::position("ws", "e1")))
        .expect("the stream's position");
    assert_eq!((epoch.as_str(), everyone), ("e1", 0));
    assert_eq!(position(&redis, "a"), ("e1".into(), 0), "never used: 0");
    for (name, want) in [("a", 1), ("a", 2), ("b", 1), ("user:x y", 1), ("a", 3)] {
        let reply = run(
            &redis,
            &script::publish_channel("ws", "e2", name, b"wsnotify1 x *\n{}"),
        );
        assert_eq!(reply, Reply::Integer(want), "{name}");
    }
    assert_eq!(position(&redis, "a"), ("e1".into(), 3));
    assert_eq!(
        run(&redis, &script::channel_hole("ws", "e2", "b", "me")),
        Reply::Integer(2),
        "a hole takes an offset of its channel"
    );
    let (_, everyone) =
        script::parse_position(&run(&redis, &script::position("ws", "e3"))).unwrap();
    assert_eq!(everyone, 0, "channels leave the everyone counter alone");
    let fields = redis.command(&[b"HLEN", b"ws:stream"]);
    assert_eq!(
        fields, b":5\r\n",
        "epoch, offset and a counter per channel used"
    );

    redis.command(&[b"FLUSHALL"]);
    let reply = run(&redis, &script::publish_channel("ws", "e4", "a", b"m"));
    assert_eq!(reply, Reply::Integer(1), "a new epoch numbers from 1");
    assert_eq!(position(&redis, "a"), ("e4".into(), 1));
    assert_eq!(
        position(&redis, "b"),
        ("e4".into(), 0),
        "every counter afresh"
    );
}

#[test]
fn channel_messages_reach_every_instance_s_subscribers_once_in_offset_order() {
    let redis = Redis::start(None);
    let a = instance(&redis, &["--workers", "2"]);
    let b = instance(&redis, &[]);
    let room = vec!["room".to_owned()];
    let mut subscribers: Vec<Client> = Vec::new();
    for server in [&a, &a, &a, &b] {
        let mut client = connect(server, "/ws");
        next_of_type(&mut client, "welcome");
        subscribe(&mut client, &room);
        subscribers.push(client);
    }
    let mut chatter = connect(&b, "/ws");
    next_of_type(&mut chatter, "welcome");
    subscribe(&mut chatter, &room);
    let mut outsider = connect(&a, "/ws");
    next_of_type(&mut outsider, "welcome");
    // A's two workers each follow the channel if each has a subscriber.
    wait_until("A follows room", Duration::from_secs(10), || {
        metric_of(&a, "wsnotify_redis_channel_subscriptions") >= 1
    });
    wait_following(&b, 1);
    let a_follows = metric_of(&a, "wsnotify_redis_channel_subscriptions");

    const EACH: usize = 25;
    for k in 0..EACH {
        publish(&a, &format!(r#"{{"message":"p{k}","channel":"room"}}"#));
        let chat = format!(r#"{{"type":"chat","channel":"room","message":"c{k}"}}"#);
        chatter.send(Message::Text(chat)).unwrap();
    }
    subscribers.push(chatter);
    for (i, client) in subscribers.iter_mut().enumerate() {
        let got = channel_messages(client, 2 * EACH);
        let offsets: Vec<u64> = got.iter().map(|(_, o, _)| *o).collect();
        let expected: Vec<u64> = (1..=2 * EACH as u64).collect();
        assert_eq!(
            offsets, expected,
            "subscriber {i}: every offset once, in order"
        );
        let mut texts: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 2 * EACH, "subscriber {i}: each message once");
        assert!(quiet(client, QUIET), "subscriber {i}: nothing more");
    }
    assert!(quiet(&mut outsider, QUIET), "not subscribed: nothing");
    eprintln!("A's workers following room: {a_follows}");

    // A resume on B from what a client of A had: recovered.
    let json = r#"{"type":"subscribe","channel":"room","since":40,"epoch":"E"}"#;
    let mut late = connect(&b, "/ws");
    let epoch = next_of_type(&mut late, "welcome")["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    late.send(Message::Text(json.replace('E', &epoch))).unwrap();
    let answer = next_of_type(&mut late, "subscribed");
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&true.into(), &10.into()),
        "{answer}"
    );
    let replayed: Vec<u64> = channel_messages(&mut late, 10)
        .iter()
        .map(|(_, o, _)| *o)
        .collect();
    assert_eq!(replayed, (41..=50).collect::<Vec<u64>>());
}

#[test]
fn a_user_message_reaches_the_user_s_connections_on_every_instance_once() {
    let redis = Redis::start(None);
    let secret = ["--token-secret", SECRET];
    let a = instance(&redis, &secret);
    let b = instance(&redis, &secret);
    let path = format!("/ws?token={}", token("ann"));
    let mut tabs = Vec::new();
    for server in [&a, &b, &b] {
        let mut tab = connect(server, &path);
        assert_eq!(next_of_type(&mut tab, "welcome")["user"], "ann");
        tabs.push(tab);
    }
    let mut bob = connect(&b, &format!("/ws?token={}", token("bob")));
    next_of_type(&mut bob, "welcome");
    // The user's channel is joined at connect, unanswered: wait until both
    // instances follow it on Redis (see docs/scaling.md).
    wait_following(&a, 1);
    wait_following(&b, 2);
    for k in 1..=3 {
        let answer = publish(&a, &format!(r#"{{"message":"hi {k}","user":"ann"}}"#));
        assert_eq!(answer["recipients"], 1, "A's own: {answer}");
    }
    for (i, tab) in tabs.iter_mut().enumerate() {
        let got = channel_messages(tab, 3);
        let expected: Vec<(String, u64, String)> = (1..=3)
            .map(|k| ("user:ann".to_owned(), k, format!("hi {k}")))
            .collect();
        assert_eq!(got, expected, "tab {i}");
        assert!(quiet(tab, QUIET), "tab {i}: once");
    }
    assert!(quiet(&mut bob, QUIET), "another user: nothing");
}

/// A raw Redis subscription, as another program would hold one.
fn redis_subscriber(redis: &Redis, topic: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(redis))).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&resp::command(&[b"SUBSCRIBE", topic.as_bytes()]))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("subscribe"));
    stream
}

fn port_of(redis: &Redis) -> u16 {
    redis.url().rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_user_message_is_numbered_in_the_user_s_channel_and_published_on_its_topic() {
    let redis = Redis::start(None);
    let a = instance(&redis, &[]);
    let mut sub = redis_subscriber(&redis, "wsnotify:ch:user:ann");
    let answer = publish(&a, r#"{"message":"hello ann","user":"ann"}"#);
    assert_eq!(answer["recipients"], 0, "{answer}");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("hello ann") {
        let n = sub.read(&mut buf).expect("the message on the user's topic");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let payload = text.split("$").last().unwrap();
    assert!(
        payload.contains(" 1 wsnotify1 "),
        "offset 1 of user:ann: {text}"
    );
}

/// What each instance takes from Redis when every channel's subscribers
/// are on one instance: only its own channels' messages, where one Redis
/// channel for everything brought every message to every instance.
#[test]
fn each_instance_receives_only_the_messages_of_its_clients_channels() {
    const INSTANCES: usize = 3;
    const CHANNELS: usize = 99;
    const PER_CHANNEL: usize = 3;
    let redis = Redis::start(None);
    let servers: Vec<Server> = (0..INSTANCES).map(|_| instance(&redis, &[])).collect();
    let mut clients = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let mine: Vec<String> = (0..CHANNELS)
            .filter(|c| c % INSTANCES == i)
            .map(|c| format!("c{c}"))
            .collect();
        let mut client = connect(server, "/ws");
        next_of_type(&mut client, "welcome");
        subscribe(&mut client, &mine);
        wait_following(server, mine.len() as u64);
        clients.push((client, mine.len()));
    }
    let before: Vec<u64> = servers
        .iter()
        .map(|s| metric_of(s, "wsnotify_redis_channel_received_total"))
        .collect();
    for round in 0..PER_CHANNEL {
        for c in 0..CHANNELS {
            publish(
                &servers[0],
                &format!(r#"{{"message":"m{round}","channel":"c{c}"}}"#),
            );
        }
    }
    let mut counts = BTreeMap::new();
    for (i, (client, channels)) in clients.iter_mut().enumerate() {
        let channels = *channels;
        let got = channel_messages(client, channels * PER_CHANNEL);
        let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (channel, offset, _) in got {
            per.entry(channel).or_default().push(offset);
        }
        assert!(
            per.values().all(|o| o == &[1, 2, 3]),
            "instance {i}: {per:?}"
        );
        assert!(quiet(client, QUIET));
        let received = metric_of(&servers[i], "wsnotify_redis_channel_received_total") - before[i];
        assert_eq!(received as usize, channels * PER_CHANNEL, "instance {i}");
        counts.insert(i, received);
    }
    let published = CHANNELS * PER_CHANNEL;
    // The same number of messages for everyone: every instance takes each.
    let broadcast_before: Vec<u64> = servers
        .iter()
        .map(|s| metric_of(s, "wsnotify_redis_received_total"))
        .collect();
    for k in 0..published {
        publish(&servers[0], &format!(r#"{{"message":"b{k}"}}"#));
    }
    let mut everyone = Vec::new();
    for (i, server) in servers.iter().enumerate().skip(1) {
        wait_until("every broadcast received", Duration::from_secs(10), || {
            metric_of(server, "wsnotify_redis_received_total") - broadcast_before[i]
                == published as u64
        });
        everyone.push(published);
    }
    eprintln!(
        "{INSTANCES} instances, {CHANNELS} channels, {published} channel messages: \
         each instance took {counts:?} from Redis; {published} broadcasts: instances 1 and 2 took {everyone:?}"
    );
}
