//! A node on Redis, with the Redis side played by the test: what the node
//! asks of the sockets, the handshake, and a broadcast numbered by Redis
//! and delivered when it comes back on the subscription.

use std::net::SocketAddr;

use super::harness::{config, Harness};
use crate::config::Config;
use crate::node::redis::{LinkInput, LinkOutput, Side};

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// A channel message as Redis delivers it to a subscriber.
fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"*3\r\n".to_vec();
    out.extend(bulk(b"message"));
    out.extend(bulk(channel.as_bytes()));
    out.extend(bulk(payload));
    out
}

/// A node whose two Redis connections are up, with `epoch` at offset 0.
fn connected(epoch: &str) -> Harness {
    let mut h = Harness::new(Config {
        redis: Some("redis://127.0.0.1:6390".parse().unwrap()),
        ..config()
    });
    h.run();
    let addr: SocketAddr = "127.0.0.1:6390".parse().unwrap();
    let asked = std::mem::take(&mut h.redis_asked[0]);
    assert!(asked.contains(&LinkOutput::Lookup {
        side: Side::Subscriber,
        host: "127.0.0.1".into(),
        port: 6390
    }));
    for side in Side::BOTH {
        h.redis(
            0,
            LinkInput::Resolved {
                side,
                addrs: Ok(vec![addr]),
            },
        );
        assert!(h.redis_asked[0].contains(&LinkOutput::Connect { side, addr }));
        h.redis(0, LinkInput::Connected { side });
    }
    let written = String::from_utf8_lossy(&h.sockets[0].redis[0]).into_owned();
    assert!(written.contains("SUBSCRIBE"), "{written}");
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$8\r\nwsnotify\r\n:1\r\n";
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: subscribed,
        },
    );
    let mut position = b"*2\r\n".to_vec();
    position.extend(bulk(epoch.as_bytes()));
    position.extend_from_slice(b":0\r\n");
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Publisher,
            bytes: &position,
        },
    );
    assert_eq!(h.process.redis_state(), "connected");
    h.sockets[0].redis = [Vec::new(), Vec::new()];
    h
}

#[test]
fn a_chat_is_numbered_by_redis_and_delivered_when_it_comes_back() {
    let mut h = connected("e1");
    let (a, welcome) = h.ws(0, "/ws");
    assert_eq!(welcome["epoch"], "e1", "the epoch Redis keeps");
    h.text(a, "hello");
    h.run();
    assert!(h.json(a).is_empty(), "nothing until Redis numbers it");
    let published = h.sockets[0].redis[1].clone();
    assert!(published.windows(4).any(|w| w == b"EVAL"));
    let envelope = format!("wsnotify1 {} *\n", h.process.instance);
    let at = published
        .windows(envelope.len())
        .position(|w| w == envelope.as_bytes())
        .expect("the envelope in the command");
    let json_end = published[at..].iter().position(|b| *b == b'\r').unwrap();
    let mut payload = b"e1 1 ".to_vec();
    payload.extend_from_slice(&published[at..at + json_end]);
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Publisher,
            bytes: b":1\r\n",
        },
    );
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &message("wsnotify", &payload),
        },
    );
    let got = h.json(a);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0]["message"].clone(), got[0]["offset"].clone()),
        ("hello".into(), 1.into())
    );
}

#[test]
fn while_redis_is_down_a_chat_goes_out_at_once_without_an_offset() {
    let mut h = Harness::new(Config {
        redis: Some("redis://127.0.0.1:6390".parse().unwrap()),
        ..config()
    });
    let a = h.client(0);
    h.text(a, "hello");
    h.run();
    let got = h.json(a);
    assert_eq!(got[0]["message"], "hello");
    assert!(got[0].get("offset").is_none());
    assert_eq!(
        crate::obs::metrics::get(&h.process.stats.redis_dropped),
        1,
        "nothing to publish it on"
    );
}

#[test]
fn an_envelope_from_another_instance_reaches_its_client() {
    let mut h = connected("e1");
    let (a, welcome) = h.ws(0, "/ws");
    let id = welcome["client_id"].as_str().unwrap();
    let payload = format!("wsnotify1 other {id}\n{{\"type\":\"direct\",\"message\":\"hi\"}}");
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &message("wsnotify", payload.as_bytes()),
        },
    );
    assert_eq!(h.json(a)[0]["message"], "hi");
}
