//! Channels across instances, with the Redis side played by the test: a
//! worker subscribes to a channel's Redis channel on its first subscriber
//! and unsubscribes on its last, Redis numbers each channel on its own,
//! every subscriber gets each message once and in offset order, and a
//! stalled Redis or a channel not followed never yields a false recovery.

use std::time::Duration;

use serde_json::Value;

use super::harness::{Harness, Peer};
use super::redis::{bulk, commands, connected_workers, message, replies};
use crate::node::redis::{LinkInput, Side, STALLED_AFTER};

const EPOCH: &str = "e1";

fn subscribe_json(channel: &str) -> String {
    format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#)
}

/// Subscribes `peer`; returns the `subscribed` answer, which must have
/// come at once.
fn subscribe(h: &mut Harness, peer: Peer, json: &str) -> Value {
    h.text(peer, json);
    h.run();
    answer(h, peer)
}

/// Subscribes `peer` to a channel its worker does not follow yet: the
/// answer waits.
fn subscribe_held(h: &mut Harness, peer: Peer, json: &str) {
    h.text(peer, json);
    h.run();
    assert!(h.json(peer).is_empty(), "held until the worker follows");
}

/// The `subscribed` answer `peer` got, and nothing else.
fn answer(h: &mut Harness, peer: Peer) -> Value {
    let got = h.json(peer);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "subscribed", "{got:?}");
    got[0].clone()
}

/// What worker `node` wrote on its subscription connection since the last
/// call, as (verb, topics).
fn subscription_commands(h: &mut Harness, node: usize) -> Vec<(String, Vec<String>)> {
    let bytes = std::mem::take(&mut h.sockets[node].redis[0]);
    let mut at = 0;
    let mut out = Vec::new();
    while let Some((reply, used)) = crate::proto::resp::parse(&bytes[at..]).unwrap() {
        at += used;
        let crate::proto::resp::Reply::Array(Some(args)) = reply else {
            panic!()
        };
        let mut args = args.into_iter().map(|a| match a {
            crate::proto::resp::Reply::Bulk(Some(a)) => String::from_utf8(a).unwrap(),
            other => panic!("{other:?}"),
        });
        let verb = args.next().unwrap();
        out.push((verb, args.collect()));
    }
    out
}

/// Redis pushes `kind` (`subscribe`, `unsubscribe`) of `channel`'s topic
/// to worker `node`.
fn confirm(h: &mut Harness, node: usize, kind: &str, channel: &str) {
    let mut bytes = b"*3\r\n".to_vec();
    bytes.extend(bulk(kind.as_bytes()));
    bytes.extend(bulk(format!("wsnotify:ch:{channel}").as_bytes()));
    bytes.extend_from_slice(b":1\r\n");
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &bytes,
        },
    );
}

/// Redis answers worker `node`'s question for where `channel` stands.
fn position(h: &mut Harness, node: usize, offset: u64) {
    let mut bytes = b"*2\r\n".to_vec();
    bytes.extend(bulk(EPOCH.as_bytes()));
    bytes.extend_from_slice(format!(":{offset}\r\n").as_bytes());
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Publisher,
            bytes: &bytes,
        },
    );
}

/// Worker `node` follows `channel` (it asked): Redis confirms, and says
/// the channel stands at `at`.
fn follow(h: &mut Harness, node: usize, channel: &str, at: u64) {
    confirm(h, node, "subscribe", channel);
    let question = commands(h, node);
    assert!(
        question.len() == 1 && question[0].contains(&format!("ch:{channel}").into_bytes()),
        "where the channel stands is asked"
    );
    position(h, node, at);
}

/// The envelope of a channel message from instance `origin`.
fn envelope(origin: &str, channel: &str, text: &str) -> String {
    format!(
        "wsnotify1 {origin} *\n{{\"type\":\"notification\",\"message\":\"{text}\",\"channel\":\"{channel}\",\"scope\":\"channel\"}}"
    )
}

/// Worker `node`'s subscription brings `payload` on `channel`'s topic.
fn on_topic(h: &mut Harness, node: usize, channel: &str, payload: &str) {
    let topic = format!("wsnotify:ch:{channel}");
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &message(&topic, payload.as_bytes()),
        },
    );
}

/// Redis numbered `payload` as `offset` of `channel`.
fn numbered(h: &mut Harness, node: usize, channel: &str, offset: u64, payload: &str) {
    on_topic(h, node, channel, &format!("{EPOCH} {offset} {payload}"));
}

/// The messages of `channel` a client got: (offset, message).
fn of(h: &mut Harness, peer: Peer, channel: &str) -> Vec<(Option<u64>, String)> {
    h.json(peer)
        .into_iter()
        .filter(|m| m["channel"] == channel && m["type"] != "subscribed")
        .map(|m| {
            (
                m["offset"].as_u64(),
                m["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn publish(h: &mut Harness, node: usize, channel: &str, text: &str) {
    let body = format!(r#"{{"message":"{text}","channel":"{channel}"}}"#);
    let (_, answer) = h.post(node, "/broadcast", &body);
    assert_eq!(answer.status, 200);
}

/// The payload worker `node` sent Redis to number in `channel`.
fn sent_for_numbering(h: &mut Harness, node: usize, channel: &str) -> String {
    let sent = commands(h, node);
    assert_eq!(sent.len(), 1, "one command");
    let args = &sent[0];
    assert_eq!(args[0], b"EVAL");
    let args: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8(a.clone()).unwrap())
        .collect();
    assert!(args.contains(&format!("wsnotify:ch:{channel}")), "{args:?}");
    assert!(args.contains(&format!("ch:{channel}")), "its own counter");
    args[args.len() - 2].clone()
}

#[test]
fn a_worker_follows_a_channel_from_its_first_subscriber_to_its_last() {
    let mut h = connected_workers(EPOCH, 2);
    let (a, b, c) = (h.client(0), h.client(0), h.client(1));
    subscribe_held(&mut h, a, &subscribe_json("news"));
    subscribe_held(&mut h, b, &subscribe_json("news"));
    assert_eq!(
        subscription_commands(&mut h, 0),
        [("SUBSCRIBE".into(), vec!["wsnotify:ch:news".to_owned()])],
        "once for the worker"
    );
    assert!(
        subscription_commands(&mut h, 1).is_empty(),
        "worker 1 has none"
    );
    subscribe_held(&mut h, c, &subscribe_json("news"));
    assert_eq!(subscription_commands(&mut h, 1).len(), 1);
    h.text(a, r#"{"type":"unsubscribe","channel":"news"}"#);
    h.run();
    assert!(subscription_commands(&mut h, 0).is_empty(), "b is left");
    h.fin(b);
    h.run();
    assert_eq!(
        subscription_commands(&mut h, 0),
        [("UNSUBSCRIBE".into(), vec!["wsnotify:ch:news".to_owned()])],
        "the last one left"
    );
}

#[test]
fn each_channel_is_numbered_by_redis_and_reaches_each_subscriber_once_in_order() {
    let mut h = connected_workers(EPOCH, 2);
    let (a, b, outsider) = (h.client(0), h.client(1), h.client(0));
    for peer in [a, b] {
        subscribe_held(&mut h, peer, &subscribe_json("room"));
        subscribe_held(&mut h, peer, &subscribe_json("lobby"));
    }
    for (node, peer) in [(0, a), (1, b)] {
        follow(&mut h, node, "room", 0);
        follow(&mut h, node, "lobby", 0);
        assert_eq!(h.types(peer), ["subscribed", "subscribed"]);
    }
    publish(&mut h, 0, "room", "mine");
    let mine = sent_for_numbering(&mut h, 0, "room");
    assert!(
        of(&mut h, a, "room").is_empty(),
        "not before Redis numbers it"
    );
    replies(&mut h, 0, 1);
    // Redis's order: room 1 (this instance's), lobby 1 and room 2 (another's).
    for node in [0, 1] {
        numbered(&mut h, node, "room", 1, &mine);
        numbered(
            &mut h,
            node,
            "lobby",
            1,
            &envelope("other:0:1", "lobby", "l1"),
        );
        numbered(
            &mut h,
            node,
            "room",
            2,
            &envelope("other:0:2", "room", "r2"),
        );
    }
    for peer in [a, b] {
        let got = h.json(peer);
        let room: Vec<(u64, &str)> = got
            .iter()
            .filter(|m| m["channel"] == "room")
            .map(|m| {
                (
                    m["offset"].as_u64().unwrap(),
                    m["message"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(room, [(1, "mine"), (2, "r2")]);
        let lobby: Vec<u64> = got
            .iter()
            .filter(|m| m["channel"] == "lobby")
            .map(|m| m["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(lobby, [1], "a counter per channel");
    }
    assert!(h.json(outsider).is_empty(), "not subscribed: nothing");
    assert_eq!(h.process.stream().channel_last("room"), 2);
}

#[test]
fn a_resume_where_the_channel_was_not_followed_is_too_old_and_recovered_once_it_is() {
    let mut h = connected_workers(EPOCH, 1);
    let a = h.client(0);
    let resume = |since: u64| {
        format!(r#"{{"type":"subscribe","channel":"room","since":{since},"epoch":"{EPOCH}"}}"#)
    };
    subscribe_held(&mut h, a, &resume(5));
    follow(&mut h, 0, "room", 7);
    let answered = answer(&mut h, a);
    assert_eq!(
        (&answered["reason"], &answered["offset"]),
        (&"too_old".into(), &7.into()),
        "5 to 7 were numbered before the worker followed: {answered}"
    );
    let b = h.client(0);
    assert_eq!(subscribe(&mut h, b, &resume(6))["reason"], "too_old");
    let c = h.client(0);
    let answer = subscribe(&mut h, c, &resume(7));
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&true.into(), &0.into()),
        "{answer}"
    );
    numbered(&mut h, 0, "room", 8, &envelope("other:0:1", "room", "m8"));
    assert_eq!(of(&mut h, c, "room"), [(Some(8), "m8".to_owned())]);
    // The subscription is lost: followed no more, nothing is recovered.
    let why = "read failed".to_owned();
    h.redis(
        0,
        LinkInput::Failed {
            side: Side::Subscriber,
            why,
        },
    );
    let d = h.client(0);
    assert_eq!(subscribe(&mut h, d, &resume(8))["reason"], "too_old");
}

#[test]
fn a_stalled_redis_delivers_a_channel_message_once_without_an_offset_and_a_hole_follows() {
    let mut h = connected_workers(EPOCH, 2);
    let (a, b) = (h.client(0), h.client(1));
    let instance = h.process.instance.clone();
    subscribe_held(&mut h, a, &subscribe_json("room"));
    subscribe_held(&mut h, b, &subscribe_json("room"));
    follow(&mut h, 0, "room", 0);
    follow(&mut h, 1, "room", 0);
    answer(&mut h, a);
    answer(&mut h, b);
    publish(&mut h, 0, "room", "held");
    let held = sent_for_numbering(&mut h, 0, "room");
    h.advance(Duration::from_millis(1));
    h.advance(STALLED_AFTER);
    for peer in [a, b] {
        assert_eq!(of(&mut h, peer, "room"), [(None, "held".to_owned())]);
    }
    let hole = commands(&mut h, 0);
    let hole: Vec<String> = hole[0]
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(hole.contains(&format!("hole {instance}")) && hole.contains(&"ch:room".to_owned()));
    // Redis resumes and numbers it after all: not delivered again.
    replies(&mut h, 0, 2);
    for node in [0, 1] {
        numbered(&mut h, node, "room", 1, &held);
        numbered(&mut h, node, "room", 2, &format!("hole {instance}"));
    }
    for peer in [a, b] {
        assert!(of(&mut h, peer, "room").is_empty(), "once");
    }
    let c = h.client(0);
    let answer = subscribe(
        &mut h,
        c,
        &format!(r#"{{"type":"subscribe","channel":"room","since":0,"epoch":"{EPOCH}"}}"#),
    );
    assert_eq!(answer["reason"], "too_old", "not across the hole: {answer}");
    numbered(&mut h, 0, "room", 3, &envelope("other:0:1", "room", "m3"));
    assert_eq!(of(&mut h, a, "room"), [(Some(3), "m3".to_owned())]);
}

#[test]
fn while_redis_is_away_a_channel_message_goes_to_local_subscribers_at_once() {
    let mut h = Harness::new(crate::config::Config {
        redis: Some("redis://127.0.0.1:6390".parse().unwrap()),
        ..super::harness::config()
    });
    let a = h.client(0);
    subscribe(&mut h, a, &subscribe_json("room"));
    publish(&mut h, 0, "room", "now");
    assert_eq!(of(&mut h, a, "room"), [(None, "now".to_owned())]);
}

#[test]
fn an_unnumbered_message_of_another_instance_is_delivered_and_stops_recovery() {
    let mut h = connected_workers(EPOCH, 1);
    let a = h.client(0);
    subscribe_held(&mut h, a, &subscribe_json("room"));
    follow(&mut h, 0, "room", 0);
    answer(&mut h, a);
    numbered(&mut h, 0, "room", 1, &envelope("other:0:1", "room", "m1"));
    on_topic(&mut h, 0, "room", &envelope("other", "room", "plain"));
    assert_eq!(
        of(&mut h, a, "room"),
        [(Some(1), "m1".to_owned()), (None, "plain".to_owned())]
    );
    let b = h.client(0);
    let answer = subscribe(
        &mut h,
        b,
        &format!(r#"{{"type":"subscribe","channel":"room","since":1,"epoch":"{EPOCH}"}}"#),
    );
    assert_eq!(answer["reason"], "too_old");
}

#[test]
fn a_subscribe_answer_waits_for_the_worker_to_follow_its_channel_at_most_the_stall_limit() {
    let mut h = connected_workers(EPOCH, 1);
    let (a, b) = (h.client(0), h.client(0));
    let resume = format!(r#"{{"type":"subscribe","channel":"room","since":3,"epoch":"{EPOCH}"}}"#);
    subscribe_held(&mut h, a, &resume);
    h.advance(STALLED_AFTER - Duration::from_millis(1));
    assert!(h.json(a).is_empty(), "not before the limit");
    h.advance(Duration::from_millis(1));
    let answered = answer(&mut h, a);
    assert_eq!(
        answered["reason"], "too_old",
        "Redis did not say: {answered}"
    );
    // Confirmed later: the worker follows, and says so to the next one.
    follow(&mut h, 0, "room", 3);
    assert!(h.json(a).is_empty(), "answered once");
    let answered = subscribe(&mut h, b, &resume);
    assert_eq!(
        (&answered["recovered"], &answered["offset"]),
        (&true.into(), &3.into()),
        "{answered}"
    );
    numbered(&mut h, 0, "room", 3, &envelope("other:0:1", "room", "old"));
    numbered(&mut h, 0, "room", 4, &envelope("other:0:2", "room", "new"));
    assert_eq!(
        of(&mut h, a, "room"),
        [(Some(3), "old".to_owned()), (Some(4), "new".to_owned())],
        "told it stood at 0: a jump, nothing lost in silence"
    );
    assert_eq!(of(&mut h, b, "room"), [(Some(4), "new".to_owned())]);
}

#[test]
fn a_client_that_leaves_while_its_answer_waits_is_answered_nothing() {
    let mut h = connected_workers(EPOCH, 1);
    let (a, b) = (h.client(0), h.client(0));
    subscribe_held(&mut h, a, &subscribe_json("room"));
    subscribe_held(&mut h, b, &subscribe_json("room"));
    h.text(a, r#"{"type":"unsubscribe","channel":"room"}"#);
    h.run();
    assert_eq!(h.types(a), ["unsubscribed"]);
    follow(&mut h, 0, "room", 0);
    assert!(h.json(a).is_empty(), "no answer after unsubscribed");
    assert_eq!(answer(&mut h, b)["offset"], 0);
}

#[test]
fn after_redis_lost_its_data_a_channel_numbered_from_one_again_is_delivered() {
    let mut h = connected_workers(EPOCH, 1);
    let a = h.client(0);
    subscribe_held(&mut h, a, &subscribe_json("room"));
    follow(&mut h, 0, "room", 0);
    answer(&mut h, a);
    numbered(&mut h, 0, "room", 1, &envelope("other:0:1", "room", "m1"));
    numbered(&mut h, 0, "room", 2, &envelope("other:0:2", "room", "m2"));
    assert_eq!(of(&mut h, a, "room").len(), 2);
    // Flushed: the scripts start epoch e2, every counter from 1.
    on_topic(
        &mut h,
        0,
        "room",
        &format!("e2 1 {}", envelope("other:0:3", "room", "new")),
    );
    let got = h.json(a);
    assert_eq!(
        (&got[0]["type"], &got[0]["epoch"]),
        (&"epoch".into(), &"e2".into()),
        "{got:?}"
    );
    assert_eq!(
        (&got[1]["message"], &got[1]["offset"]),
        (&"new".into(), &1.into())
    );
    assert_eq!(h.process.stream().epoch(), "e2");
}
