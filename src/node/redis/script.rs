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

use crate::app::envelope::MAGIC;
use crate::proto::resp;

const START: &str = "local e = redis.call('HGET', KEYS[1], 'epoch') \
     if not e or not redis.call('HGET', KEYS[1], 'offset') then \
     e = ARGV[1] redis.call('HSET', KEYS[1], 'epoch', e, 'offset', 0) end ";

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
    fn the_scripts_name_the_hash_of_the_channel() {
        let cmd = String::from_utf8(publish("news", "e1", b"p")).unwrap();
        assert!(cmd.contains("news:stream") && cmd.contains("HINCRBY"));
        let cmd = String::from_utf8(position("news", "e1")).unwrap();
        assert!(cmd.contains("news:stream"));
    }
}
