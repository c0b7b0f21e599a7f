//! Channels on whole workers: subscribing and its answers, delivery to
//! subscribers only (and a cost that grows with them, not with the
//! worker's connections), each channel's own offsets across workers,
//! errors that keep the connection open, publishing to a channel or a
//! user, the counts, and the resume of a channel on subscribe.

use serde_json::Value;

use super::harness::{config, Harness, Peer};
use crate::app::channel_history::ChannelResume;
use crate::config::Config;
use crate::conn::Stage;
use crate::obs::metrics::{self, Limit};

impl Harness {
    /// Sends `json` and lets the nodes work; returns what the client got.
    fn ask(&mut self, peer: Peer, json: &str) -> Vec<Value> {
        self.text(peer, json);
        self.run();
        self.json(peer)
    }

    /// Subscribes `peer` to `channel`; returns the `subscribed` answer.
    fn subscribe(&mut self, peer: Peer, channel: &str) -> Value {
        let got = self.ask(
            peer,
            &format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["type"], "subscribed", "{got:?}");
        got[0].clone()
    }

    /// Publishes `message` with `target` (`"channel":"c"`, ...); returns
    /// the answer's status and body.
    fn publish_to(&mut self, node: usize, target: &str, message: &str) -> (u16, Value) {
        let body = format!(r#"{{"message":"{message}",{target}}}"#);
        let (_, answer) = self.post(node, "/broadcast", &body);
        let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        (answer.status, json)
    }
}

/// The messages of `channel` the client got, as (offset, message).
fn of(messages: &[Value], channel: &str) -> Vec<(u64, String)> {
    messages
        .iter()
        .filter(|m| m["channel"] == channel && m["type"] != "subscribed")
        .map(|m| {
            let offset = m["offset"].as_u64().expect("an offset");
            (offset, m["message"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn offsets(messages: &[Value], channel: &str) -> Vec<u64> {
    of(messages, channel).into_iter().map(|(o, _)| o).collect()
}

#[test]
fn a_channel_message_reaches_its_subscribers_only_numbered_from_one() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let (b, welcome) = h.ws(0, "/ws");
    let outsider = h.client(0);
    let answer = h.subscribe(a, "news");
    let epoch = h.process.stream().epoch().to_owned();
    assert_eq!(
        (&answer["channel"], &answer["offset"], &answer["epoch"]),
        (&"news".into(), &0.into(), &epoch.as_str().into())
    );
    h.subscribe(b, "news");
    let (status, body) = h.publish_to(0, r#""channel":"news""#, "one");
    assert_eq!((status, &body["recipients"]), (200, &2.into()), "{body}");
    let got = h.json(a);
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(
        (
            &n["type"],
            &n["scope"],
            &n["channel"],
            &n["offset"],
            &n["source"]
        ),
        (
            &"notification".into(),
            &"channel".into(),
            &"news".into(),
            &1.into(),
            &"api".into()
        )
    );
    assert_eq!(offsets(&h.json(b), "news"), [1]);
    assert!(h.json(outsider).is_empty());

    // Chat on the channel takes the channel's next offset; a broadcast
    // keeps its own numbers.
    h.text(b, r#"{"type":"chat","channel":"news","message":"hi"}"#);
    h.run();
    let got = h.json(a);
    assert_eq!(
        (&got[0]["type"], &got[0]["from"], &got[0]["offset"]),
        (&"chat".into(), &welcome["client_id"], &2.into())
    );
    assert_eq!(offsets(&h.json(b), "news"), [2], "the sender too");
    assert!(h.json(outsider).is_empty());
    h.text(outsider, "to everyone");
    h.run();
    let everyone = h.json(a);
    assert_eq!(
        (&everyone[0]["offset"], everyone[0].get("channel")),
        (&1.into(), None)
    );
    let late = h.client(0);
    let again = h.subscribe(late, "news");
    assert_eq!(again["offset"], 2, "the channel's last offset");
}

#[test]
fn the_cost_of_a_channel_message_grows_with_its_subscribers_not_the_connections() {
    let mut h = Harness::workers(1);
    let clients: Vec<Peer> = (0..1_000).map(|_| h.client(0)).collect();
    for peer in &clients[..3] {
        h.subscribe(*peer, "small");
    }
    let before = h.nodes[0].channels.visited();
    let (status, body) = h.publish_to(0, r#""channel":"small""#, "m");
    assert_eq!((status, &body["recipients"]), (200, &3.into()));
    assert_eq!(h.nodes[0].channels.visited() - before, 3);
    let (_, body) = h.publish_to(0, r#""channel":"empty""#, "m");
    assert_eq!(body["recipients"], 0, "nobody: not an error");
    assert_eq!(h.nodes[0].channels.visited() - before, 3);
    assert_eq!(offsets(&h.json(clients[2]), "small"), [1]);
    assert!(h.json(clients[3]).is_empty());
    assert_eq!(metrics::get(&h.process.stats.channel_deliveries), 3);
}

#[test]
fn subscribing_twice_answers_twice_and_delivers_once() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    h.subscribe(a, "c");
    h.subscribe(a, "c");
    h.publish_to(0, r#""channel":"c""#, "once");
    assert_eq!(offsets(&h.json(a), "c"), [1]);
    let status = h.get(0, "/status").json();
    assert_eq!(
        (&status["channels"], &status["subscriptions"]),
        (&1.into(), &1.into())
    );
}

#[test]
fn refused_channel_messages_name_the_channel_and_keep_the_connection() {
    let mut h = Harness::new(Config {
        max_channels_per_client: 2,
        ..config()
    });
    let a = h.client(0);
    h.subscribe(a, "one");
    h.subscribe(a, "two");
    for (json, channel) in [
        (r#"{"type":"subscribe","channel":"three"}"#, "three"),
        (r#"{"type":"subscribe","channel":"a b"}"#, "a b"),
        (r#"{"type":"subscribe","channel":"user:ann"}"#, "user:ann"),
        (
            r#"{"type":"subscribe","channel":"private:team"}"#,
            "private:team",
        ),
        (
            r#"{"type":"chat","channel":"other","message":"m"}"#,
            "other",
        ),
        (
            r#"{"type":"chat","channel":"user:ann","message":"m"}"#,
            "user:ann",
        ),
    ] {
        let got = h.ask(a, json);
        assert_eq!(got.len(), 1, "{json}: {got:?}");
        assert_eq!(
            (&got[0]["type"], &got[0]["channel"]),
            (&"error".into(), &channel.into()),
            "{json}"
        );
        assert!(got[0]["error"].is_string());
        assert_eq!(h.stage(a), Some(Stage::Ws));
    }
    let got = h.ask(a, r#"{"type":"subscribe","channel":"three"}"#);
    assert!(got[0]["error"].as_str().unwrap().contains("at most 2"));
    // Still a client: still subscribed, still answered.
    h.publish_to(0, r#""channel":"two""#, "m");
    assert_eq!(offsets(&h.json(a), "two"), [1]);
    assert_eq!(h.ask(a, r#"{"type":"ping"}"#)[0]["type"], "pong");
    // Leaving one makes room for another.
    let got = h.ask(a, r#"{"type":"unsubscribe","channel":"one"}"#);
    assert_eq!(
        (&got[0]["type"], &got[0]["channel"]),
        (&"unsubscribed".into(), &"one".into())
    );
    h.subscribe(a, "three");
}

/// `--max-channels`: clients that subscribe to fresh channels and a
/// publisher that publishes to fresh channels never make the process hold
/// more; past it a subscribe is refused (the connection stays open), a
/// message reaches nobody and is not kept, and the channels nobody joined
/// make room for new ones, oldest first.
#[test]
fn the_channels_held_stay_within_max_channels() {
    let mut h = Harness::new(Config {
        workers: 2,
        max_channels: 8,
        max_channels_per_client: 4,
        history_size: 5,
        ..config()
    });
    let held = |h: &mut Harness| h.get(0, "/status").json()["memory"]["channels_held"].clone();
    let clients: Vec<Peer> = (0..5).map(|i| h.client(i % 2)).collect();
    let mut refused = 0;
    for (i, client) in clients.iter().enumerate() {
        for j in 0..4 {
            let got = h.ask(
                *client,
                &format!(r#"{{"type":"subscribe","channel":"c{i}-{j}"}}"#),
            );
            if got[0]["type"] == "error" {
                assert_eq!(got[0]["error"], "the server holds too many channels");
                refused += 1;
            }
            assert!(held(&mut h).as_u64().unwrap() <= 8);
        }
    }
    assert_eq!(refused, 12);
    assert_eq!(h.ask(clients[4], r#"{"type":"ping"}"#)[0]["type"], "pong");
    // A channel already held takes no room.
    h.subscribe(clients[4], "c0-0");
    for i in 0..20 {
        let (status, body) = h.publish_to(i % 2, &format!(r#""channel":"p{i}""#), "m");
        assert_eq!((status, &body["recipients"]), (200, &0.into()), "{body}");
        assert_eq!(held(&mut h), 8);
    }
    let hits = h.process.stats.limit_hits(Limit::MaxChannels);
    assert_eq!(hits, 32);
    let metrics = String::from_utf8(h.get(0, "/metrics").body).unwrap();
    assert!(metrics.contains("wsnotify_limit_hits_total{limit=\"max_channels\"} 32\n"));
    // A channel left by all is forgotten; one published to then waits
    // with its message, and gives its place to a subscriber.
    h.ask(clients[0], r#"{"type":"unsubscribe","channel":"c0-1"}"#);
    assert_eq!(held(&mut h), 7);
    h.publish_to(0, r#""channel":"kept""#, "m");
    assert_eq!(held(&mut h), 8);
    let epoch = h.process.stream().epoch().to_owned();
    assert!(matches!(
        h.process.stream().channel_resume("kept", 0, &epoch),
        ChannelResume::Recovered { replayed: 1, .. }
    ));
    h.subscribe(clients[2], "newcomer");
    assert_eq!(held(&mut h), 8);
    assert_eq!(
        h.process.stream().channel_resume("kept", 0, &epoch),
        ChannelResume::TooOld
    );
    h.publish_to(1, r#""channel":"newcomer""#, "hi");
    // Numbered above the floor "kept" left: no offset names two messages.
    assert_eq!(offsets(&h.json(clients[2]), "newcomer"), [2]);
}

#[test]
fn after_unsubscribe_no_message_and_the_counts_follow() {
    let mut h = Harness::workers(2);
    let (a, b) = (h.client(0), h.client(1));
    h.subscribe(a, "z");
    h.subscribe(a, "y");
    h.subscribe(b, "y");
    let list = h.get(0, "/channels").json();
    assert_eq!(
        list,
        serde_json::json!({"channels": [
            {"channel": "y", "subscribers": 2, "offset": 0},
            {"channel": "z", "subscribers": 1, "offset": 0},
        ]})
    );
    let status = h.get(1, "/status").json();
    assert_eq!(
        (&status["channels"], &status["subscriptions"]),
        (&2.into(), &3.into())
    );
    let metrics = String::from_utf8(h.get(0, "/metrics").body).unwrap();
    assert!(metrics.contains("wsnotify_channels 2\n"), "{metrics}");
    assert!(metrics.contains("wsnotify_subscriptions 3\n"));

    let got = h.ask(a, r#"{"type":"unsubscribe","channel":"y"}"#);
    assert_eq!(got[0]["type"], "unsubscribed");
    let got = h.ask(a, r#"{"type":"unsubscribe","channel":"never"}"#);
    assert_eq!(got[0]["type"], "unsubscribed", "answered all the same");
    h.publish_to(1, r#""channel":"y""#, "m");
    assert!(h.json(a).is_empty());
    assert_eq!(offsets(&h.json(b), "y"), [1]);

    // A client that leaves leaves its channels.
    h.fin(a);
    h.run();
    let list = h.get(0, "/channels").json();
    assert_eq!(
        list,
        serde_json::json!({"channels": [{"channel": "y", "subscribers": 1, "offset": 1}]})
    );
    assert_eq!(h.nodes[0].channels.subscriptions(), 0);
    assert_eq!(h.nodes[0].channels.len(), 0);
}

#[test]
fn a_subscriber_on_another_worker_gets_every_message_in_offset_order() {
    let mut h = Harness::workers(2);
    let (near, far) = (h.client(0), h.client(1));
    h.subscribe(near, "c");
    h.subscribe(far, "c");
    for n in 0..10 {
        // Published on either worker, chat from either.
        h.publish_to(n % 2, r#""channel":"c""#, &format!("p{n}"));
        h.text(
            if n % 2 == 0 { far } else { near },
            r#"{"type":"chat","channel":"c","message":"x"}"#,
        );
    }
    h.run();
    let expected: Vec<u64> = (1..=20).collect();
    assert_eq!(offsets(&h.json(far), "c"), expected);
    assert_eq!(offsets(&h.json(near), "c"), expected);
}

#[test]
fn a_user_publish_reaches_the_users_channel_and_counts_zero_without_it() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let (status, body) = h.publish_to(0, r#""user":"ann""#, "hello");
    assert_eq!(
        (status, &body["recipients"], &body["status"]),
        (200, &0.into(), &"sent".into())
    );
    assert!(h.json(a).is_empty());
    for bad in [
        r#""user":"""#,
        r#""channel":"a b""#,
        r#""channel":"a","user":"b""#,
        r#""channel":"a","client_id":"x-0-1""#,
    ] {
        assert_eq!(h.publish_to(0, bad, "m").0, 400, "{bad}");
    }
}

/// Publishes `count` messages of `size` bytes to `channel`.
fn fill(h: &mut Harness, channel: &str, count: usize, size: usize) {
    for _ in 0..count {
        let target = format!(r#""channel":"{channel}""#);
        assert_eq!(h.publish_to(0, &target, &"r".repeat(size)).0, 200);
    }
}

fn resume_json(channel: &str, since: u64, epoch: &str) -> String {
    format!(r#"{{"type":"subscribe","channel":"{channel}","since":{since},"epoch":"{epoch}"}}"#)
}

#[test]
fn a_resume_on_subscribe_replays_after_the_answer_then_goes_live() {
    let mut h = Harness::new(Config {
        history_size: 5,
        ..config()
    });
    let keeper = h.client(0);
    h.subscribe(keeper, "c");
    fill(&mut h, "c", 8, 10);
    let epoch = h.process.stream().epoch().to_owned();
    let a = h.client(0);
    let got = h.ask(a, &resume_json("c", 5, &epoch));
    assert_eq!(
        (
            &got[0]["type"],
            &got[0]["recovered"],
            &got[0]["replayed"],
            &got[0]["offset"]
        ),
        (&"subscribed".into(), &true.into(), &3.into(), &8.into()),
        "{got:?}"
    );
    assert_eq!(offsets(&got, "c"), [6, 7, 8]);
    fill(&mut h, "c", 1, 10);
    assert_eq!(offsets(&h.json(a), "c"), [9]);

    let b = h.client(0);
    let got = h.ask(b, &resume_json("c", 2, &epoch));
    assert_eq!(
        (&got[0]["recovered"], &got[0]["reason"]),
        (&false.into(), &"too_old".into())
    );
    assert_eq!(got.len(), 1, "nothing replayed");
    let got = h.ask(b, &resume_json("c", 2, "other"));
    assert_eq!(got[0]["reason"], "unknown_epoch");
    // Up to date, or ahead: recovered, nothing sent again.
    let got = h.ask(b, &resume_json("c", 9, &epoch));
    assert_eq!(
        (&got[0]["recovered"], &got[0]["replayed"], got.len()),
        (&true.into(), &0.into(), 1)
    );
    let c = h.client(0);
    let got = h.ask(c, &resume_json("c", 11, &epoch));
    assert_eq!((&got[0]["offset"], got.len()), (&11.into(), 1));
    fill(&mut h, "c", 3, 10);
    assert_eq!(offsets(&h.json(c), "c"), [12], "nothing up to its since");
    assert_eq!(offsets(&h.json(b), "c"), [10, 11, 12]);
}

#[test]
fn a_channel_replay_larger_than_the_queue_bound_is_paced_with_live_messages_after_it() {
    const BOUND: usize = 64 * 1024;
    let mut h = Harness::new(Config {
        workers: 2,
        max_queue_bytes: BOUND,
        max_history_bytes: 64 << 20,
        ..config()
    });
    let keeper = h.client(0);
    h.subscribe(keeper, "big");
    fill(&mut h, "big", 50, 10_000);
    let epoch = h.process.stream().epoch().to_owned();
    let a = h.accept(1);
    h.send(a, super::harness::upgrade("/ws").as_bytes());
    h.run();
    h.response(a).expect("upgraded");
    let _ = h.json(a);
    h.socket(a).room = 16 * 1024;
    h.text(a, &resume_json("big", 0, &epoch));
    h.run();
    let mut got = Vec::new();
    let mut answer = None;
    for step in 0..2_000 {
        for m in h.json(a) {
            if m["type"] == "subscribed" {
                answer = Some(m);
            } else {
                got.push(m["offset"].as_u64().unwrap());
            }
        }
        let held = h.nodes[1].conns.get(a.key).map_or(0, |c| c.out().held());
        assert!(held <= BOUND, "{held} queued");
        assert_eq!(h.stage(a), Some(Stage::Ws), "after {} messages", got.len());
        if step % 10 == 0 && step < 100 {
            fill(&mut h, "big", 1, 10_000);
        }
        let _ = h.take(keeper);
        if step >= 100 && got.len() as u64 == h.process.stream().channel_last("big") {
            break;
        }
        h.room(a, 16 * 1024);
        h.run();
    }
    let answer = answer.expect("answered first");
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&true.into(), &50.into())
    );
    let last = h.process.stream().channel_last("big");
    assert_eq!(last, 60);
    assert_eq!(
        got,
        (1..=last).collect::<Vec<u64>>(),
        "no gap, no duplicate"
    );
    assert_eq!(metrics::get(&h.process.stats.slow_consumers_dropped), 0);
    h.room(a, usize::MAX);
    fill(&mut h, "big", 1, 10);
    assert_eq!(offsets(&h.json(a), "big"), [61], "live once caught up");
    assert_eq!(metrics::get(&h.process.stats.replays_active), 0);
}

#[test]
fn a_channel_replay_whose_next_message_left_the_history_is_closed_with_4002() {
    let mut h = Harness::new(Config {
        history_size: 20,
        max_queue_bytes: 64 * 1024,
        ..config()
    });
    let keeper = h.client(0);
    h.subscribe(keeper, "c");
    fill(&mut h, "c", 20, 10_000);
    let epoch = h.process.stream().epoch().to_owned();
    let a = h.client(0);
    h.socket(a).room = 10_100;
    h.text(a, &resume_json("c", 0, &epoch));
    h.run();
    let _ = h.take(keeper);
    // Twenty more push out what the replay still needs.
    fill(&mut h, "c", 20, 10);
    h.room(a, usize::MAX);
    h.run();
    let frames = h.frames(a);
    let close = frames.last().expect("a Close");
    assert_eq!(close.close_code(), Some(4002), "{close:?}");
    assert_eq!(&close.payload[2..], b"replay lost");
    assert_eq!(metrics::get(&h.process.stats.replays_lost), 1);
    assert_eq!(metrics::get(&h.process.stats.replays_active), 0);
}

mod users {
    use serde_json::json;

    use super::super::harness::{config, Harness};
    use super::{offsets, resume_json};
    use crate::app::token::tests::{mint, SECRET};
    use crate::config::{Config, TokenSecret};

    fn with_secret(workers: usize) -> Config {
        Config {
            workers,
            token_secret: Some(TokenSecret::new(SECRET, false).unwrap()),
            ..config()
        }
    }

    #[test]
    fn every_connection_of_a_user_gets_its_messages_from_the_welcome_on() {
        let mut h = Harness::new(with_secret(2));
        let token = mint(&json!({"sub": "ann"}));
        let (tab1, _) = h.ws(0, &format!("/ws?token={token}"));
        let (tab2, welcome) = h.ws(1, &format!("/ws?token={token}"));
        assert_eq!(welcome["user"], "ann");
        let (other, _) = h.ws(0, &format!("/ws?token={}", mint(&json!({"sub": "bob"}))));
        let anonymous = h.client(1);
        let (status, body) = h.publish_to(1, r#""user":"ann""#, "for ann");
        assert_eq!((status, &body["recipients"]), (200, &2.into()), "{body}");
        for tab in [tab1, tab2] {
            let got = h.json(tab);
            assert_eq!(
                (&got[0]["scope"], &got[0]["channel"], &got[0]["offset"]),
                (&"user".into(), &"user:ann".into(), &1.into()),
                "{got:?}"
            );
        }
        assert!(h.json(other).is_empty() && h.json(anonymous).is_empty());
        // Its own channel counts for nothing against the limit, and it
        // cannot be left or chatted on.
        let status = h.get(0, "/status").json();
        assert_eq!(
            (&status["channels"], &status["subscriptions"]),
            (&2.into(), &3.into())
        );
        let got = h.ask(tab1, r#"{"type":"unsubscribe","channel":"user:ann"}"#);
        assert_eq!(got[0]["type"], "error");
        h.publish_to(0, r#""channel":"user:ann""#, "again");
        assert_eq!(offsets(&h.json(tab1), "user:ann"), [2]);
        h.fin(tab1);
        h.run();
        let (_, body) = h.publish_to(0, r#""user":"ann""#, "one tab left");
        assert_eq!(body["recipients"], 1);
    }

    /// A tab that reconnects resumes its user's channel like any other:
    /// what was sent to the user meanwhile is replayed, the subscription
    /// is not doubled nor counted; nobody else's can be joined, and its
    /// own cannot be left.
    #[test]
    fn a_user_resumes_its_own_channel_and_only_its_own() {
        let mut h = Harness::new(Config {
            max_channels_per_client: 1,
            history_size: 10,
            ..with_secret(1)
        });
        let token = mint(&json!({"sub": "ann"}));
        let (tab, welcome) = h.ws(0, &format!("/ws?token={token}"));
        let epoch = welcome["epoch"].as_str().unwrap().to_owned();
        h.publish_to(0, r#""user":"ann""#, "one");
        assert_eq!(offsets(&h.json(tab), "user:ann"), [1]);
        h.fin(tab);
        h.run();
        h.publish_to(0, r#""user":"ann""#, "two");
        h.publish_to(0, r#""user":"ann""#, "three");
        let (tab, _) = h.ws(0, &format!("/ws?token={token}"));
        let got = h.ask(tab, &resume_json("user:ann", 1, &epoch));
        assert_eq!(
            (
                &got[0]["type"],
                &got[0]["channel"],
                &got[0]["recovered"],
                &got[0]["replayed"],
                &got[0]["offset"]
            ),
            (
                &"subscribed".into(),
                &"user:ann".into(),
                &true.into(),
                &2.into(),
                &3.into()
            ),
            "{got:?}"
        );
        assert_eq!(offsets(&got, "user:ann"), [2, 3]);
        let got = h.ask(tab, r#"{"type":"subscribe","channel":"user:ann"}"#);
        assert_eq!(
            (&got[0]["type"], &got[0]["offset"]),
            (&"subscribed".into(), &3.into())
        );
        let (_, body) = h.publish_to(0, r#""user":"ann""#, "four");
        assert_eq!(body["recipients"], 1);
        assert_eq!(offsets(&h.json(tab), "user:ann"), [4], "delivered once");
        assert_eq!(h.get(0, "/status").json()["subscriptions"], 1);
        h.subscribe(tab, "news");
        let (bob, _) = h.ws(0, &format!("/ws?token={}", mint(&json!({"sub": "bob"}))));
        let anonymous = h.client(0);
        for (peer, json) in [
            (bob, resume_json("user:ann", 1, &epoch)),
            (
                anonymous,
                r#"{"type":"subscribe","channel":"user:ann"}"#.into(),
            ),
            (tab, r#"{"type":"unsubscribe","channel":"user:ann"}"#.into()),
        ] {
            let got = h.ask(peer, &json);
            assert_eq!(
                (got.len(), &got[0]["type"], &got[0]["channel"]),
                (1, &"error".into(), &"user:ann".into()),
                "{json}: {got:?}"
            );
        }
        h.publish_to(0, r#""user":"ann""#, "five");
        assert_eq!(offsets(&h.json(tab), "user:ann"), [5]);
        assert!(h.json(bob).is_empty());
    }

    #[test]
    fn a_private_channel_takes_only_clients_whose_token_lists_it() {
        let mut h = Harness::new(Config {
            max_channels_per_client: 1,
            ..with_secret(1)
        });
        let listed = mint(&json!({"sub": "ann", "channels": ["private:team"]}));
        let (member, _) = h.ws(0, &format!("/ws?token={listed}"));
        let (stranger, _) = h.ws(0, &format!("/ws?token={}", mint(&json!({"sub": "bob"}))));
        let answer = h.subscribe(member, "private:team");
        assert_eq!(answer["channel"], "private:team");
        let got = h.ask(stranger, r#"{"type":"subscribe","channel":"private:team"}"#);
        assert_eq!(
            (&got[0]["type"], &got[0]["channel"]),
            (&"error".into(), &"private:team".into())
        );
        let got = h.ask(member, r#"{"type":"subscribe","channel":"private:other"}"#);
        assert_eq!(got[0]["type"], "error");
        // One channel allowed, and the user's own took none of it.
        let got = h.ask(member, r#"{"type":"subscribe","channel":"news"}"#);
        assert!(
            got[0]["error"].as_str().unwrap().contains("at most 1"),
            "{got:?}"
        );
    }
}
