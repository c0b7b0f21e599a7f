//! A node on Redis, with the Redis side played by the test: what the node
//! asks of the sockets, the handshake, a broadcast numbered by Redis and
//! delivered when it comes back on the subscription, and Redis at fault:
//! stalled, lost, restarted empty.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::harness::{config, Harness, Peer};
use crate::config::Config;
use crate::node::redis::{LinkInput, LinkOutput, Side, STALLED_AFTER};
use crate::proto::resp::{self, Reply};

pub(super) fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// A channel message as Redis delivers it to a subscriber.
pub(super) fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"*3\r\n".to_vec();
    out.extend(bulk(b"message"));
    out.extend(bulk(channel.as_bytes()));
    out.extend(bulk(payload));
    out
}

/// A node whose two Redis connections are up, with `epoch` at offset 0.
fn connected(epoch: &str) -> Harness {
    connected_workers(epoch, 1)
}

/// A process of `workers` workers, each with both Redis connections up.
pub(super) fn connected_workers(epoch: &str, workers: usize) -> Harness {
    let mut h = Harness::new(Config {
        redis: Some("redis://127.0.0.1:6390".parse().unwrap()),
        workers,
        ..config()
    });
    h.run();
    for node in 0..workers {
        handshake(&mut h, node, epoch, 0);
    }
    assert_eq!(h.process.redis_state(), "connected");
    h
}

/// Worker `node` connects both sides, and Redis says the stream stands at
/// `offset` of `epoch`; what it wrote is cleared.
fn handshake(h: &mut Harness, node: usize, epoch: &str, offset: u64) {
    let addr: SocketAddr = "127.0.0.1:6390".parse().unwrap();
    let asked = std::mem::take(&mut h.redis_asked[node]);
    assert!(asked.contains(&LinkOutput::Lookup {
        side: Side::Subscriber,
        host: "127.0.0.1".into(),
        port: 6390
    }));
    for side in Side::BOTH {
        h.redis(
            node,
            LinkInput::Resolved {
                side,
                addrs: Ok(vec![addr]),
            },
        );
        assert!(h.redis_asked[node].contains(&LinkOutput::Connect { side, addr }));
        h.redis(node, LinkInput::Connected { side });
    }
    let written = String::from_utf8_lossy(&h.sockets[node].redis[0]).into_owned();
    assert!(written.contains("SUBSCRIBE"), "{written}");
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$8\r\nwsnotify\r\n:1\r\n";
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: subscribed,
        },
    );
    let mut position = b"*2\r\n".to_vec();
    position.extend(bulk(epoch.as_bytes()));
    position.extend_from_slice(format!(":{offset}\r\n").as_bytes());
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Publisher,
            bytes: &position,
        },
    );
    h.sockets[node].redis = [Vec::new(), Vec::new()];
}

/// What worker `node` wrote on its publishing connection since the last
/// call: each command's arguments.
pub(super) fn commands(h: &mut Harness, node: usize) -> Vec<Vec<Vec<u8>>> {
    let bytes = std::mem::take(&mut h.sockets[node].redis[1]);
    let mut at = 0;
    let mut commands = Vec::new();
    while let Some((reply, used)) = resp::parse(&bytes[at..]).unwrap() {
        at += used;
        let Reply::Array(Some(args)) = reply else {
            panic!("not a command: {reply:?}")
        };
        let args = args.into_iter().map(|a| match a {
            Reply::Bulk(Some(arg)) => arg,
            other => panic!("not an argument: {other:?}"),
        });
        commands.push(args.collect());
    }
    commands
}

/// What a command published, by its kind: the payload of a numbered
/// broadcast or hole (`EVAL`), or of a plain `PUBLISH`.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Numbered(String),
    Plain(String),
}

fn sent(h: &mut Harness, node: usize) -> Vec<Sent> {
    commands(h, node)
        .into_iter()
        .map(|args| {
            let last = String::from_utf8(args.last().unwrap().clone()).unwrap();
            match args[0].as_slice() {
                b"EVAL" => Sent::Numbered(last),
                b"PUBLISH" => Sent::Plain(last),
                other => panic!("{}", String::from_utf8_lossy(other)),
            }
        })
        .collect()
}

/// Redis numbers `payload` as `offset` of `epoch` and worker `node`'s
/// subscription brings it.
fn back(h: &mut Harness, node: usize, epoch: &str, offset: u64, payload: &str) {
    let numbered = format!("{epoch} {offset} {payload}");
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &message("wsnotify", numbered.as_bytes()),
        },
    );
}

/// Replies on worker `node`'s publishing connection.
pub(super) fn replies(h: &mut Harness, node: usize, n: usize) {
    h.redis(
        node,
        LinkInput::Received {
            side: Side::Publisher,
            bytes: ":1\r\n".repeat(n).as_bytes(),
        },
    );
}

fn broadcast(h: &mut Harness, node: usize, message: &str) {
    let body = format!(r#"{{"message":"{message}"}}"#);
    let (_, response) = h.post(node, "/broadcast", &body);
    assert_eq!(response.status, 200);
}

/// The messages a client received, as (type, message or epoch, offset).
fn got(h: &mut Harness, peer: Peer) -> Vec<(String, String, Option<u64>)> {
    h.json(peer)
        .into_iter()
        .map(|m| {
            let text = m.get("message").or(m.get("epoch")).unwrap_or(&Value::Null);
            (
                m["type"].as_str().unwrap().to_owned(),
                text.as_str().unwrap_or_default().to_owned(),
                m["offset"].as_u64(),
            )
        })
        .collect()
}

fn note(message: &str, offset: Option<u64>) -> (String, String, Option<u64>) {
    ("notification".into(), message.into(), offset)
}

fn resume(h: &mut Harness, since: u64, epoch: &str) -> Value {
    h.ws(0, &format!("/ws?since={since}&epoch={epoch}")).1
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
    let envelope = format!("wsnotify1 {}:0:1 *\n", h.process.instance);
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

/// Redis stops answering (SIGSTOP) with a broadcast waiting for its
/// numbering: it reaches the clients without an offset once the stall is
/// seen, not when Redis resumes; later ones go out at once; a hole follows
/// them; and when Redis resumes and numbers the first after all, it is not
/// delivered again, and no resume from before the stall is recovered.
#[test]
fn a_stall_delivers_what_waits_at_once_and_nothing_twice_when_redis_resumes() {
    let mut h = connected("e1");
    let a = h.client(0);
    let instance = h.process.instance.clone();
    broadcast(&mut h, 0, "before");
    let Sent::Numbered(before) = &sent(&mut h, 0)[0] else {
        panic!()
    };
    let before = before.clone();
    replies(&mut h, 0, 1);
    back(&mut h, 0, "e1", 1, &before);
    assert_eq!(got(&mut h, a), [note("before", Some(1))]);

    broadcast(&mut h, 0, "held");
    let Sent::Numbered(held) = &sent(&mut h, 0)[0] else {
        panic!()
    };
    let held = held.clone();
    assert!(got(&mut h, a).is_empty(), "waits for its number");
    // The wait counts from the next turn; the stall is seen after
    // STALLED_AFTER of it, on the node's own timer.
    h.advance(Duration::from_millis(1));
    h.advance(STALLED_AFTER - Duration::from_millis(1));
    assert!(got(&mut h, a).is_empty(), "not before the limit");
    h.advance(Duration::from_millis(1));
    assert_eq!(got(&mut h, a), [note("held", None)]);
    assert_eq!(
        sent(&mut h, 0),
        [Sent::Numbered(format!("hole {instance}"))]
    );

    broadcast(&mut h, 0, "during");
    assert_eq!(got(&mut h, a), [note("during", None)], "at once");
    let plain = sent(&mut h, 0);
    assert!(
        matches!(&plain[..], [Sent::Plain(p)] if p.contains("during")),
        "{plain:?}"
    );

    // Redis resumes: it numbers what it was sent, in order.
    replies(&mut h, 0, 3);
    back(&mut h, 0, "e1", 2, &held);
    back(&mut h, 0, "e1", 3, &format!("hole {instance}"));
    assert!(got(&mut h, a).is_empty(), "nothing twice, holes are silent");
    // The second hole, for "during", once the first was answered.
    assert_eq!(
        sent(&mut h, 0),
        [Sent::Numbered(format!("hole {instance}"))]
    );
    replies(&mut h, 0, 1);
    back(&mut h, 0, "e1", 4, &format!("hole {instance}"));

    broadcast(&mut h, 0, "after");
    let Sent::Numbered(after) = &sent(&mut h, 0)[0] else {
        panic!()
    };
    let after = after.clone();
    replies(&mut h, 0, 1);
    back(&mut h, 0, "e1", 5, &after);
    assert_eq!(got(&mut h, a), [note("after", Some(5))]);

    for since in [1, 2, 3] {
        let welcome = resume(&mut h, since, "e1");
        assert_eq!(welcome["reason"], "too_old", "since {since}: {welcome}");
    }
    let welcome = resume(&mut h, 4, "e1");
    assert_eq!(
        (&welcome["recovered"], &welcome["replayed"]),
        (&true.into(), &1.into())
    );
}

/// A worker with nothing else to do sees the stall on its own: what waits
/// reaches the clients about 250 ms after it was sent, with no other
/// traffic to wake the worker.
#[test]
fn an_idle_worker_releases_what_waits_on_its_own_timer() {
    let mut h = connected("e1");
    let a = h.client(0);
    broadcast(&mut h, 0, "held");
    h.advance(STALLED_AFTER);
    assert!(got(&mut h, a).is_empty(), "not before the limit");
    h.advance(Duration::from_millis(1));
    assert_eq!(got(&mut h, a), [note("held", None)]);
}

/// Broadcasts that wait for their numbering when a connection is lost are
/// delivered at once, without an offset, not lost with it.
#[test]
fn a_lost_connection_delivers_what_waited() {
    let mut h = connected("e1");
    let a = h.client(0);
    broadcast(&mut h, 0, "one");
    broadcast(&mut h, 0, "two");
    assert!(got(&mut h, a).is_empty());
    let why = "read failed: Connection reset by peer".to_owned();
    h.redis(
        0,
        LinkInput::Failed {
            side: Side::Publisher,
            why,
        },
    );
    assert_eq!(got(&mut h, a), [note("one", None), note("two", None)]);
}

/// Two workers: worker 1's broadcast came back numbered to worker 0 but
/// not yet to worker 1 when worker 1 saw the stall. Each worker's clients
/// get it once: numbered on worker 0, unnumbered on worker 1.
#[test]
fn a_release_skips_workers_that_had_it_numbered() {
    let mut h = connected_workers("e1", 2);
    let on0 = h.client(0);
    let on1 = h.client(1);
    h.text(on1, "hi");
    h.run();
    let Sent::Numbered(chat) = &sent(&mut h, 1)[0] else {
        panic!()
    };
    let chat = chat.clone();
    back(&mut h, 0, "e1", 1, &chat);
    let chats = |h: &mut Harness, peer| -> Vec<Option<u64>> {
        h.json(peer)
            .into_iter()
            .filter(|m| m["type"] == "chat")
            .map(|m| m["offset"].as_u64())
            .collect()
    };
    assert_eq!(chats(&mut h, on0), [Some(1)]);
    h.advance(Duration::from_millis(1));
    h.advance(STALLED_AFTER);
    assert_eq!(chats(&mut h, on1), [None]);
    assert!(chats(&mut h, on0).is_empty(), "worker 0 had it");
    replies(&mut h, 1, 1);
    back(&mut h, 1, "e1", 1, &chat);
    assert!(chats(&mut h, on1).is_empty(), "worker 1 had it");
}

/// Another instance's hole and its unnumbered broadcasts: no resume here
/// is recovered across them.
#[test]
fn holes_and_unnumbered_broadcasts_of_other_instances_stop_recovery() {
    let mut h = connected("e1");
    let a = h.client(0);
    let other = "wsnotify1 other:0:1 *\n{\"type\":\"notification\",\"message\":\"n\"}";
    back(&mut h, 0, "e1", 1, other);
    back(&mut h, 0, "e1", 2, "hole other");
    assert_eq!(got(&mut h, a), [note("n", Some(1))]);
    assert_eq!(resume(&mut h, 1, "e1")["reason"], "too_old");
    assert_eq!(resume(&mut h, 2, "e1")["recovered"], true);
    let unnumbered = "wsnotify1 other *\n{\"type\":\"notification\",\"message\":\"u\"}";
    h.redis(
        0,
        LinkInput::Received {
            side: Side::Subscriber,
            bytes: &message("wsnotify", unnumbered.as_bytes()),
        },
    );
    assert_eq!(got(&mut h, a), [note("u", None)]);
    assert_eq!(resume(&mut h, 2, "e1")["reason"], "too_old");
}

/// Redis restarted empty: the stream's numbering starts again under a new
/// epoch. Every connected client is told before the first message of it,
/// a client that joins in it is not told twice, and the old epoch resumes
/// nothing.
#[test]
fn a_new_epoch_is_told_to_every_client_before_its_first_message() {
    let mut h = connected("e1");
    let a = h.client(0);
    let one = "wsnotify1 other:0:1 *\n{\"type\":\"notification\",\"message\":\"one\"}";
    back(&mut h, 0, "e1", 1, one);
    assert_eq!(got(&mut h, a), [note("one", Some(1))]);

    // Flushed: the connections stay, the next script starts epoch e2.
    back(&mut h, 0, "e2", 1, one);
    assert_eq!(
        got(&mut h, a),
        [("epoch".into(), "e2".into(), Some(0)), note("one", Some(1))]
    );
    let (b, welcome) = h.ws(0, "/ws");
    assert_eq!(
        (&welcome["epoch"], &welcome["offset"]),
        (&"e2".into(), &1.into())
    );
    assert_eq!(resume(&mut h, 1, "e1")["reason"], "unknown_epoch");

    // Restarted: both connections lost, and the handshake finds e3.
    for side in Side::BOTH {
        let why = "closed".to_owned();
        h.redis(0, LinkInput::Failed { side, why });
    }
    h.advance(Duration::from_secs(6));
    handshake(&mut h, 0, "e3", 0);
    back(&mut h, 0, "e3", 1, one);
    for peer in [a, b] {
        assert_eq!(
            got(&mut h, peer),
            [("epoch".into(), "e3".into(), Some(0)), note("one", Some(1))]
        );
    }
}

/// A client that resumed ahead of its worker (from an offset the worker
/// has not handed out yet) skips what it has; once the numbering restarts,
/// its old offset means nothing and it gets the new epoch's messages.
#[test]
fn a_client_ahead_of_its_worker_gets_the_new_epoch_whole() {
    let mut h = connected("e1");
    let one = "wsnotify1 other:0:1 *\n{\"type\":\"notification\",\"message\":\"one\"}";
    back(&mut h, 0, "e1", 1, one);
    let (ahead, welcome) = h.ws(0, "/ws?since=10&epoch=e1");
    assert_eq!(
        (&welcome["recovered"], &welcome["offset"]),
        (&true.into(), &10.into())
    );
    back(&mut h, 0, "e1", 2, one);
    assert!(got(&mut h, ahead).is_empty(), "it had 2");
    back(&mut h, 0, "e2", 1, one);
    back(&mut h, 0, "e2", 2, one);
    assert_eq!(
        got(&mut h, ahead),
        [
            ("epoch".into(), "e2".into(), Some(0)),
            note("one", Some(1)),
            note("one", Some(2))
        ]
    );
}

/// A client still being replayed the old epoch when the numbering restarts
/// cannot get what it misses: it is closed with 4002 before it could be
/// told the new epoch (which would let it take the new numbering as if
/// nothing were missing), and resumes `unknown_epoch`.
#[test]
fn a_replay_cut_by_a_new_epoch_is_closed_before_the_epoch_is_told() {
    let mut h = connected("e1");
    let big = format!(
        "wsnotify1 other:0:1 *\n{{\"type\":\"notification\",\"message\":\"{}\"}}",
        "x".repeat(60_000)
    );
    for offset in 1..=10 {
        back(&mut h, 0, "e1", offset, &big);
    }
    let peer = h.accept(0);
    h.socket(peer).room = 64 * 1024;
    h.send(
        peer,
        super::harness::upgrade("/ws?since=0&epoch=e1").as_bytes(),
    );
    h.run();
    assert_eq!(h.response(peer).unwrap().status, 101);
    let one = "wsnotify1 other:0:1 *\n{\"type\":\"notification\",\"message\":\"one\"}";
    back(&mut h, 0, "e2", 1, one);
    h.room(peer, usize::MAX);
    h.run();
    let frames = h.frames(peer);
    assert_eq!(frames.last().and_then(|f| f.close_code()), Some(4002));
    let told = frames
        .iter()
        .filter(|f| f.opcode == 1)
        .any(|f| String::from_utf8_lossy(&f.payload).contains(r#""type":"epoch""#));
    assert!(!told, "not told the new epoch");
    assert_eq!(resume(&mut h, 1, "e1")["reason"], "unknown_epoch");
}
