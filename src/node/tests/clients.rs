//! One worker and its WebSocket clients: welcome, chat, direct messages,
//! the order of what each client gets, slow consumers.

use super::harness::{config, Harness};
use crate::config::Config;
use crate::node::fanout::MAX_BATCH_BYTES;
use crate::obs::metrics::Limit;

#[test]
fn a_client_is_welcomed_with_its_id_and_where_the_stream_stands() {
    let mut h = Harness::workers(1);
    let (_, welcome) = h.ws(0, "/ws");
    assert_eq!(welcome["client_id"], format!("{}-0-1", h.process.instance));
    assert_eq!(welcome["worker"], 0);
    assert_eq!(welcome["offset"], 0);
    assert!(welcome["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(welcome["time"], "2026-11-21T16:14:56.789Z");
    let (_, second) = h.ws(0, "/ws");
    assert_eq!(second["client_id"], format!("{}-0-2", h.process.instance));
}

#[test]
fn chat_reaches_every_client_the_sender_too_with_one_offset_each() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let b = h.client(0);
    h.text(a, r#"{"type":"chat","message":"hi"}"#);
    h.text(b, "plain text is chat");
    h.run();
    for peer in [a, b] {
        let got = h.json(peer);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["message"], "hi");
        assert_eq!(got[0]["offset"], 1);
        assert_eq!(got[1]["message"], "plain text is chat");
        assert_eq!(got[1]["offset"], 2);
    }
}

#[test]
fn a_bad_message_is_answered_with_an_error_and_the_connection_stays() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    h.text(a, r#"{"type":"dance"}"#);
    h.text(a, r#"{"type":"ping"}"#);
    h.frame(a, 0x82, b"\x01\x02");
    h.run();
    let got = h.json(a);
    assert_eq!(got[0]["error"], "unknown message type \"dance\"");
    assert_eq!(got[1]["type"], "pong");
    assert_eq!(
        got[2]["error"],
        "binary messages are not supported; send JSON text"
    );
}

#[test]
fn a_status_request_counts_what_the_process_holds() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    h.client(0);
    h.text(a, r#"{"type":"status_request"}"#);
    h.run();
    let status = &h.json(a)[0];
    assert_eq!(status["type"], "status");
    assert_eq!(status["connections"], 2);
    assert_eq!(status["messages_received"], 1);
}

#[test]
fn a_direct_message_reaches_only_its_recipient_and_an_unknown_one_is_an_error() {
    let mut h = Harness::workers(1);
    let (a, _) = h.ws(0, "/ws");
    let (b, welcome_b) = h.ws(0, "/ws");
    let c = h.client(0);
    let to_b = format!(
        r#"{{"type":"direct","to":"{}","message":"psst"}}"#,
        welcome_b["client_id"].as_str().unwrap()
    );
    h.text(a, &to_b);
    h.text(a, r#"{"type":"direct","to":"nobody-0-9","message":"x"}"#);
    h.run();
    let got = h.json(b);
    assert_eq!((got.len(), &got[0]["type"]), (1, &"direct".into()));
    assert_eq!(got[0]["message"], "psst");
    assert_eq!(h.json(a)[0]["error"], "unknown client \"nobody-0-9\"");
    assert!(h.json(c).is_empty());
}

#[test]
fn a_turns_broadcasts_reach_each_client_in_one_write() {
    let mut h = Harness::workers(1);
    let clients: Vec<_> = (0..5).map(|_| h.client(0)).collect();
    let publisher = h.client(0);
    h.sockets[0].sends.clear();
    // Three chats in one read: one turn.
    let mut burst = Vec::new();
    for n in 0..3 {
        burst.extend(crate::proto::frame::masked(
            0x81,
            format!("chat {n}").as_bytes(),
            [9, 9, 9, 9],
        ));
    }
    h.send(publisher, &burst);
    h.run();
    for &peer in &clients {
        let writes = h.sockets[0].sends.iter().filter(|(k, _)| *k == peer.key);
        assert_eq!(writes.count(), 1, "one write for all three");
        let offsets: Vec<_> = h.json(peer).iter().map(|m| m["offset"].clone()).collect();
        assert_eq!(offsets, [1, 2, 3]);
    }
}

#[test]
fn a_clients_own_answer_comes_after_what_went_to_everyone_before_it() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let b = h.client(0);
    // B chats, then A pings, in the same turn: A's pong must not overtake
    // B's chat.
    let mut both = crate::proto::frame::masked(0x81, b"first", [1, 1, 1, 1]);
    h.socket(b).inbox.extend(both.drain(..));
    h.socket(a).inbox.extend(crate::proto::frame::masked(
        0x81,
        br#"{"type":"ping"}"#,
        [2, 2, 2, 2],
    ));
    h.send(b, &[]);
    h.send(a, &[]);
    h.run();
    assert_eq!(h.types(a), ["chat", "pong"]);
    assert_eq!(h.types(b), ["chat"]);
}

#[test]
fn a_client_joining_mid_turn_gets_its_welcome_first_and_nothing_sent_before_it() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    h.socket(a)
        .inbox
        .extend(crate::proto::frame::masked(0x81, b"before", [1, 1, 1, 1]));
    h.send(a, &[]);
    // Joins in the same turn, after the chat.
    let late = h.accept(0);
    h.send(late, super::harness::upgrade("/ws").as_bytes());
    h.text(a, "after");
    h.run();
    assert_eq!(h.response(late).unwrap().status, 101);
    let got = h.json(late);
    assert_eq!(got[0]["type"], "welcome");
    assert_eq!(got[0]["offset"], 1, "the chat before it was handed out");
    let rest: Vec<_> = got[1..].iter().map(|m| m["message"].clone()).collect();
    assert_eq!(rest, ["after"]);
}

#[test]
fn a_client_that_does_not_read_is_dropped_as_a_slow_consumer() {
    let mut h = Harness::new(Config {
        max_queue_bytes: 4096,
        ..config()
    });
    let slow = h.client(0);
    let reader = h.client(0);
    h.room(slow, 0);
    for n in 0..20 {
        h.text(reader, &format!("{n:0>400}"));
        h.run();
    }
    assert_eq!(h.stage(slow), Some(crate::conn::Stage::Closing));
    assert_eq!(h.json(reader).len(), 20, "the others lose nothing");
    h.room(slow, usize::MAX);
    h.run();
    let frames = h.frames(slow);
    let close = frames.last().expect("a Close");
    assert_eq!(close.close_code(), Some(1008));
    assert_eq!(
        crate::obs::metrics::get(&h.process.stats.slow_consumers_dropped),
        1
    );
}

#[test]
fn a_client_half_way_through_a_frame_is_dropped_without_a_close() {
    let mut h = Harness::new(Config {
        max_queue_bytes: 2048,
        ..config()
    });
    let slow = h.client(0);
    let reader = h.client(0);
    h.room(slow, 100);
    for _ in 0..10 {
        h.text(reader, &"x".repeat(500));
        h.run();
    }
    assert_eq!(h.stage(slow), Some(crate::conn::Stage::Closing));
    h.room(slow, usize::MAX);
    h.run();
    // The frame it was in the middle of is finished (100 bytes of it had
    // gone out), and nothing follows it, not even a Close.
    let frames = h.frames(slow);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].opcode, 1);
    assert!(
        h.socket(slow).outbox.is_empty(),
        "no partial frame after it"
    );
}

#[test]
fn echo_sends_every_message_back_as_it_came() {
    let mut h = Harness::new(Config {
        enable_echo: true,
        ..config()
    });
    let (echo, _) = h.ws(0, "/echo");
    h.text(echo, "hello");
    h.frame(echo, 0x82, &[0, 1, 2]);
    h.run();
    let frames = h.frames(echo);
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (1, &b"hello"[..])
    );
    assert_eq!(
        (frames[1].opcode, &frames[1].payload[..]),
        (2, &[0, 1, 2][..])
    );
}

#[test]
fn a_clients_close_is_echoed_and_the_server_closes_the_connection() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    h.frame(a, 0x88, &payload);
    h.run();
    let frames = h.frames(a);
    assert_eq!(frames[0].close_code(), Some(4000));
    assert!(h.is_closed(a), "then the server closes the connection");
    assert_eq!(h.process.stats.active(), 0);
}

#[test]
fn a_protocol_fault_closes_with_its_code() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    // An unmasked client frame.
    h.send(a, &[0x81, 0x02, b'h', b'i']);
    h.run();
    assert_eq!(h.frames(a)[0].close_code(), Some(1002));
}

#[test]
fn past_the_total_queue_bound_the_slowest_clients_go_first() {
    let mut h = Harness::new(Config {
        max_queue_bytes: 1 << 20,
        max_total_queue_bytes: 20_000,
        ..config()
    });
    let slow: Vec<_> = (0..4).map(|_| h.client(0)).collect();
    let reader = h.client(0);
    let open = |h: &Harness| -> Vec<bool> {
        slow.iter()
            .map(|peer| h.stage(*peer) == Some(crate::conn::Stage::Ws))
            .collect()
    };
    // One more stops reading before each message of about 3 KB, so the
    // first to stop always holds the most.
    let mut seen = Vec::new();
    for n in 0..7 {
        if let Some(peer) = slow.get(n) {
            h.room(*peer, 0);
        }
        h.text(reader, &"x".repeat(3_000));
        h.run();
        seen.push(open(&h));
    }
    // 3, 6+3, 9+6+3 KB fit; at 12+9+6+3 the 12 goes; then each time the
    // queues pass 20 KB, the largest left goes.
    assert_eq!(seen[2], [true, true, true, true]);
    assert_eq!(seen[3], [false, true, true, true]);
    assert_eq!(seen[4], [false, false, true, true]);
    assert_eq!(seen[6], [false, false, false, true]);
    assert_eq!(h.json(reader).len(), 7, "the reader loses nothing");
}

#[test]
fn a_chat_flood_of_large_messages_stops_at_the_history_bound() {
    let bound = 1 << 20;
    let mut h = Harness::new(Config {
        max_history_bytes: bound,
        ..config()
    });
    let flooder = h.client(0);
    let big = "x".repeat(60_000);
    for _ in 0..100 {
        h.text(flooder, &big);
        h.run();
        let _ = h.take(flooder);
        assert!(h.process.stream().bytes() <= bound);
    }
    let kept = h.process.stream().len();
    assert!((15..=17).contains(&kept), "{kept} of 60 KB in 1 MiB");
    assert_eq!(h.process.stream().last(), 100, "every one numbered");
}

#[test]
fn unfinished_messages_stop_at_the_receive_bound_the_largest_closed_first() {
    let bound = 256 * 1024;
    let mut h = Harness::new(Config {
        max_total_receive_bytes: bound,
        ..config()
    });
    let frame = crate::proto::frame::masked(0x81, &vec![b'x'; 60_000], [1, 2, 3, 4]);
    let mut clients = Vec::new();
    for i in 0..10 {
        let client = h.client(0);
        // Every one sends all but the last byte of a 60 KB message, the
        // first ones a little more of theirs than the later ones.
        let keep_back = 1 + i * 100;
        h.send(client, &frame[..frame.len() - keep_back]);
        h.run();
        assert!(
            h.process
                .receiving
                .load(std::sync::atomic::Ordering::Relaxed)
                <= bound,
            "after {i}"
        );
        clients.push(client);
    }
    let closed: Vec<usize> = (0..10)
        .filter(|&i| {
            h.frames(clients[i])
                .iter()
                .any(|f| f.close_code() == Some(1009))
        })
        .collect();
    // About 60 KB each: four fit in 256 KiB, and each one past them
    // closes the one holding the most, the oldest still open (the earlier
    // ones sent a little more).
    assert_eq!(closed, [0, 1, 2, 3, 4, 5]);
    let hits = h.process.stats.limit_hits(Limit::TotalReceive);
    assert_eq!(hits, closed.len() as u64);
}

/// A read of thousands of short chats fills the turn's batch: past 256 KiB
/// of broadcasts the worker reads no more until the turn has written them,
/// so one pass leaves a client behind by a few shared segments at most;
/// nothing is lost, the flooder is read on at the next turn.
#[test]
fn a_turn_reads_no_more_once_its_broadcasts_fill_the_batch() {
    let mut h = Harness::workers(1);
    let flooder = h.client(0);
    let reader = h.client(0);
    let chat =
        crate::proto::frame::masked(0x81, br#"{"type":"chat","message":"hi"}"#, [1, 2, 3, 4]);
    for _ in 0..20_000 {
        h.socket(flooder).inbox.extend(&chat);
    }
    h.send(flooder, &[]);
    let batch = h.nodes[0].fanout.held();
    assert!(
        (MAX_BATCH_BYTES..MAX_BATCH_BYTES + 8 * 64 * 1024).contains(&batch),
        "{batch} bytes of broadcasts before the turn's writes"
    );
    assert!(!h.nodes[0].held_back.is_empty(), "the flooder waits");
    assert!(!h.socket(flooder).inbox.is_empty());
    h.run();
    assert!(h.socket(flooder).inbox.is_empty(), "read on, turn by turn");
    assert_eq!(h.json(reader).len(), 20_000, "nothing lost");
}
