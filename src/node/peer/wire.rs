//! The messages on the link between the two processes of a hand-over, and
//! their bytes: a length, a kind, a payload. Binary because frames travel
//! as they are (encoded once, by the process that numbered them).
//!
//! ```text
//! message  = length:u32 kind:u8 payload      (length counts kind + payload)
//! State    = 1  last:u64 first_since:u64 entries:u32 epoch   (then `entries` Entry)
//! Entry    = 2  age_ms:u64 frame
//! Publish  = 3  json                         (follower → sequencer)
//! Numbered = 4  offset:u64 frame             (sequencer → follower)
//! ToClient = 5  id_len:u16 id json           (either way)
//! Channels = 6  floor:u64 channels:u32       (then `channels` Channel)
//! Channel  = 7  last:u64 entries:u32 followed:u8 name   (then `entries` Entry)
//! ```
//!
//! Integers are big-endian. The channels of the stream come first, before
//! `State`, and only to a process that reads them (hand-over version 3):
//! a reader of the release before them knows no kind past 5.

use std::sync::Arc;
use std::time::Duration;

/// The largest message either side accepts: a frame of the largest
/// notification with room to spare. A longer one means a broken peer.
pub const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The head of the exported stream; `entries` Entry messages follow.
    State {
        epoch: String,
        last: u64,
        first_since: u64,
        entries: u32,
    },
    Entry {
        age: Duration,
        frame: Arc<[u8]>,
    },
    /// A message for everyone, accepted by the follower, to be numbered.
    Publish(String),
    /// A message for everyone as the sequencer numbered and framed it.
    Numbered {
        offset: u64,
        frame: Arc<[u8]>,
    },
    /// A server message for one client of the receiving process.
    ToClient {
        id: String,
        json: String,
    },
    /// The head of the exported channels: the floor, and how many
    /// `Channel` messages follow.
    Channels {
        floor: u64,
        channels: u32,
    },
    /// One exported channel; `entries` Entry messages follow.
    Channel {
        name: String,
        last: u64,
        entries: u32,
        followed: bool,
    },
    /// A message for a channel, accepted by the follower, to be numbered.
    ChannelPublish {
        channel: String,
        json: String,
    },
    /// A message for a channel as the sequencer numbered and framed it.
    ChannelNumbered {
        channel: String,
        offset: u64,
        frame: Arc<[u8]>,
    },
}

const STATE: u8 = 1;
const ENTRY: u8 = 2;
const PUBLISH: u8 = 3;
const NUMBERED: u8 = 4;
const TO_CLIENT: u8 = 5;
const CHANNELS: u8 = 6;
const CHANNEL: u8 = 7;
const CHANNEL_PUBLISH: u8 = 8;
const CHANNEL_NUMBERED: u8 = 9;

impl Message {
    /// Appends the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Message::State {
                epoch,
                last,
                first_since,
                entries,
            } => {
                out.push(STATE);
                out.extend_from_slice(&last.to_be_bytes());
                out.extend_from_slice(&first_since.to_be_bytes());
                out.extend_from_slice(&entries.to_be_bytes());
                out.extend_from_slice(epoch.as_bytes());
            }
            Message::Entry { age, frame } => {
                out.push(ENTRY);
                out.extend_from_slice(&(age.as_millis() as u64).to_be_bytes());
                out.extend_from_slice(frame);
            }
            Message::Publish(json) => {
                out.push(PUBLISH);
                out.extend_from_slice(json.as_bytes());
            }
            Message::Numbered { offset, frame } => {
                out.push(NUMBERED);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(frame);
            }
            Message::ToClient { id, json } => {
                out.push(TO_CLIENT);
                put_named(out, id);
                out.extend_from_slice(json.as_bytes());
            }
            Message::Channels { floor, channels } => {
                out.push(CHANNELS);
                out.extend_from_slice(&floor.to_be_bytes());
                out.extend_from_slice(&channels.to_be_bytes());
            }
            Message::Channel {
                name,
                last,
                entries,
                followed,
            } => {
                out.push(CHANNEL);
                out.extend_from_slice(&last.to_be_bytes());
                out.extend_from_slice(&entries.to_be_bytes());
                out.push(u8::from(*followed));
                out.extend_from_slice(name.as_bytes());
            }
            Message::ChannelPublish { channel, json } => {
                out.push(CHANNEL_PUBLISH);
                put_named(out, channel);
                out.extend_from_slice(json.as_bytes());
            }
            Message::ChannelNumbered {
                channel,
                offset,
                frame,
            } => {
                out.push(CHANNEL_NUMBERED);
                out.extend_from_slice(&offset.to_be_bytes());
                put_named(out, channel);
                out.extend_from_slice(frame);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Why the bytes from the peer cannot be read: the link is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooLong,
    UnknownKind(u8),
    Truncated,
    NotUtf8,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooLong => write!(f, "a message longer than {MAX_MESSAGE} bytes"),
            Malformed::UnknownKind(kind) => write!(f, "unknown message kind {kind}"),
            Malformed::Truncated => write!(f, "a message shorter than its kind needs"),
            Malformed::NotUtf8 => write!(f, "text that is not UTF-8"),
        }
    }
}

/// Reassembles messages from bytes as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next unread message starts in `buf`.
    at: usize,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, Malformed> {
        let rest = &self.buf[self.at..];
        let Some(head) = rest.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(head.try_into().expect("four bytes")) as usize;
        if len > MAX_MESSAGE {
            return Err(Malformed::TooLong);
        }
        let Some(body) = rest.get(4..4 + len) else {
            return Ok(None);
        };
        let message = decode(body)?;
        self.at += 4 + len;
        if self.at > self.buf.len() / 2 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        Ok(Some(message))
    }

    /// Bytes received that do not make a whole message yet.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.at
    }
}

fn decode(body: &[u8]) -> Result<Message, Malformed> {
    let (&kind, rest) = body.split_first().ok_or(Malformed::Truncated)?;
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Malformed::NotUtf8)
    };
    let u64_at = |at: usize| -> Result<u64, Malformed> {
        rest.get(at..at + 8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("eight bytes")))
            .ok_or(Malformed::Truncated)
    };
    let u32_at = |at: usize| -> Result<u32, Malformed> {
        rest.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")))
            .ok_or(Malformed::Truncated)
    };
    Ok(match kind {
        STATE => {
            let entries = rest.get(16..20).ok_or(Malformed::Truncated)?;
            Message::State {
                last: u64_at(0)?,
                first_since: u64_at(8)?,
                entries: u32::from_be_bytes(entries.try_into().expect("four bytes")),
                epoch: text(&rest[20..])?,
            }
        }
        ENTRY => Message::Entry {
            age: Duration::from_millis(u64_at(0)?),
            frame: rest[8..].into(),
        },
        PUBLISH => Message::Publish(text(rest)?),
        NUMBERED => Message::Numbered {
            offset: u64_at(0)?,
            frame: rest[8..].into(),
        },
        TO_CLIENT => {
            let (id, json) = named(rest)?;
            Message::ToClient {
                id: text(id)?,
                json: text(json)?,
            }
        }
        CHANNELS => Message::Channels {
            floor: u64_at(0)?,
            channels: u32_at(8)?,
        },
        CHANNEL => Message::Channel {
            last: u64_at(0)?,
            entries: u32_at(8)?,
            followed: *rest.get(12).ok_or(Malformed::Truncated)? != 0,
            name: text(&rest[13..])?,
        },
        CHANNEL_PUBLISH => {
            let (channel, json) = named(rest)?;
            Message::ChannelPublish {
                channel: text(channel)?,
                json: text(json)?,
            }
        }
        CHANNEL_NUMBERED => {
            let (channel, frame) = named(rest.get(8..).ok_or(Malformed::Truncated)?)?;
            Message::ChannelNumbered {
                offset: u64_at(0)?,
                channel: text(channel)?,
                frame: frame.into(),
            }
        }
        other => return Err(Malformed::UnknownKind(other)),
    })
}

/// Writes a name (a channel's, a client's id; far below 64 KiB) after its
/// 16-bit length, as `named` reads it.
fn put_named(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// A name (a channel's, a client's id) after its 16-bit length, and the
/// bytes after it.
fn named(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let len = bytes.get(..2).ok_or(Malformed::Truncated)?;
    let len = u16::from_be_bytes(len.try_into().expect("two bytes")) as usize;
    let name = bytes.get(2..2 + len).ok_or(Malformed::Truncated)?;
    Ok((name, &bytes[2 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Message> {
        vec![
            Message::State {
                epoch: "00ff".into(),
                last: 41,
                first_since: 7,
                entries: 2,
            },
            Message::Entry {
                age: Duration::from_millis(1500),
                frame: Arc::from(&b"\x81\x02hi"[..]),
            },
            Message::Publish(r#"{"type":"chat","message":"é"}"#.into()),
            Message::Numbered {
                offset: 42,
                frame: Arc::from(&b"\x81\x00"[..]),
            },
            Message::ToClient {
                id: "abcd0123-0-7".into(),
                json: r#"{"type":"direct"}"#.into(),
            },
            Message::Channels {
                floor: 9,
                channels: 1,
            },
            Message::Channel {
                name: "user:ü".into(),
                last: 12,
                entries: 3,
                followed: true,
            },
            Message::ChannelPublish {
                channel: "user:ü".into(),
                json: r#"{"type":"chat"}"#.into(),
            },
            Message::ChannelNumbered {
                channel: "news".into(),
                offset: 7,
                frame: Arc::from(&b"\x81\x01x"[..]),
            },
        ]
    }

    #[test]
    fn every_kind_survives_the_trip_whatever_the_cut() {
        let messages = every_kind();
        let mut bytes = Vec::new();
        for m in &messages {
            m.encode(&mut bytes);
        }
        for chunk in [1, 3, 7, bytes.len()] {
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                while let Some(m) = decoder.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, messages, "cut every {chunk} bytes");
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn a_broken_peer_is_told_apart_from_a_slow_one() {
        let mut decoder = Decoder::default();
        decoder.push(&(MAX_MESSAGE as u32 + 1).to_be_bytes());
        assert_eq!(decoder.next_message(), Err(Malformed::TooLong));

        let mut decoder = Decoder::default();
        decoder.push(&[0, 0, 0, 1, 99]);
        assert_eq!(decoder.next_message(), Err(Malformed::UnknownKind(99)));

        let mut decoder = Decoder::default();
        decoder.push(&[0, 0, 0, 3, NUMBERED, 0, 0]);
        assert_eq!(decoder.next_message(), Err(Malformed::Truncated));

        let mut decoder = Decoder::default();
        decoder.push(&[0, 0, 0, 2, PUBLISH, 0xff]);
        assert_eq!(decoder.next_message(), Err(Malformed::NotUtf8));

        let mut decoder = Decoder::default();
        decoder.push(&[0, 0, 0, 9, CHANNEL, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(decoder.next_message(), Err(Malformed::Truncated));

        let mut decoder = Decoder::default();
        decoder.push(&[0, 0, 0, 9, PUBLISH]);
        assert_eq!(decoder.next_message(), Ok(None), "the rest is on its way");
    }
}
