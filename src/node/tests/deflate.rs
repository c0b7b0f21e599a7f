//! permessage-deflate on the way out: a message for everyone or a channel
//! is compressed once (not once per client), every client that negotiated
//! gets the compressed frame and every other client the plain one, a short
//! message goes plain to everyone, and a replay serves the variant the
//! history kept without compressing again.

use serde_json::Value;

use super::harness::{config, Harness, Peer};
use crate::config::Config;
use crate::obs::metrics;
use crate::proto::shared_frame::COMPRESS_FROM;

fn compressed(h: &Harness) -> u64 {
    metrics::get(&h.process.stats.messages_compressed)
}

/// A notification long enough to be compressed.
fn long_message(n: usize) -> String {
    format!(
        "{n} {}",
        "order=48213 status=shipped city=Lisbon, ".repeat(20)
    )
}

fn broadcast(h: &mut Harness, node: usize, message: &str) {
    let body = format!(r#"{{"message":"{message}"}}"#);
    let (_, answer) = h.post(node, "/broadcast", &body);
    assert_eq!(answer.status, 200);
}

/// The text messages the client got, each with whether it came
/// compressed, taken.
fn received(h: &mut Harness, peer: Peer) -> Vec<(bool, Value)> {
    h.frames(peer)
        .into_iter()
        .filter(|f| f.opcode == 1)
        .map(|f| (f.rsv1, serde_json::from_slice(&f.text()).unwrap()))
        .collect()
}

#[test]
fn a_broadcast_is_compressed_once_and_each_client_gets_its_variant() {
    let mut h = Harness::new(Config {
        workers: 2,
        ..config()
    });
    let zipped: Vec<Peer> = (0..4).map(|i| h.deflate_client(i % 2, "").0).collect();
    let plain: Vec<Peer> = (0..3).map(|i| h.client(i % 2)).collect();
    h.run();
    for message in [long_message(1), long_message(2)] {
        broadcast(&mut h, 1, &message);
    }
    assert_eq!(compressed(&h), 2, "once per message, not per client");
    let mut seen = Vec::new();
    for &peer in &zipped {
        let got = received(&mut h, peer);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(rsv1, _)| *rsv1), "compressed for it");
        seen.push(got.into_iter().map(|(_, v)| v).collect::<Vec<_>>());
    }
    for &peer in &plain {
        let got = received(&mut h, peer);
        assert!(got.iter().all(|(rsv1, _)| !rsv1), "plain for it");
        seen.push(got.into_iter().map(|(_, v)| v).collect());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "the same messages");
    assert_eq!(seen[0][1]["message"], long_message(2));
}

#[test]
fn a_short_message_goes_plain_to_everyone() {
    let mut h = Harness::new(config());
    let (peer, _) = h.deflate_client(0, "");
    h.text(peer, r#"{"type":"chat","message":"hi"}"#);
    h.run();
    let got = received(&mut h, peer);
    assert_eq!(got.len(), 1);
    assert!(serde_json::to_string(&got[0].1).unwrap().len() < COMPRESS_FROM);
    assert!(!got[0].0, "a chat of a few bytes is not worth compressing");
    assert_eq!(compressed(&h), 0);
}

#[test]
fn nothing_is_compressed_while_no_client_negotiated() {
    let mut h = Harness::new(config());
    let peer = h.client(0);
    broadcast(&mut h, 0, &long_message(1));
    assert_eq!(compressed(&h), 0);
    assert!(!received(&mut h, peer)[0].0);
}

#[test]
fn a_replay_serves_each_client_the_variant_kept_without_compressing_again() {
    let mut h = Harness::new(config());
    let (_, welcome) = h.deflate_client(0, "");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        broadcast(&mut h, 0, &long_message(n));
    }
    assert_eq!(compressed(&h), 3);
    let since = format!("?since=0&epoch={epoch}");
    let (zipped, welcome) = h.deflate_client(0, &since);
    assert_eq!(welcome["replayed"], 3, "{welcome}");
    let (plain, _) = h.ws(0, &format!("/ws{since}"));
    h.run();
    let zipped = received(&mut h, zipped);
    let plain = received(&mut h, plain);
    assert_eq!(zipped.len(), 3);
    assert!(zipped.iter().all(|(rsv1, _)| *rsv1));
    assert!(plain.iter().all(|(rsv1, _)| !rsv1));
    let messages = |got: &[(bool, Value)]| -> Vec<Value> {
        got.iter().map(|(_, v)| v["message"].clone()).collect()
    };
    assert_eq!(messages(&zipped), messages(&plain));
    assert_eq!(zipped[2].1["offset"], 3);
    assert_eq!(compressed(&h), 3, "replays come from the history as kept");
}

#[test]
fn a_channel_message_is_compressed_once_for_its_subscribers() {
    let mut h = Harness::new(Config {
        workers: 2,
        ..config()
    });
    let subscribe = |h: &mut Harness, peer: Peer| {
        h.text(peer, r#"{"type":"subscribe","channel":"news"}"#);
        h.run();
        h.json(peer);
    };
    let zipped: Vec<Peer> = (0..2).map(|i| h.deflate_client(i, "").0).collect();
    let plain = h.client(1);
    for &peer in zipped.iter().chain([&plain]) {
        subscribe(&mut h, peer);
    }
    let body = format!(r#"{{"message":"{}","channel":"news"}}"#, long_message(7));
    let (_, answer) = h.post(0, "/broadcast", &body);
    assert_eq!(answer.status, 200);
    assert_eq!(compressed(&h), 1);
    for &peer in &zipped {
        let got = received(&mut h, peer);
        assert_eq!(got.len(), 1);
        assert!(got[0].0);
        assert_eq!(got[0].1["channel"], "news");
    }
    let got = received(&mut h, plain);
    assert!(!got[0].0);
    assert_eq!(got[0].1["message"], long_message(7));
}

#[test]
fn the_count_of_clients_that_negotiated_follows_them_out() {
    let mut h = Harness::new(config());
    let gauge = |h: &Harness| metrics::get(&h.process.stats.deflate_clients);
    let (zipped, _) = h.deflate_client(0, "");
    let plain = h.client(0);
    assert_eq!(gauge(&h), 1, "counted as it joined");
    h.fin(zipped);
    h.run();
    broadcast(&mut h, 0, &long_message(1));
    assert_eq!(gauge(&h), 0, "the pass after it left no longer counts it");
    broadcast(&mut h, 0, &long_message(2));
    assert_eq!(compressed(&h), 1, "nothing compressed once it is gone");
    assert_eq!(received(&mut h, plain).len(), 2);
}
