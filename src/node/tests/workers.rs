//! Several workers of one process: mail between them, driven as their
//! loops would be.

use super::harness::{config, Harness};
use crate::config::Config;
use crate::node::mailbox::Mail;

#[test]
fn chat_on_one_worker_reaches_the_others_in_one_offset_order() {
    let mut h = Harness::workers(3);
    let peers: Vec<_> = (0..3).map(|node| h.client(node)).collect();
    h.text(peers[2], "from two");
    h.text(peers[0], "from zero");
    h.run();
    for &peer in &peers {
        let got = h.json(peer);
        let order: Vec<_> = got
            .iter()
            .map(|m| (m["offset"].clone(), m["message"].clone()))
            .collect();
        assert_eq!(
            order,
            [
                (1.into(), "from two".into()),
                (2.into(), "from zero".into())
            ],
            "node {}",
            peer.node
        );
    }
}

#[test]
fn a_direct_message_crosses_workers_and_a_miss_comes_back_as_an_error() {
    let mut h = Harness::workers(2);
    let (a, _) = h.ws(0, "/ws");
    let (b, welcome) = h.ws(1, "/ws");
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    h.text(
        a,
        &format!(r#"{{"type":"direct","to":"{id}","message":"psst"}}"#),
    );
    h.run();
    assert_eq!(h.json(b)[0]["message"], "psst");
    let gone = format!("{}-1-99", h.process.instance);
    h.text(
        a,
        &format!(r#"{{"type":"direct","to":"{gone}","message":"x"}}"#),
    );
    h.run();
    assert_eq!(h.json(a)[0]["error"], format!("unknown client \"{gone}\""));
}

#[test]
fn a_personal_publish_for_another_worker_is_answered_once_it_has_looked() {
    let mut h = Harness::workers(2);
    let (b, welcome) = h.ws(1, "/ws");
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let (_, found) = h.post(
        0,
        "/notify",
        &format!(r#"{{"message":"m","client_id":"{id}"}}"#),
    );
    assert_eq!(
        (found.status, found.json()["recipients"].clone()),
        (200, 1.into())
    );
    assert_eq!(h.json(b)[0]["message"], "m");
    let gone = format!("{}-1-99", h.process.instance);
    let (_, missing) = h.post(
        0,
        "/notify",
        &format!(r#"{{"message":"m","client_id":"{gone}"}}"#),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn a_broadcast_counts_the_clients_of_every_worker() {
    let mut h = Harness::workers(2);
    let a = h.client(0);
    let b = h.client(1);
    h.client(1);
    let (_, answer) = h.post(1, "/broadcast", r#"{"message":"all"}"#);
    assert_eq!(answer.json()["recipients"], 3);
    assert_eq!(h.json(a)[0]["offset"], 1);
    assert_eq!(h.json(b)[0]["offset"], 1);
}

#[test]
fn a_client_resuming_on_a_worker_behind_it_gets_nothing_twice() {
    let mut h = Harness::workers(2);
    let (_, welcome) = h.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    // Worker 0 has handed out offset 1; worker 1 has not read its mail yet.
    let publisher = h.client(0);
    h.socket(publisher)
        .inbox
        .extend(crate::proto::frame::masked(0x81, b"one", [5, 5, 5, 5]));
    h.send(publisher, &[]);
    let late = h.accept(1);
    h.send(
        late,
        super::harness::upgrade(&format!("/ws?since=1&epoch={epoch}")).as_bytes(),
    );
    h.run();
    assert_eq!(h.response(late).unwrap().status, 101);
    let got = h.json(late);
    assert_eq!(got[0]["recovered"], true);
    let offsets: Vec<_> = got[1..].iter().map(|m| m["offset"].clone()).collect();
    assert!(offsets.is_empty(), "offset 1 is not sent again: {got:?}");
    h.text(publisher, "two");
    h.run();
    let offsets: Vec<_> = h.json(late).iter().map(|m| m["offset"].clone()).collect();
    assert_eq!(offsets, [2]);
}

/// 60 KB chats from a client of worker 0 while worker 1, whose clients
/// do not read but one, is busy (F9 of issue 22: the mail waiting for
/// worker 1 had no bound at all, 6 MB here against a 1 MiB bound). Mail
/// counts toward the total from the moment it is posted: worker 0 stops
/// reading while worker 1's mailbox is full, and reads on once worker 1
/// has taken it. Nothing is lost for the client that keeps up.
#[test]
fn mail_for_a_busy_worker_stays_within_the_total_queue_bound() {
    let bound = 1 << 20;
    let mut h = Harness::new(Config {
        workers: 2,
        max_total_queue_bytes: bound,
        ..config()
    });
    let flooder = h.client(0);
    let reader = h.client(1);
    let crowd: Vec<_> = (0..20).map(|_| h.client(1)).collect();
    for &peer in &crowd {
        h.room(peer, 0);
    }
    let chat = format!(r#"{{"type":"chat","message":"{}"}}"#, "x".repeat(60_000));
    let frame = crate::proto::frame::masked(0x81, chat.as_bytes(), [1, 2, 3, 4]);
    for _ in 0..100 {
        h.socket(flooder).inbox.extend(&frame);
    }
    // A read is one chat: the mailbox is full past a quarter of worker 1's
    // share (128 KiB), and one read more may be on its way.
    let most = bound / 2 / 4 + 2 * frame.len();
    let mut turns = 0;
    h.send(flooder, &[]);
    while !h.socket(flooder).inbox.is_empty() {
        h.run_nodes(&[0]);
        let memory = h.process.memory();
        assert!(
            memory.mailbox_bytes <= most,
            "{} bytes of mail for worker 1",
            memory.mailbox_bytes
        );
        assert!(memory.queued_bytes + memory.mailbox_bytes <= bound + most);
        h.take(flooder);
        h.run_nodes(&[1]);
        assert!(h.process.memory().queued_bytes <= bound);
        turns += 1;
        assert!(turns < 200, "worker 0 never read on");
    }
    h.run();
    let got: Vec<_> = h.json(reader).iter().map(|m| m["offset"].clone()).collect();
    let expected: Vec<serde_json::Value> = (1..=100).map(Into::into).collect();
    assert_eq!(got, expected, "every chat, in order, for the reader");
    assert!(
        crowd
            .iter()
            .all(|&peer| h.stage(peer) != Some(crate::conn::Stage::Ws)),
        "the non-readers are dropped"
    );
    assert_eq!(h.process.memory().mailbox_bytes, 0);
}

/// What waits in a busy worker's mailbox is counted, its frames and an
/// entry each, until the worker takes it (weighed here by taking it).
#[test]
fn the_mail_a_busy_worker_has_not_taken_is_weighed_by_its_mailbox() {
    let mut h = Harness::new(Config {
        workers: 2,
        max_total_queue_bytes: 1 << 20,
        ..config()
    });
    let flooder = h.client(0);
    h.client(1);
    h.text(flooder, &"y".repeat(10_000));
    h.run_nodes(&[0]);
    let memory = h.process.memory();
    let weighed: usize = h
        .process
        .take_mail(1)
        .iter()
        .map(|mail| match mail {
            Mail::Stream { frame, .. } | Mail::Broadcast(frame) => frame.bytes(),
            _ => 0,
        })
        .sum();
    assert!(weighed > 10_000);
    assert_eq!(
        memory.mailbox_bytes,
        weighed + crate::node::mailbox::ENTRY_BYTES
    );
    assert_eq!(h.process.memory().mailbox_bytes, 0, "taken");
}
