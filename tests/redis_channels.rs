//! Channels across instances through a real Redis: each test starts its own
//! redis-server on a free loopback port (no persistence) and stops it.

mod support;

use support::redis::Redis;
use wsnotify::node::redis::script;
use wsnotify::proto::resp::{self, Reply};

/// Runs a command the server would send, as built by `script`.
fn run(redis: &Redis, command: &[u8]) -> Reply {
    let (Reply::Array(Some(items)), _) = resp::parse(command).unwrap().unwrap() else {
        panic!("not a command")
    };
    let args: Vec<Vec<u8>> = items
        .into_iter()
        .map(|i| match i {
            Reply::Bulk(Some(b)) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = redis.command(&args);
    resp::parse(&reply).unwrap().expect("a whole reply").0
}

fn position(redis: &Redis, name: &str) -> (String, u64) {
    let reply = run(redis, &script::channel_position("ws", "fresh", name));
    script::parse_position(&reply).expect("epoch and offset")
}

#[test]
fn each_channel_is_numbered_from_one_in_the_stream_s_epoch_and_again_after_a_flush() {
    let redis = Redis::start(None);
    let (epoch, everyone) = script::parse_position(&run(&redis, &script::position("ws", "e1")))
        .expect("the stream's position");
    assert_eq!((epoch.as_str(), everyone), ("e1", 0));
    assert_eq!(position(&redis, "a"), ("e1".into(), 0), "never used: 0");
    for (name, want) in [("a", 1), ("a", 2), ("b", 1), ("user:x y", 1), ("a", 3)] {
        let reply = run(
            &redis,
            &script::publish_channel("ws", "e2", name, b"wsnotify1 x *\n{}"),
        );
        assert_eq!(reply, Reply::Integer(want), "{name}");
    }
    assert_eq!(position(&redis, "a"), ("e1".into(), 3));
    assert_eq!(
        run(&redis, &script::channel_hole("ws", "e2", "b", "me")),
        Reply::Integer(2),
        "a hole takes an offset of its channel"
    );
    let (_, everyone) =
        script::parse_position(&run(&redis, &script::position("ws", "e3"))).unwrap();
    assert_eq!(everyone, 0, "channels leave the everyone counter alone");
    let fields = redis.command(&[b"HLEN", b"ws:stream"]);
    assert_eq!(
        fields, b":5\r\n",
        "epoch, offset and a counter per channel used"
    );

    redis.command(&[b"FLUSHALL"]);
    let reply = run(&redis, &script::publish_channel("ws", "e4", "a", b"m"));
    assert_eq!(reply, Reply::Integer(1), "a new epoch numbers from 1");
    assert_eq!(position(&redis, "a"), ("e4".into(), 1));
    assert_eq!(
        position(&redis, "b"),
        ("e4".into(), 0),
        "every counter afresh"
    );
}
