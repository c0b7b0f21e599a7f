//! The drain in memory: notices, the deadline, the last client, a
//! 30-minute drain in microseconds.

use std::time::Duration;

use super::harness::{config, upgrade, Harness};
use crate::config::Config;
use crate::node::listener_state::Origin;

const S: Duration = Duration::from_secs(1);

#[test]
fn with_no_client_the_drain_ends_at_once() {
    let mut h = Harness::workers(1);
    h.drain(30 * 60 * S);
    assert!(h.exited[0]);
}

#[test]
fn every_client_gets_one_notice_and_keeps_being_served() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let b = h.client(0);
    h.drain(60 * S);
    for peer in [a, b] {
        let got = h.json(peer);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["type"], "shutdown_notice");
        assert_eq!(got[0]["drain_timeout_s"], 60);
        let delay = got[0]["reconnect_after_ms"].as_u64().unwrap();
        assert!(delay < 10_000 && delay % 10 == 0, "{delay}");
    }
    h.text(a, "still here");
    h.run();
    assert_eq!(h.json(b)[0]["message"], "still here");
    assert_eq!(h.get(0, "/health").status, 503);
    let (_, refused) = h.http(0, &upgrade("/ws"));
    assert_eq!(refused.status, 503);
    assert!(!h.exited[0]);
}

#[test]
fn the_notice_follows_the_turns_broadcasts_in_the_same_write() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let publisher = h.client(0);
    h.sockets[0].sends.clear();
    h.socket(publisher)
        .inbox
        .extend(crate::proto::frame::masked(
            0x81,
            b"last words",
            [3, 3, 3, 3],
        ));
    h.process.start_drain(h.now.at + 60 * S);
    h.send(publisher, &[]);
    h.nodes[0].handle(crate::node::Input::Woken, h.now);
    h.run();
    assert_eq!(h.types(a), ["chat", "shutdown_notice"]);
    let writes = h.sockets[0].sends.iter().filter(|(k, _)| *k == a.key);
    assert_eq!(writes.count(), 1);
}

#[test]
fn the_last_client_leaving_ends_the_drain_at_once() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let b = h.client(0);
    h.drain(30 * 60 * S);
    h.fin(a);
    h.run();
    assert!(!h.exited[0]);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    h.frame(b, 0x88, &payload);
    h.fin(b);
    h.run();
    assert!(h.exited[0], "exits in the same turn");
}

#[test]
fn at_the_deadline_the_rest_are_closed_with_1001_and_given_the_linger() {
    let mut h = Harness::workers(1);
    let answers = h.client(0);
    let silent = h.client(0);
    h.drain(30 * 60 * S);
    h.advance(30 * 60 * S - S);
    assert!(h.frames(answers).iter().all(|f| f.opcode != 8));
    h.advance(2 * S);
    for peer in [answers, silent] {
        let frames = h.frames(peer);
        assert_eq!(frames.last().unwrap().close_code(), Some(1001));
    }
    h.frame(answers, 0x88, &1001u16.to_be_bytes());
    h.fin(answers);
    h.run();
    assert!(!h.exited[0], "the silent one still has its grace");
    h.advance(6 * S);
    assert!(
        h.exited[0],
        "the grace is over: the worker ends, and its sockets"
    );
    assert!(h.is_closed(silent));
}

#[test]
fn closes_at_the_deadline_go_out_in_batches() {
    let mut h = Harness::workers(1);
    let clients: Vec<_> = (0..1_200).map(|_| h.client(0)).collect();
    h.drain(S);
    h.sockets[0].sends.clear();
    h.advance(2 * S);
    for peer in &clients {
        let frames = h.frames(*peer);
        assert_eq!(frames.last().unwrap().close_code(), Some(1001));
    }
    assert_eq!(
        h.sockets[0].sends.len(),
        1_200,
        "every Close written once, whatever the batches"
    );
}

#[test]
fn a_zero_timeout_notifies_and_closes_at_once() {
    let mut h = Harness::new(Config {
        drain_timeout: Duration::ZERO,
        ..config()
    });
    let a = h.client(0);
    h.drain(Duration::ZERO);
    let frames = h.frames(a);
    assert_eq!(frames.len(), 2);
    assert!(String::from_utf8_lossy(&frames[0].payload).contains("shutdown_notice"));
    assert_eq!(frames[1].close_code(), Some(1001));
}

#[test]
fn with_shared_sockets_it_stops_accepting_and_serves_who_was_on_the_way() {
    let mut h = Harness::new(Config {
        drain_timeout: 60 * S,
        ..config()
    });
    h.process.listener.handed_over_to(4242);
    assert_eq!(h.process.listener.origin, Origin::Bound);
    let on_its_way = h.accept(0);
    h.drain(60 * S);
    assert!(h.stopped_accepting[0]);
    assert!(!h.exited[0], "an accepted connection may be an upgrade");
    h.send(on_its_way, upgrade("/ws").as_bytes());
    h.run();
    assert_eq!(h.response(on_its_way).unwrap().status, 101);
    assert_eq!(h.types(on_its_way), ["welcome", "shutdown_notice"]);
    h.fin(on_its_way);
    h.run();
    assert!(h.exited[0]);
}

/// A worker that stopped takes no more mail: none is kept for it, so its
/// mailbox never fills and the workers still serving clients read on.
#[test]
fn a_stopped_worker_keeps_no_mail_and_holds_no_one_back() {
    let mut h = Harness::new(Config {
        workers: 2,
        max_total_queue_bytes: 64 * 1024,
        ..config()
    });
    let a = h.client(0);
    h.drain(60 * S);
    assert!(h.exited[1] && !h.exited[0]);
    for _ in 0..100 {
        h.text(a, &"x".repeat(1_000));
        h.run();
    }
    let chats = h.json(a).iter().filter(|m| m["type"] == "chat").count();
    assert_eq!(chats, 100);
    assert_eq!(h.process.memory().mailbox_bytes, 0);
}
