//! The drain in memory: notices, the deadline, the last client, a
//! 30-minute drain in microseconds.

use std::time::Duration;

use super::harness::{config, upgrade, Harness, Peer};
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

/// A publisher on a keep-alive connection, answered once before the drain.
fn keep_alive_publisher(h: &mut Harness) -> Peer {
    let (publisher, answer) = h.post(0, "/broadcast", r#"{"message":"before"}"#);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None, "kept alive");
    assert!(!h.is_closed(publisher));
    publisher
}

fn post_request(body: &str) -> String {
    format!(
        "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A drain begun with one `/ws` client staying and a keep-alive publisher,
/// in a process whose sockets another process serves (`shared`) or not.
fn draining_with_publisher(shared: bool) -> (Harness, Peer, Peer) {
    let mut h = Harness::new(Config {
        drain_timeout: 60 * S,
        ..config()
    });
    if shared {
        h.process.listener.handed_over_to(4242);
    }
    let client = h.client(0);
    let publisher = keep_alive_publisher(&mut h);
    h.drain(60 * S);
    (h, client, publisher)
}

#[test]
fn with_shared_sockets_every_answer_of_the_drain_closes_its_connection() {
    let (mut h, _staying, publisher) = draining_with_publisher(true);
    h.send(
        publisher,
        post_request(r#"{"message":"during"}"#).as_bytes(),
    );
    h.run();
    let answer = h.response(publisher).expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(h.socket(publisher).write_shut, "our side closed after it");
    h.fin(publisher);
    h.run();
    assert!(h.is_closed(publisher));
    for path in ["/health", "/status", "/metrics", "/nope"] {
        let answer = h.get(0, path);
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
    }
    assert!(!h.exited[0], "the client is still served");
}

#[test]
fn with_shared_sockets_requests_read_behind_one_are_answered_before_the_close() {
    let (mut h, _staying, publisher) = draining_with_publisher(true);
    let pipelined = post_request(r#"{"message":"one"}"#) + &post_request(r#"{"message":"two"}"#);
    h.send(publisher, pipelined.as_bytes());
    h.run();
    let first = h.response(publisher).expect("the first answer");
    let second = h.response(publisher).expect("the second answer");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.header("connection"), None);
    assert_eq!(second.header("connection"), Some("close"));
}

#[test]
fn a_socket_of_its_own_keeps_its_keep_alive_connections_while_draining() {
    let (mut h, _staying, publisher) = draining_with_publisher(false);
    h.send(
        publisher,
        post_request(r#"{"message":"during"}"#).as_bytes(),
    );
    h.run();
    let answer = h.response(publisher).expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None, "nobody else to go to");
    assert!(!h.is_closed(publisher) && !h.socket(publisher).write_shut);
}

#[test]
fn a_request_read_as_the_last_client_leaves_is_answered_before_the_exit() {
    for shared in [true, false] {
        let (mut h, last, publisher) = draining_with_publisher(shared);
        // The publisher does not read for now: its answer waits in the
        // queue, and with it the exit.
        h.socket(publisher).room = 0;
        h.send(publisher, post_request(r#"{"message":"late"}"#).as_bytes());
        h.fin(last);
        h.run();
        assert!(!h.exited[0], "shared={shared}: an answer is owed");
        h.room(publisher, usize::MAX);
        h.run();
        let answer = h.response(publisher).expect("the answer, before the exit");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection").is_some(), shared);
        assert!(h.exited[0], "shared={shared}: nothing owed any more");
    }
}

#[test]
fn a_request_half_read_as_the_last_client_leaves_is_answered_before_the_exit() {
    let (mut h, last, publisher) = draining_with_publisher(true);
    let request = post_request(r#"{"message":"late"}"#);
    let (head, rest) = request.split_at(20);
    h.send(publisher, head.as_bytes());
    h.fin(last);
    h.run();
    assert!(!h.exited[0], "a request is on its way in");
    h.send(publisher, rest.as_bytes());
    h.run();
    let answer = h.response(publisher).expect("the answer");
    assert_eq!(
        (answer.status, answer.header("connection")),
        (200, Some("close"))
    );
    assert!(h.exited[0]);
}

#[test]
fn an_answer_that_is_never_read_holds_the_exit_no_longer_than_the_linger() {
    let (mut h, last, publisher) = draining_with_publisher(true);
    h.socket(publisher).room = 0;
    h.send(publisher, post_request(r#"{"message":"late"}"#).as_bytes());
    h.fin(last);
    h.run();
    assert!(!h.exited[0]);
    h.advance(crate::node::CLOSE_LINGER + S);
    assert!(h.exited[0], "the linger is over, and the exit with it");
}

#[test]
fn with_shared_sockets_an_idle_keep_alive_connection_gets_its_last_answer_before_the_exit() {
    let (mut h, last, publisher) = draining_with_publisher(true);
    h.fin(last);
    h.run();
    assert!(
        !h.exited[0],
        "its next request may be on the way: it is answered, not met by a closed socket"
    );
    h.send(publisher, post_request(r#"{"message":"late"}"#).as_bytes());
    h.run();
    let answer = h.response(publisher).expect("the answer");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(h.exited[0], "that was its last answer");
}

#[test]
fn with_shared_sockets_an_idle_keep_alive_connection_holds_the_exit_until_its_timeout() {
    let (mut h, last, _idle) = draining_with_publisher(true);
    h.fin(last);
    h.run();
    h.advance(h.process.config.header_timeout - S);
    assert!(!h.exited[0]);
    h.advance(2 * S);
    assert!(h.exited[0], "the keep-alive timeout closed it");
}

#[test]
fn a_socket_of_its_own_does_not_wait_for_idle_keep_alive_connections() {
    let (mut h, last, idle) = draining_with_publisher(false);
    h.fin(last);
    h.run();
    assert!(h.exited[0]);
    assert!(h.is_closed(idle));
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
