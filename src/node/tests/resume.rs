//! Resumes whose replay is larger than a client's queue bound: paced to the
//! client's reading from the history, live broadcasts after it with no gap
//! and no duplicate, an honest close when the history loses what a replay
//! still needs, and a bounded amount of replay work per loop turn.

use serde_json::Value;

use super::harness::{config, upgrade, Harness, Peer};
use crate::config::Config;
use crate::conn::Stage;
use crate::obs::metrics;

const QUEUE_BOUND: usize = 1 << 20;

/// Room for a thousand 60 KB broadcasts in the history.
fn roomy(workers: usize) -> Config {
    Config {
        workers,
        max_queue_bytes: QUEUE_BOUND,
        max_history_bytes: 128 << 20,
        ..config()
    }
}

/// `count` broadcasts of 60 KB published on `node`.
fn publish(h: &mut Harness, node: usize, count: usize) {
    let body = format!(r#"{{"message":"{}"}}"#, "r".repeat(60_000));
    for _ in 0..count {
        let (_, answer) = h.post(node, "/broadcast", &body);
        assert_eq!(answer.status, 200);
    }
}

/// A client of `node` resuming after `since` whose socket takes `room`
/// bytes for now; returns it and its welcome.
fn resume(h: &mut Harness, node: usize, since: u64, room: usize) -> (Peer, Value) {
    let peer = h.accept(node);
    h.socket(peer).room = room;
    let epoch = h.process.stream().epoch().to_owned();
    h.send(
        peer,
        upgrade(&format!("/ws?since={since}&epoch={epoch}")).as_bytes(),
    );
    h.run();
    let response = h.response(peer).expect("an answer to the upgrade");
    assert_eq!(response.status, 101, "{response:?}");
    let welcome = h.json_one(peer);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (peer, welcome)
}

/// What the client's queue holds, as charged against its bound.
fn held(h: &Harness, peer: Peer) -> usize {
    h.nodes[peer.node]
        .conns
        .get(peer.key)
        .map_or(0, |conn| conn.out().held())
}

fn replayed(h: &Harness) -> u64 {
    metrics::get(&h.process.stats.messages_replayed)
}

/// The offsets of the messages for everyone the client has received
/// whole, taken.
fn offsets(h: &mut Harness, peer: Peer) -> Vec<u64> {
    h.json(peer)
        .iter()
        .filter(|m| m["type"] != "welcome")
        .filter_map(|m| m["offset"].as_u64())
        .collect()
}

impl Harness {
    /// The first whole text frame the client has received, taken, the rest
    /// left unread.
    fn json_one(&mut self, peer: Peer) -> Value {
        let outbox = &mut self.socket(peer).outbox;
        assert!(outbox.len() >= 4 && outbox[0] == 0x81, "a text frame first");
        let (len, at) = match outbox[1] {
            126 => (u16::from_be_bytes([outbox[2], outbox[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        let value = serde_json::from_slice(&outbox[at..at + len]).expect("JSON");
        outbox.drain(..at + len);
        value
    }
}

#[test]
fn a_replay_larger_than_the_queue_bound_reaches_a_slow_reader_whole_and_in_order() {
    let mut h = Harness::new(roomy(1));
    publish(&mut h, 0, 1000);
    let (peer, welcome) = resume(&mut h, 0, 0, 64 * 1024);
    assert_eq!(welcome["recovered"], true, "{welcome}");
    assert_eq!(welcome["replayed"], 1000);
    assert_eq!(welcome["offset"], 1000);
    let mut got = Vec::new();
    for _ in 0..10_000 {
        assert!(held(&h, peer) <= QUEUE_BOUND, "{} queued", held(&h, peer));
        assert_eq!(
            h.stage(peer),
            Some(Stage::Ws),
            "after {} messages",
            got.len()
        );
        got.extend(offsets(&mut h, peer));
        assert!(
            replayed(&h) <= got.len() as u64,
            "counted {} replayed, {} received",
            replayed(&h),
            got.len()
        );
        if got.len() >= 1000 {
            break;
        }
        // The client reads 64 KiB more.
        h.room(peer, 64 * 1024);
        h.run();
    }
    assert_eq!(got, (1..=1000).collect::<Vec<u64>>());
    h.room(peer, usize::MAX);
    h.run();
    assert_eq!(replayed(&h), 1000, "every one written, counted once");
    assert_eq!(metrics::get(&h.process.stats.slow_consumers_dropped), 0);
}

#[test]
fn live_broadcasts_during_a_replay_follow_it_with_no_gap_and_no_duplicate() {
    let mut h = Harness::new(roomy(2));
    publish(&mut h, 0, 200);
    let chatter = h.client(1);
    let (peer, welcome) = resume(&mut h, 1, 0, 64 * 1024);
    assert_eq!(welcome["replayed"], 200);
    let mut got = Vec::new();
    for step in 0..10_000 {
        got.extend(offsets(&mut h, peer));
        assert!(held(&h, peer) <= QUEUE_BOUND);
        if step % 20 == 0 && step < 400 {
            // A broadcast from the other worker, and a chat on this one,
            // while the replay goes on.
            publish(&mut h, 0, 1);
            h.text(chatter, "during the replay");
        }
        let _ = h.take(chatter);
        let last = h.process.stream().last();
        if step >= 400 && got.last() == Some(&last) {
            break;
        }
        h.room(peer, 64 * 1024);
        h.run();
    }
    let last = h.process.stream().last();
    assert!(last > 220, "{last}");
    assert_eq!(got, (1..=last).collect::<Vec<u64>>());
    // Caught up: the next broadcasts come live, once each.
    h.room(peer, usize::MAX);
    h.text(chatter, "after");
    publish(&mut h, 0, 1);
    h.run();
    assert_eq!(offsets(&mut h, peer), [last + 1, last + 2]);
}

#[test]
fn a_replay_whose_history_is_gone_is_closed_with_4002_and_resumes_too_old() {
    let mut h = Harness::new(Config {
        history_size: 100,
        ..roomy(1)
    });
    publish(&mut h, 0, 100);
    let (peer, welcome) = resume(&mut h, 0, 0, 64 * 1024);
    assert_eq!(welcome["replayed"], 100);
    let mut got = offsets(&mut h, peer);
    // A hundred more push out every entry the replay still needs.
    publish(&mut h, 0, 100);
    h.room(peer, usize::MAX);
    h.run();
    let frames = h.frames(peer);
    let close = frames.last().expect("a Close");
    assert_eq!(close.close_code(), Some(4002), "{close:?}");
    assert_eq!(&close.payload[2..], b"replay lost");
    got.extend(frames.iter().filter(|f| f.opcode == 1).map(|f| {
        serde_json::from_slice::<Value>(&f.payload).unwrap()["offset"]
            .as_u64()
            .unwrap()
    }));
    let last = *got.last().expect("some were replayed");
    assert_eq!(got, (1..=last).collect::<Vec<u64>>(), "nothing skipped");
    assert!(last < 100);
    assert_ne!(h.stage(peer), Some(Stage::Ws));
    assert_eq!(metrics::get(&h.process.stats.replays_lost), 1);

    // The client reconnects from what it has, and is told the truth.
    let (_, again) = resume(&mut h, 0, last, usize::MAX);
    assert_eq!(again["recovered"], false);
    assert_eq!(again["reason"], "too_old");
}

#[test]
fn replay_work_per_turn_is_bounded_and_shared_round_robin() {
    use crate::node::replay::{BYTES_PER_TURN as BUDGET, STEP_BYTES};
    let mut h = Harness::new(roomy(1));
    publish(&mut h, 0, 50);
    let frame = 60_100;
    // Twenty resumes arrive in one turn, every socket open wide.
    let epoch = h.process.stream().epoch().to_owned();
    let peers: Vec<Peer> = (0..20)
        .map(|_| {
            let peer = h.accept(0);
            h.send(
                peer,
                upgrade(&format!("/ws?since=0&epoch={epoch}")).as_bytes(),
            );
            peer
        })
        .collect();
    let mut turns = 0;
    let mut health = None;
    loop {
        h.sockets[0].sends.clear();
        let settled = h.turn();
        turns += 1;
        let written: usize = h.sockets[0].sends.iter().map(|(_, n)| n).sum();
        assert!(
            written <= BUDGET + frame + 20 * 1024,
            "turn {turns}: {written} bytes"
        );
        let received: Vec<usize> = peers.iter().map(|p| h.socket(*p).outbox.len()).collect();
        let (least, most) = (
            received.iter().min().unwrap(),
            received.iter().max().unwrap(),
        );
        assert!(
            most - least <= STEP_BYTES + frame,
            "turn {turns}: one client {most} bytes ahead of another's {least}"
        );
        if let Some(asked) = health.take() {
            let answer = h
                .response(asked)
                .expect("/health answered in the next turn");
            assert_eq!(answer.status, 200);
        }
        if turns == 3 {
            let asked = h.accept(0);
            h.send(asked, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            health = Some(asked);
        }
        if settled && health.is_none() {
            break;
        }
        assert!(turns < 500, "never done");
    }
    assert!(turns > 20, "{turns} turns for 20 × 3 MB");
    for peer in peers {
        assert_eq!(h.response(peer).unwrap().status, 101);
        assert_eq!(offsets(&mut h, peer), (1..=50).collect::<Vec<u64>>());
    }
    assert_eq!(replayed(&h), 20 * 50);
}

#[test]
fn messages_without_offset_reach_a_replaying_client_as_they_come_once_each() {
    let mut h = Harness::new(Config {
        notify_interval: Some(std::time::Duration::from_secs(1)),
        ..roomy(2)
    });
    publish(&mut h, 0, 100);
    let friend = h.client(1);
    let (peer, welcome) = resume(&mut h, 0, 0, 64 * 1024);
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let mut got = Vec::new();
    for step in 0..10_000 {
        got.extend(h.json(peer));
        if step == 5 {
            // A personal notification, a direct message from a client of
            // the other worker, a periodic notification for everyone.
            let body = format!(r#"{{"message":"yours","client_id":"{id}"}}"#);
            assert_eq!(h.post(1, "/notify", &body).1.status, 200);
            h.text(
                friend,
                &format!(r#"{{"type":"direct","to":"{id}","message":"psst"}}"#),
            );
            h.advance(std::time::Duration::from_secs(1));
        }
        if got.iter().filter(|m| m["offset"].is_u64()).count() == 100 && step > 5 {
            break;
        }
        let _ = h.take(friend);
        h.room(peer, 64 * 1024);
        h.run();
    }
    let kinds: Vec<String> = got
        .iter()
        .filter(|m| m["offset"].is_null())
        .map(|m| format!("{}/{}", m["type"], m["source"]))
        .collect();
    assert_eq!(
        kinds,
        [
            r#""notification"/"api""#,
            r#""direct"/null"#,
            r#""notification"/"periodic""#
        ],
        "each once, in the order they came"
    );
    let replayed: Vec<u64> = got.iter().filter_map(|m| m["offset"].as_u64()).collect();
    assert_eq!(replayed, (1..=100).collect::<Vec<u64>>());
    let first_own = got.iter().position(|m| m["offset"].is_null()).unwrap();
    assert!(
        first_own < 99,
        "they go out between replayed messages, not after the replay: at {first_own}"
    );
}

#[test]
fn a_replaying_client_that_reads_nothing_is_held_to_its_queue_bound() {
    let mut h = Harness::new(roomy(1));
    publish(&mut h, 0, 100);
    let (peer, welcome) = resume(&mut h, 0, 0, 1024);
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let body = format!(
        r#"{{"message":"{}","client_id":"{id}"}}"#,
        "p".repeat(8_000)
    );
    for _ in 0..200 {
        assert!(held(&h, peer) <= QUEUE_BOUND + 9_000, "{}", held(&h, peer));
        if h.stage(peer) != Some(Stage::Ws) {
            break;
        }
        h.post(0, "/notify", &body);
    }
    assert_eq!(
        h.stage(peer),
        Some(Stage::Closing),
        "dropped as a slow consumer"
    );
    assert_eq!(metrics::get(&h.process.stats.slow_consumers_dropped), 1);
    assert_eq!(metrics::get(&h.process.stats.replays_active), 0);
    assert_eq!(replayed(&h), 0, "nothing was written whole");
}

#[test]
fn a_replay_ends_with_its_client_or_its_catching_up() {
    let mut h = Harness::new(roomy(1));
    publish(&mut h, 0, 50);
    let active = |h: &Harness| metrics::get(&h.process.stats.replays_active);
    let (leaver, _) = resume(&mut h, 0, 0, 64 * 1024);
    let (reader, _) = resume(&mut h, 0, 10, 64 * 1024);
    assert_eq!(active(&h), 2);
    let had = offsets(&mut h, leaver).len() as u64;
    h.fin(leaver);
    h.run();
    assert_eq!(active(&h), 1, "the one that left");
    h.room(reader, usize::MAX);
    h.run();
    assert_eq!(offsets(&mut h, reader), (11..=50).collect::<Vec<u64>>());
    assert_eq!(active(&h), 0, "caught up");
    assert_eq!(replayed(&h), 40 + had, "and what the leaver got whole");
    let (_, level) = resume(&mut h, 0, 50, usize::MAX);
    assert_eq!(level["replayed"], 0);
    assert_eq!(active(&h), 0, "nothing to replay, no replay");
}
