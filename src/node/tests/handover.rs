//! An old and a new process in memory, joined by the hand-over link as the
//! shells join them: the new one continues the old one's stream, both
//! deliver every message for everyone once and in one offset order, and
//! messages for one client reach it on either side.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::harness::{config, Harness, Peer};
use crate::config::Config;
use crate::node::peer::wire::Decoder;
use crate::node::peer::{self, Role, StateReader};

const S: Duration = Duration::from_secs(1);

/// Two processes of one host, the link between them as byte queues.
struct Pair {
    old: Harness,
    new: Harness,
    to_new: Decoder,
    to_old: Decoder,
}

fn process_config() -> Config {
    Config {
        drain_timeout: 60 * S,
        ..config()
    }
}

impl Pair {
    /// A running old process, before any hand-over.
    fn old() -> Harness {
        Harness::seeded(process_config(), 1)
    }

    /// `old` hands over to a new process: its stream crosses as the bytes
    /// the shell sends, it drains, and the two are linked.
    fn hand_over(mut old: Harness) -> Pair {
        let mut new = Harness::seeded(process_config(), 2);
        new.now = old.now;
        let state = peer::follow(&old.process, &new.process.instance, old.now.at);
        let mut bytes = Vec::new();
        for message in peer::state_messages(&state, true) {
            message.encode(&mut bytes);
        }
        let mut to_new = Decoder::default();
        let mut reader = StateReader::default();
        // The state arrives in pieces, as over a socket.
        let mut got = None;
        for piece in bytes.chunks(7) {
            to_new.push(piece);
            if let Some(state) = reader.read(&mut to_new).unwrap() {
                got = Some(state);
            }
        }
        let state = got.expect("the whole state");
        peer::lead(&new.process, &old.process.instance, state, new.now.at);
        old.process.listener.handed_over_to(4242);
        old.drain(60 * S);
        Pair {
            old,
            new,
            to_new,
            to_old: Decoder::default(),
        }
    }

    /// Runs both until neither has anything left to do or to send.
    fn run(&mut self) {
        for _ in 0..100 {
            self.old.run();
            self.new.run();
            let to_new = self.old.process.peer().take_unsent();
            let to_old = self.new.process.peer().take_unsent();
            if to_new.is_empty() && to_old.is_empty() {
                return;
            }
            self.to_new.push(&to_new);
            deliver(&mut self.to_new, &mut self.new);
            self.to_old.push(&to_old);
            deliver(&mut self.to_old, &mut self.old);
        }
        panic!("the link never settled");
    }

    /// The link breaks with `pending` taken by the old side's shell, of
    /// which `written` went out.
    fn break_link(&mut self, pending: &[u8], written: usize) {
        let old = Arc::clone(&self.old.process);
        let mut woken = Vec::new();
        peer::lost(&old, pending, written, |w| woken.push(w));
        for w in woken {
            self.old.wake(w);
        }
        let new = Arc::clone(&self.new.process);
        peer::lost(&new, &[], 0, |_| {});
        self.run();
    }
}

fn deliver(decoder: &mut Decoder, to: &mut Harness) {
    let process = Arc::clone(&to.process);
    let mut woken = Vec::new();
    while let Some(message) = decoder.next_message().unwrap() {
        peer::receive(&process, message, to.now.at, |w| woken.push(w));
    }
    for w in woken {
        to.wake(w);
    }
}

/// The messages for everyone a client got: (offset, message).
fn stream(h: &mut Harness, client: Peer) -> Vec<(Option<u64>, String)> {
    h.json(client)
        .into_iter()
        .filter(|m| m["type"] == "notification" || m["type"] == "chat")
        .map(|m| {
            (
                m["offset"].as_u64(),
                m["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Publishes on a connection of its own, which the publisher then closes
/// (a draining process with shared sockets waits for open ones).
fn broadcast(h: &mut Harness, message: &str) -> Value {
    let (publisher, response) = h.post(0, "/broadcast", &format!(r#"{{"message":"{message}"}}"#));
    assert_eq!(response.status, 200, "{response:?}");
    h.fin(publisher);
    serde_json::from_slice(&response.body).unwrap()
}

fn numbered(pairs: &[(u64, &str)]) -> Vec<(Option<u64>, String)> {
    pairs
        .iter()
        .map(|(o, m)| (Some(*o), (*m).to_owned()))
        .collect()
}

#[test]
fn the_new_process_continues_the_epoch_the_offsets_and_the_history() {
    let mut old = Pair::old();
    let early = old.client(0);
    for m in ["one", "two", "three"] {
        broadcast(&mut old, m);
    }
    let (_, welcome) = old.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert_eq!(welcome["offset"], 3);
    assert_eq!(stream(&mut old, early).len(), 3);

    let mut pair = Pair::hand_over(old);
    let (_, fresh) = pair.new.ws(0, "/ws");
    assert_eq!(fresh["epoch"], epoch.as_str());
    assert_eq!(fresh["offset"], 3);
    let (back, resumed) = pair.new.ws(0, &format!("/ws?since=1&epoch={epoch}"));
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["replayed"], 2);
    assert_eq!(
        stream(&mut pair.new, back),
        numbered(&[(2, "two"), (3, "three")])
    );
    broadcast(&mut pair.new, "four");
    pair.run();
    assert_eq!(stream(&mut pair.new, back), numbered(&[(4, "four")]));
}

#[test]
fn a_message_for_everyone_reaches_both_once_in_one_order_whoever_took_it() {
    let mut old = Pair::old();
    let on_old = old.client(0);
    let mut pair = Pair::hand_over(old);
    let on_new = pair.new.client(0);
    let _ = pair.old.json(on_old);
    let answer = broadcast(&mut pair.old, "to the old");
    assert_eq!(answer["status"], "sent");
    broadcast(&mut pair.new, "to the new");
    pair.run();
    broadcast(&mut pair.new, "new again");
    broadcast(&mut pair.old, "old again");
    pair.run();
    let expected = numbered(&[
        (1, "to the new"),
        (2, "to the old"),
        (3, "new again"),
        (4, "old again"),
    ]);
    assert_eq!(stream(&mut pair.old, on_old), expected);
    assert_eq!(stream(&mut pair.new, on_new), expected);
}

#[test]
fn chat_crosses_both_ways_and_the_sender_gets_its_own_once() {
    let mut old = Pair::old();
    let a = old.client(0);
    let mut pair = Pair::hand_over(old);
    let _ = pair.old.json(a);
    let b = pair.new.client(0);
    pair.old.text(a, "from the old side");
    pair.run();
    pair.new.text(b, "from the new side");
    pair.run();
    let expected = numbered(&[(1, "from the old side"), (2, "from the new side")]);
    assert_eq!(stream(&mut pair.old, a), expected);
    assert_eq!(stream(&mut pair.new, b), expected);
}

#[test]
fn personal_and_direct_messages_reach_a_client_on_either_side() {
    let mut old = Pair::old();
    let (a, welcome_a) = old.ws(0, "/ws");
    let a_id = welcome_a["client_id"].as_str().unwrap().to_owned();
    let mut pair = Pair::hand_over(old);
    let _ = pair.old.json(a);
    let (b, welcome_b) = pair.new.ws(0, "/ws");
    let b_id = welcome_b["client_id"].as_str().unwrap().to_owned();

    let body = format!(r#"{{"message":"just you","client_id":"{a_id}"}}"#);
    let (_, response) = pair.new.post(0, "/notify", &body);
    assert_eq!(response.status, 202, "{response:?}");
    pair.run();
    let got = pair.old.json(a);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["scope"], "personal");
    assert_eq!(got[0]["message"], "just you");

    let direct = format!(r#"{{"type":"direct","to":"{a_id}","message":"hi a"}}"#);
    pair.new.text(b, &direct);
    pair.run();
    let got = pair.old.json(a);
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["from"].as_str()),
        (Some("direct"), Some(b_id.as_str()))
    );
    let back = format!(r#"{{"type":"direct","to":"{b_id}","message":"hi b"}}"#);
    pair.old.text(a, &back);
    pair.run();
    let got = pair.new.json(b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["message"].as_str()),
        (Some("direct"), Some("hi b"))
    );
}

#[test]
fn a_client_that_leaves_the_old_process_is_recovered_on_the_new_one() {
    let mut old = Pair::old();
    let (a, welcome) = old.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    broadcast(&mut old, "before");
    let mut pair = Pair::hand_over(old);
    broadcast(&mut pair.new, "during");
    pair.run();
    let seen = stream(&mut pair.old, a);
    assert_eq!(seen, numbered(&[(1, "before"), (2, "during")]));
    pair.old.fin(a);
    pair.run();
    assert!(
        pair.old.exited[0],
        "its last client gone, the old process ends"
    );
    broadcast(&mut pair.new, "missed");
    broadcast(&mut pair.new, "missed too");
    let (back, resumed) = pair.new.ws(0, &format!("/ws?since=2&epoch={epoch}"));
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(
        stream(&mut pair.new, back),
        numbered(&[(3, "missed"), (4, "missed too")])
    );
}

#[test]
fn what_the_old_process_sends_is_numbered_only_by_the_new_one() {
    let mut old = Pair::old();
    let a = old.client(0);
    let mut pair = Pair::hand_over(old);
    let _ = pair.old.json(a);
    broadcast(&mut pair.old, "queued");
    assert_eq!(pair.old.link_wakes, 1, "the shell is woken to send it");
    assert!(
        stream(&mut pair.old, a).is_empty(),
        "it waits for its number"
    );
    assert!(pair.old.process.peer().unsent_bytes() > 0);
    pair.run();
    assert_eq!(stream(&mut pair.old, a), numbered(&[(1, "queued")]));
    assert_eq!(pair.old.process.stream().last(), 1);
}

#[test]
fn when_the_link_breaks_the_old_process_delivers_what_it_took_unnumbered() {
    let mut old = Pair::old();
    let a = old.client(0);
    let mut pair = Pair::hand_over(old);
    let _ = pair.old.json(a);
    broadcast(&mut pair.old, "sent");
    broadcast(&mut pair.old, "half sent");
    // The shell took both; the first went out whole, the second did not.
    let pending = pair.old.process.peer().take_unsent();
    let first = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize + 4;
    let written = first + 3;
    pair.break_link(&pending, written);
    assert_eq!(pair.old.process.peer().role(), Role::Orphan);
    assert_eq!(pair.new.process.peer().role(), Role::Alone);
    let got = stream(&mut pair.old, a);
    assert_eq!(got, vec![(None, "half sent".to_owned())]);
    broadcast(&mut pair.old, "after");
    pair.run();
    assert_eq!(stream(&mut pair.old, a), vec![(None, "after".to_owned())]);
    // Ids of the old process are no longer reachable from the new one.
    assert_eq!(pair.new.process.peer_instance(), None);
}

#[test]
fn a_peer_that_lags_too_far_is_given_up() {
    let mut old = Pair::old();
    let a = old.client(0);
    let mut pair = Pair::hand_over(old);
    let _ = pair.old.json(a);
    let big = "x".repeat(60_000);
    let mut sent = 0;
    while pair.old.process.peer().role() == Role::Follower {
        broadcast(&mut pair.old, &big);
        sent += 1;
        assert!(sent < 1_000, "never given up");
    }
    // Each message is its 60,000 bytes and a little JSON.
    assert!(sent >= peer::MAX_UNSENT / 60_200, "given up after {sent}");
    let got = stream(&mut pair.old, a);
    assert_eq!(got.len(), sent, "every one delivered, unnumbered");
    assert!(got.iter().all(|(offset, _)| offset.is_none()));
}

/// Every channel's offsets, history and floor cross with everyone's, under
/// the same epoch; the subscribers stay with the process they are on.
#[test]
fn every_channel_crosses_with_its_offsets_and_history() {
    use crate::app::channel_history::ChannelResume;

    let old = Pair::old();
    let at = old.now.at;
    let frame = |n: u64| -> Arc<[u8]> { Arc::from(format!("room#{n}").into_bytes()) };
    let epoch = {
        let mut stream = old.process.stream();
        stream.channel_joined("room");
        for _ in 0..3 {
            stream.channel_sequence("room", frame, at);
        }
        stream.channel_sequence("gone", frame, at);
        stream.channel_joined("user:ann");
        stream.epoch().to_owned()
    };
    let pair = Pair::hand_over(old);
    let mut new = pair.new.process.stream();
    assert_eq!(new.epoch(), epoch);
    assert_eq!(new.channel_last("room"), 3);
    assert_eq!(
        new.channel_resume("room", 1, &epoch),
        ChannelResume::Recovered {
            next: 2,
            replayed: 2
        }
    );
    assert_eq!(
        new.channel_frame("room", 3).unwrap().as_deref(),
        Some(&b"room#3"[..])
    );
    assert_eq!(new.channel_last("gone"), 1);
    // Joined there, never numbered: known here for the clients that come.
    assert_eq!(
        new.channel_resume("user:ann", 0, &epoch),
        ChannelResume::Recovered {
            next: 1,
            replayed: 0
        }
    );
    assert_eq!((new.channel_count(), new.subscription_count()), (0, 0));
    assert_eq!(new.channel_sequence("room", frame, at).0, 4);
    drop(new);
    assert_eq!(pair.old.process.stream().channel_count(), 2);
}

/// Publishes `message` to channel `channel` on a connection of its own;
/// returns the answer.
fn publish_channel(h: &mut Harness, channel: &str, message: &str) -> Value {
    let body = format!(r#"{{"message":"{message}","channel":"{channel}"}}"#);
    let (publisher, response) = h.post(0, "/broadcast", &body);
    assert_eq!(response.status, 200, "{response:?}");
    h.fin(publisher);
    serde_json::from_slice(&response.body).unwrap()
}

fn subscribe(h: &mut Harness, client: Peer, channel: &str) {
    h.text(
        client,
        &format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
    );
    h.run();
    let answer = h.json(client);
    assert_eq!(answer[0]["type"], "subscribed", "{answer:?}");
}

/// The messages of `channel` a client got: (offset, message).
fn of_channel(h: &mut Harness, client: Peer, channel: &str) -> Vec<(Option<u64>, String)> {
    h.json(client)
        .into_iter()
        .filter(|m| m["channel"] == channel)
        .map(|m| {
            (
                m["offset"].as_u64(),
                m["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_channel_message_reaches_its_subscribers_on_both_once_in_one_order() {
    let mut old = Pair::old();
    let on_old = old.client(0);
    subscribe(&mut old, on_old, "room");
    publish_channel(&mut old, "room", "before");
    assert_eq!(
        of_channel(&mut old, on_old, "room"),
        numbered(&[(1, "before")])
    );
    let mut pair = Pair::hand_over(old);
    let on_new = pair.new.client(0);
    subscribe(&mut pair.new, on_new, "room");
    let answer = publish_channel(&mut pair.old, "room", "to the old");
    assert_eq!(answer["status"], "sent");
    publish_channel(&mut pair.new, "room", "to the new");
    pair.run();
    pair.old.text(
        on_old,
        r#"{"type":"chat","channel":"room","message":"chat on the old"}"#,
    );
    pair.run();
    let expected = numbered(&[(2, "to the new"), (3, "to the old"), (4, "chat on the old")]);
    assert_eq!(of_channel(&mut pair.old, on_old, "room"), expected);
    assert_eq!(of_channel(&mut pair.new, on_new, "room"), expected);
}

#[test]
fn when_the_link_breaks_the_old_process_delivers_a_channels_message_unnumbered() {
    let mut old = Pair::old();
    let a = old.client(0);
    subscribe(&mut old, a, "room");
    let mut pair = Pair::hand_over(old);
    publish_channel(&mut pair.old, "room", "never sent");
    let pending = pair.old.process.peer().take_unsent();
    pair.break_link(&pending, 0);
    assert_eq!(
        of_channel(&mut pair.old, a, "room"),
        vec![(None, "never sent".to_owned())]
    );
    publish_channel(&mut pair.old, "room", "after");
    pair.run();
    assert_eq!(
        of_channel(&mut pair.old, a, "room"),
        vec![(None, "after".to_owned())]
    );
}
