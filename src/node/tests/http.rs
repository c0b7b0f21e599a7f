//! HTTP through a node: routes, publishing, the answer before the fanout,
//! upgrades refused, the per-address limit.

use std::net::{IpAddr, Ipv4Addr};

use super::harness::{config, upgrade, Harness};
use crate::config::Config;
use crate::conn::MAX_HTTP_QUEUED;

#[test]
fn health_and_status_answer_and_count_the_clients() {
    let mut h = Harness::workers(1);
    h.client(0);
    let health = h.get(0, "/health");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, "ok".into())
    );
    let status = h.get(0, "/status").json();
    assert_eq!(status["state"], "running");
    assert_eq!(status["connections"], 1);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let mut h = Harness::workers(1);
    let peer = h.accept(0);
    h.send(
        peer,
        b"GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /status HTTP/1.1\r\n\r\n",
    );
    h.run();
    let statuses: Vec<u16> = std::iter::from_fn(|| h.response(peer))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 404, 200]);
}

#[test]
fn a_broadcast_is_numbered_and_reaches_every_client() {
    let mut h = Harness::workers(1);
    let a = h.client(0);
    let b = h.client(0);
    let (_, answer) = h.post(0, "/broadcast", r#"{"message":"deploy","type":"success"}"#);
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(
        (body["id"].clone(), body["recipients"].clone()),
        (1.into(), 2.into())
    );
    for peer in [a, b] {
        let got = h.json(peer);
        assert_eq!(got[0]["type"], "notification");
        assert_eq!(got[0]["category"], "success");
        assert_eq!(got[0]["scope"], "broadcast");
        assert_eq!(got[0]["offset"], 1);
    }
}

#[test]
fn the_publisher_is_answered_before_the_fanout_is_written() {
    let mut h = Harness::workers(1);
    for _ in 0..3 {
        h.client(0);
    }
    h.sockets[0].sends.clear();
    let (publisher, answer) = h.post(0, "/broadcast", r#"{"message":"m"}"#);
    assert_eq!(answer.status, 200);
    let first = h.sockets[0].sends.first().expect("writes");
    assert_eq!(
        first.0, publisher.key,
        "the answer is the turn's first write"
    );
}

#[test]
fn a_personal_message_goes_to_its_client_only() {
    let mut h = Harness::workers(1);
    let (a, welcome) = h.ws(0, "/ws");
    let b = h.client(0);
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let body = format!(r#"{{"message":"yours","client_id":"{id}","data":{{"k":1}}}}"#);
    let (_, answer) = h.post(0, "/notify", &body);
    assert_eq!(answer.json()["recipients"], 1);
    let got = h.json(a);
    assert_eq!(got[0]["scope"], "personal");
    assert_eq!(got[0]["data"]["k"], 1);
    assert!(
        got[0].get("offset").is_none(),
        "personal messages have none"
    );
    assert!(h.json(b).is_empty());
    let (_, missing) = h.post(0, "/notify", r#"{"message":"x","client_id":"zz-0-1"}"#);
    assert_eq!(missing.status, 404);
}

#[test]
fn a_bad_publish_is_a_400_and_a_remote_publisher_needs_a_token() {
    let mut h = Harness::workers(1);
    let (_, bad) = h.post(0, "/broadcast", "[1]");
    assert_eq!(bad.status, 400);
    let remote = h.accept_from(0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    h.send(
        remote,
        b"POST /broadcast HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"message\":\"x\"}",
    );
    h.run();
    assert_eq!(h.response(remote).unwrap().status, 403);
}

#[test]
fn upgrades_are_refused_at_the_connection_limit() {
    let mut h = Harness::new(Config {
        max_connections: 2,
        ..config()
    });
    h.client(0);
    h.client(0);
    let (_, refused) = h.http(0, &upgrade("/ws"));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
}

#[test]
fn an_address_over_its_limit_is_refused_and_its_slots_come_back() {
    let mut h = Harness::new(Config {
        max_connections_per_ip: 2,
        ..config()
    });
    let a = h.client(0);
    h.client(0);
    let (_, refused) = h.http(0, &upgrade("/ws"));
    assert_eq!(refused.status, 503, "a third WebSocket client");
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let elsewhere = h.accept_from(0, other);
    h.send(elsewhere, upgrade("/ws").as_bytes());
    h.run();
    assert_eq!(
        h.response(elsewhere).unwrap().status,
        101,
        "another address"
    );
    h.fin(a);
    h.run();
    let (_, again) = h.ws(0, "/ws");
    assert_eq!(again["type"], "welcome", "the slot came back");
}

#[test]
fn connections_in_the_http_phase_are_limited_per_address_at_accept() {
    let mut h = Harness::new(Config {
        max_connections_per_ip: 2,
        ..config()
    });
    let first = h.accept(0);
    h.accept(0);
    let third = h.accept(0);
    h.run();
    let refused = h.response(third).expect("answered at once");
    assert_eq!(refused.status, 503);
    assert!(h.response(first).is_none(), "the others wait for a request");
}

#[test]
fn a_resume_replays_what_was_missed_right_after_the_welcome() {
    let mut h = Harness::workers(1);
    let (_, welcome) = h.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    for n in 1..=5 {
        h.post(0, "/broadcast", &format!(r#"{{"message":"m{n}"}}"#));
    }
    let (resumed, welcome) = h.ws(0, &format!("/ws?since=2&epoch={epoch}"));
    assert_eq!(
        (welcome["recovered"].clone(), welcome["replayed"].clone()),
        (true.into(), 3.into())
    );
    let replayed: Vec<_> = h
        .json(resumed)
        .iter()
        .map(|m| m["offset"].clone())
        .collect();
    assert_eq!(replayed, [3, 4, 5]);
    let (_, unknown) = h.ws(0, "/ws?since=2&epoch=other");
    assert_eq!(unknown["reason"], "unknown_epoch");
    let (_, bad) = h.http(0, &upgrade("/ws?since=x&epoch=e"));
    assert_eq!(bad.status, 400);
}

#[test]
fn a_resume_older_than_the_history_is_too_old() {
    let mut h = Harness::new(Config {
        history_size: 2,
        ..config()
    });
    let (_, welcome) = h.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    for n in 1..=4 {
        h.post(0, "/broadcast", &format!(r#"{{"message":"m{n}"}}"#));
    }
    let (_, old) = h.ws(0, &format!("/ws?since=1&epoch={epoch}"));
    assert_eq!(
        (old["recovered"].clone(), old["reason"].clone()),
        (false.into(), "too_old".into())
    );
    let (_, recent) = h.ws(0, &format!("/ws?since=2&epoch={epoch}"));
    assert_eq!(recent["replayed"], 2);
}

#[test]
fn request_bodies_on_their_way_count_toward_the_receive_bound() {
    let bound = 256 * 1024;
    let mut h = Harness::new(Config {
        max_total_receive_bytes: bound,
        ..config()
    });
    let head = "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n";
    let mut publishers = Vec::new();
    for _ in 0..10 {
        let publisher = h.accept(0);
        h.send(publisher, head.as_bytes());
        h.send(publisher, &vec![b' '; 60_000]);
        h.run();
        assert!(
            h.process
                .receiving
                .load(std::sync::atomic::Ordering::Relaxed)
                <= bound
        );
        publishers.push(publisher);
    }
    let dropped = publishers.iter().filter(|p| h.is_closed(**p)).count();
    assert!((5..=7).contains(&dropped), "{dropped} of 10 dropped");
    assert_eq!(
        h.process
            .stats
            .limit_hits(crate::obs::metrics::Limit::TotalReceive),
        dropped as u64
    );
}

#[test]
fn a_keep_alive_connection_between_requests_holds_no_buffer() {
    let mut h = Harness::workers(1);
    let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(60_000));
    let (publisher, response) = h.post(0, "/broadcast", &body);
    assert_eq!(response.status, 200);
    assert!(!h.is_closed(publisher));
    assert_eq!(
        h.process
            .receiving
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// Answers a client pipelines requests for and does not read are held
/// for it (up to 256 KiB each, then its requests wait): they count toward
/// the total queue bound, and past it the connection holding the most is
/// closed.
#[test]
fn unread_answers_count_toward_the_total_queue_bound() {
    let bound = 400 * 1024;
    let mut h = Harness::new(Config {
        max_total_queue_bytes: bound,
        ..config()
    });
    let requests = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
    let mut readers = Vec::new();
    for _ in 0..4 {
        let peer = h.accept(0);
        h.room(peer, 0);
        h.send(peer, requests.as_bytes());
        h.run();
        let memory = h.process.memory();
        assert!(memory.queued_bytes <= bound, "{memory:?}");
        readers.push(peer);
    }
    let closed = readers.iter().filter(|p| h.is_closed(**p)).count();
    assert!((2..=3).contains(&closed), "{closed} of 4 closed");
    assert_eq!(
        h.process
            .stats
            .limit_hits(crate::obs::metrics::Limit::TotalQueue),
        closed as u64
    );
}

/// Past the bound nothing more is read, within a turn too: connections
/// that all send their requests before the turn's end queue at most one
/// read's answers past it, and get them once the others are dropped.
#[test]
fn past_the_total_queue_bound_requests_wait_unread() {
    let bound = 400 * 1024;
    let mut h = Harness::new(Config {
        max_total_queue_bytes: bound,
        ..config()
    });
    let requests = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
    let mut peers = Vec::new();
    for _ in 0..10 {
        let peer = h.accept(0);
        h.room(peer, 0);
        h.send(peer, requests.as_bytes());
        peers.push(peer);
    }
    let queued = h.process.memory().queued_bytes;
    assert!(
        queued <= bound + MAX_HTTP_QUEUED + 16 * 1024,
        "{queued} bytes queued before the turn's end"
    );
    h.run();
    assert!(h.process.memory().queued_bytes <= bound);
    assert!(
        peers
            .iter()
            .all(|&p| h.is_closed(p) || h.socket(p).inbox.is_empty()),
        "the requests held back are read once the largest are dropped"
    );
}
