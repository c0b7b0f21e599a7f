//! Time as an input: pings, idle clients, slow request heads, keep-alive,
//! the periodic notification, minutes of it in microseconds.

use std::time::Duration;

use super::harness::{config, upgrade, Harness};
use crate::config::Config;

const S: Duration = Duration::from_secs(1);

#[test]
fn a_quiet_client_is_pinged_every_interval() {
    let mut h = Harness::new(Config {
        ping_interval: Some(30 * S),
        ..config()
    });
    let a = h.client(0);
    h.advance(29 * S);
    assert!(h.frames(a).is_empty());
    h.advance(2 * S);
    let pings: Vec<u8> = h.frames(a).iter().map(|f| f.opcode).collect();
    assert_eq!(pings, [9]);
    h.advance(30 * S);
    assert_eq!(h.frames(a).len(), 1, "the next one a period later");
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout_and_a_talking_one_is_not() {
    let mut h = Harness::new(Config {
        idle_timeout: Some(75 * S),
        ..config()
    });
    let silent = h.client(0);
    let talking = h.client(0);
    for _ in 0..8 {
        h.advance(10 * S);
        h.frame(talking, 0x8A, b"");
    }
    h.advance(S);
    let frames = h.frames(silent);
    assert_eq!(frames.last().and_then(|f| f.close_code()), Some(1000));
    assert_eq!(frames.last().unwrap().payload[2..], *b"idle timeout");
    assert!(h.frames(talking).is_empty());
    assert_eq!(
        crate::obs::metrics::get(&h.process.stats.connections_total),
        2
    );
}

#[test]
fn a_request_head_that_never_ends_gets_408() {
    let mut h = Harness::new(Config {
        header_timeout: 10 * S,
        ..config()
    });
    let slow = h.accept(0);
    h.send(slow, b"GET /health HTTP/1.1\r\nHo");
    h.advance(9 * S);
    assert!(h.response(slow).is_none());
    h.advance(2 * S);
    assert_eq!(h.response(slow).unwrap().status, 408);
}

#[test]
fn a_quiet_keep_alive_connection_is_closed_without_a_word() {
    let mut h = Harness::new(Config {
        header_timeout: 10 * S,
        ..config()
    });
    let (peer, response) = h.http(0, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(response.status, 200);
    h.advance(11 * S);
    assert!(h.is_closed(peer));
    assert!(h.take(peer).is_empty());
}

#[test]
fn the_periodic_notification_goes_out_every_interval_from_worker_zero_only() {
    let mut h = Harness::new(Config {
        workers: 2,
        notify_interval: Some(10 * S),
        ..config()
    });
    let on_zero = h.client(0);
    let on_one = h.client(1);
    h.advance(25 * S);
    for peer in [on_zero, on_one] {
        let got = h.json(peer);
        let sources: Vec<_> = got.iter().map(|m| m["source"].clone()).collect();
        assert_eq!(sources, ["periodic", "periodic"], "{got:?}");
        assert_eq!(
            got[1]["message"],
            "Periodic notification #2 - active clients: 2"
        );
        assert!(got[0].get("offset").is_none());
    }
    h.drain(60 * S);
    h.json(on_zero);
    h.advance(30 * S);
    assert!(h.json(on_zero).is_empty(), "none while draining");
}

#[test]
fn an_upgrade_within_the_head_timeout_is_not_cut_by_it() {
    let mut h = Harness::new(Config {
        header_timeout: 10 * S,
        idle_timeout: Some(75 * S),
        ..config()
    });
    let peer = h.accept(0);
    h.advance(9 * S);
    h.send(peer, upgrade("/ws").as_bytes());
    h.advance(20 * S);
    assert_eq!(h.response(peer).unwrap().status, 101);
    assert!(!h.is_closed(peer));
}

#[test]
fn kept_broadcasts_leave_the_history_on_time_with_no_traffic() {
    let mut h = Harness::new(Config {
        history_ttl: 60 * S,
        ..config()
    });
    let _client = h.client(0);
    for message in ["a", "b"] {
        let (_, response) = h.post(0, "/broadcast", &format!(r#"{{"message":"{message}"}}"#));
        assert_eq!(response.status, 200);
    }
    h.advance(30 * S);
    let (_, response) = h.post(0, "/broadcast", r#"{"message":"c"}"#);
    assert_eq!(response.status, 200);
    assert_eq!(h.process.stream().len(), 3);
    h.advance(30 * S - Duration::from_millis(1));
    assert_eq!(h.process.stream().len(), 3);
    // Nothing happens but time: the first two turn 60 s old and leave.
    h.advance(Duration::from_millis(1));
    assert_eq!(h.process.stream().len(), 1);
    h.advance(30 * S);
    assert_eq!(h.process.stream().len(), 0);
    assert_eq!(h.process.stream().bytes(), 0);
    assert_eq!(h.nodes[0].poll_timeout(), None, "no timer left for it");
}
