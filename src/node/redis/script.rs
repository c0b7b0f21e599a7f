//! Redis as the sequencer of the broadcast stream: one hash per channel
//! (`<channel>:stream`, fields `epoch` and `offset`) and two scripts that
//! Redis runs atomically. `PUBLISH_SCRIPT` numbers a message and publishes
//! it as `<epoch> <offset> <envelope>`, so every subscriber, the publishing
//! instance included, receives the stream in one order with one numbering.
//! `POSITION_SCRIPT` tells a connecting instance where the stream stands.
//! Either script starts a new epoch (the caller's candidate) at offset 0
//! when the hash or either field is missing: a flushed or restarted Redis
//! is a new history, so its offsets never go back within one epoch.
//!
//! A hole is published through the same numbering (`hole`): an offset that
//! carries no message, telling every instance that the publisher handed
//! its clients broadcasts that Redis never numbered, so no resume from
//! before it may be recovered.
//!
//! A wsnotify channel C is numbered in the same hash, field `ch:C` (one
//! epoch for everyone and every channel), and published on a Redis channel
//! of its own, `<channel>:ch:C`, which only the workers with a subscriber
//! of C subscribe to. The hash goes as a whole (a restart without
//! persistence, a flush, an eviction), so a new epoch finds every channel's
//! counter gone too and numbers each from 1 again.

use crate::app::envelope::MAGIC;
use crate::proto::resp;

const START: &str = "local e = redis.call('HGET', KEYS[1], 'epoch') \
     if not e or not redis.call('HGET', KEYS[1], 'offset') then \
     e = ARGV[1] redis.call('HSET', KEYS[1], 'epoch', e, 'offset', 0) end ";

/// Where a wsnotify channel's messages go, after the `--redis-channel`.
const CHANNEL_INFIX: &str = ":ch:";
/// The hash field of a wsnotify channel's counter, before its name.
const FIELD_PREFIX: &str = "ch:";

/// What a hole carries after its epoch and offset, then the origin.
const HOLE: &[u8] = b"hole ";

fn publish_script() -> String {
    format!(
        "{START}local n = redis.call('HINCRBY', KEYS[1], 'offset', 1) \
         redis.call('PUBLISH', ARGV[2], e .. ' ' .. n .. ' ' .. ARGV[3]) return n"
    )
}

fn position_script() -> String {
    format!("{START}return {{e, tonumber(redis.call('HGET', KEYS[1], 'offset'))}}")
}

/// `ARGV[4]`: the channel's field. The everyone counter is left alone.
fn publish_channel_script() -> String {
    format!(
        "{START}local n = redis.call('HINCRBY', KEYS[1], ARGV[4], 1) \
         redis.call('PUBLISH', ARGV[2], e .. ' ' .. n .. ' ' .. ARGV[3]) return n"
    )
}

/// A channel never published to stands at 0; asking creates no field.
fn channel_position_script() -> String {
    format!("{START}return {{e, tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')}}")
}

/// The Redis channel of wsnotify channel `name`.
pub fn channel_topic(channel: &str, name: &str) -> String {
    format!("{channel}{CHANNEL_INFIX}{name}")
}

/// The wsnotify channel a Redis channel carries, if it is one of ours.
pub fn channel_of<'a>(channel: &str, topic: &'a [u8]) -> Option<&'a str> {
    let rest = topic.strip_prefix(channel.as_bytes())?;
    let name = rest.strip_prefix(CHANNEL_INFIX.as_bytes())?;
    std::str::from_utf8(name).ok().filter(|n| !n.is_empty())
}

fn field(name: &str) -> String {
    format!("{FIELD_PREFIX}{name}")
}

/// The command that numbers `payload` in wsnotify channel `name` and
/// publishes it on that channel's Redis channel.
pub fn publish_channel(channel: &str, candidate: &str, name: &str, payload: &[u8]) -> Vec<u8> {
    resp::command(&[
        b"EVAL",
        publish_channel_script().as_bytes(),
        b"1",
        key(channel).as_bytes(),
        candidate.as_bytes(),
        channel_topic(channel, name).as_bytes(),
        payload,
        field(name).as_bytes(),
    ])
}

/// The command that takes the next offset of channel `name` for a hole
/// left by `origin`.
pub fn channel_hole(channel: &str, candidate: &str, name: &str, origin: &str) -> Vec<u8> {
    let mut payload = HOLE.to_vec();
    payload.extend_from_slice(origin.as_bytes());
    publish_channel(channel, candidate, name, &payload)
}

/// The command whose reply is the epoch and channel `name`'s last offset,
/// read as `parse_position` reads the stream's.
pub fn channel_position(channel: &str, candidate: &str, name: &str) -> Vec<u8> {
    resp::command(&[
        b"EVAL",
        channel_position_script().as_bytes(),
        b"1",
        key(channel).as_bytes(),
        candidate.as_bytes(),
        field(name).as_bytes(),
    ])
}

fn key(channel: &str) -> String {
    format!("{channel}:stream")
}

/// The command that numbers `payload` and publishes it on `channel`.
pub fn publish(channel: &str, candidate: &str, payload: &[u8]) -> Vec<u8> {
    resp::command(&[
        b"EVAL",
        publish_script().as_bytes(),
        b"1",
        key(channel).as_bytes(),
        candidate.as_bytes(),
        channel.as_bytes(),
        payload,
    ])
}

/// The command that takes the next offset for a hole left by `origin`.
pub fn hole(channel: &str, candidate: &str, origin: &str) -> Vec<u8> {
    let mut payload = HOLE.to_vec();
    payload.extend_from_slice(origin.as_bytes());
    publish(channel, candidate, &payload)
}

/// Whether what follows a numbered message's epoch and offset is a hole.
pub fn is_hole(rest: &[u8]) -> bool {
    rest.starts_with(HOLE)
}

/// The command whose reply is the stream's epoch and last offset.
pub fn position(channel: &str, candidate: &str) -> Vec<u8> {
    resp::command(&[
        b"EVAL",
        position_script().as_bytes(),
        b"1",
        key(channel).as_bytes(),
        candidate.as_bytes(),
    ])
}

/// The reply to `position`.
pub fn parse_position(reply: &resp::Reply) -> Option<(String, u64)> {
    use resp::Reply::{Array, Bulk, Integer};
    match reply {
        Array(Some(items)) => match items.as_slice() {
            [Bulk(Some(epoch)), Integer(offset)] => Some((
                String::from_utf8(epoch.clone()).ok()?,
                u64::try_from(*offset).ok()?,
            )),
            _ => None,
        },
        _ => None,
    }
}

/// A numbered message from the channel: epoch, offset and what follows,
/// an envelope or a hole. An unnumbered envelope is not one, even from an
/// instance whose name is all digits (`wsnotify1 61830572 *`).
pub fn parse_message(bytes: &[u8]) -> Option<(&str, u64, &[u8])> {
    let mut parts = bytes.splitn(3, |b| *b == b' ');
    let epoch = std::str::from_utf8(parts.next()?).ok()?;
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let rest = parts.next()?;
    let follows = rest.starts_with(MAGIC.as_bytes()) || is_hole(rest);
    (follows && !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((epoch, offset, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::resp::Reply;

    #[test]
    fn numbered_messages_and_envelopes_are_told_apart() {
        let (epoch, offset, rest) = parse_message(b"ab12 42 wsnotify1 x *\n{}").unwrap();
        assert_eq!(
            (epoch, offset, rest),
            ("ab12", 42, &b"wsnotify1 x *\n{}"[..])
        );
        assert_eq!(parse_message(b"wsnotify1 x *\n{}"), None);
        assert_eq!(parse_message(b"wsnotify1 61830572 *\n{}"), None);
        assert_eq!(parse_message(b"ab -1 x"), None);
        assert_eq!(parse_message(b" 1 x"), None);
    }

    #[test]
    fn a_hole_is_numbered_like_a_message_and_told_apart() {
        let cmd = hole("news", "e1", "abcd1234");
        assert!(String::from_utf8_lossy(&cmd).contains("HINCRBY"));
        let (_, offset, rest) = parse_message(b"e1 9 hole abcd1234").unwrap();
        assert!(offset == 9 && is_hole(rest));
        assert!(!is_hole(b"wsnotify1 abcd1234 *\n{}"));
    }

    #[test]
    fn position_reply() {
        let reply = Reply::Array(Some(vec![
            Reply::Bulk(Some(b"e1".to_vec())),
            Reply::Integer(7),
        ]));
        assert_eq!(parse_position(&reply), Some(("e1".into(), 7)));
        assert_eq!(parse_position(&Reply::Integer(7)), None);
    }

    #[test]
    fn a_channel_is_numbered_in_a_field_of_its_own_and_published_on_its_topic() {
        let cmd = String::from_utf8(publish_channel("ws", "e1", "room.1", b"p")).unwrap();
        assert!(cmd.contains("ws:stream") && cmd.contains("ws:ch:room.1"));
        assert!(cmd.contains("\r\nch:room.1\r\n") && cmd.contains("ARGV[4]"));
        assert!(!cmd.contains("'offset', 1"), "the everyone counter stays");
        let cmd = String::from_utf8(channel_hole("ws", "e1", "user:7", "me")).unwrap();
        assert!(cmd.contains("hole me") && cmd.contains("ws:ch:user:7"));
        let cmd = String::from_utf8(channel_position("ws", "e1", "a")).unwrap();
        assert!(cmd.contains("\r\nch:a\r\n") && !cmd.contains("HINCRBY"));
    }

    #[test]
    fn a_topic_names_its_channel_and_nothing_else_does() {
        assert_eq!(channel_topic("ws", "user:a b"), "ws:ch:user:a b");
        assert_eq!(channel_of("ws", b"ws:ch:user:a b"), Some("user:a b"));
        assert_eq!(channel_of("ws", b"ws:ch:"), None);
        assert_eq!(channel_of("ws", b"ws"), None);
        assert_eq!(channel_of("ws", b"wsx:ch:a"), None);
        assert_eq!(channel_of("ws", b"other:ch:a"), None);
    }

    #[test]
    fn the_scripts_name_the_hash_of_the_channel() {
        let cmd = String::from_utf8(publish("news", "e1", b"p")).unwrap();
        assert!(cmd.contains("news:stream") && cmd.contains("HINCRBY"));
        let cmd = String::from_utf8(position("news", "e1")).unwrap();
        assert!(cmd.contains("news:stream"));
    }
}
