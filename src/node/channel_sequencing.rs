//! How a message to a channel gets its number, for the whole process:
//! under the stream's lock, the channel's next offset, the frame kept in
//! the channel's history and mailed to every worker, so each worker sees a
//! channel's offsets in order. During a hand-over on one host the new
//! process numbers for both, as for everyone's stream (`StreamCursor`):
//! the old one sends it what it accepts for a channel and delivers it when
//! it comes back numbered; once the link is gone, the old one delivers
//! without an offset.

use std::sync::Arc;
use std::time::Instant;

use super::mailbox::Mail;
use super::peer::state::{Role, TooSlow};
use super::peer::wire::Message;
use super::process::Process;
use super::stream::StreamCursor;
use crate::app::history::History;
use crate::app::protocol;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

/// What became of a message sent to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The channel's subscribers in this process.
    pub recipients: usize,
    /// The link to the other process of a hand-over needs its shell woken.
    pub wake_link: bool,
}

/// Numbers `json` in `channel` (or sends it to the process that numbers)
/// and mails it to every worker; `wake` is called for each worker other
/// than `me` that must be woken to read it.
pub fn sequence(
    process: &Process,
    me: usize,
    channel: &str,
    json: &str,
    now: Instant,
    wake: impl FnMut(usize),
) -> Sent {
    let mut stream = process.stream();
    let recipients = stream.channel_subscribers(channel);
    let wake_link = sequence_locked(&mut stream, process, me, channel, json, now, wake);
    Sent {
        recipients,
        wake_link,
    }
}

fn sequence_locked(
    stream: &mut History,
    process: &Process,
    me: usize,
    channel: &str,
    json: &str,
    now: Instant,
    mut wake: impl FnMut(usize),
) -> bool {
    let mut peer = process.peer();
    match peer.role() {
        Role::Follower => {
            let message = Message::ChannelPublish {
                channel: channel.to_owned(),
                json: json.to_owned(),
            };
            match peer.push(&message) {
                Ok(wake_link) => {
                    metrics::add(&process.stats.handover_sent, 1);
                    return wake_link;
                }
                Err(TooSlow) => {
                    StreamCursor::unlink(stream, &mut peer, process, &[], 0, &mut wake);
                    unnumbered(process, me, channel, json, &mut wake);
                    return true;
                }
            }
        }
        Role::Orphan => {
            unnumbered(process, me, channel, json, &mut wake);
            return false;
        }
        Role::Alone | Role::Sequencer => {}
    }
    let (offset, frame) = stream.channel_sequence(
        channel,
        |offset| {
            let json = protocol::with_offset(json, offset);
            encode_frame(Opcode::Text, json.as_bytes()).into()
        },
        now,
    );
    post(process, me, channel, Some(offset), &frame, &mut wake);
    if peer.role() != Role::Sequencer {
        return false;
    }
    let message = Message::ChannelNumbered {
        channel: channel.to_owned(),
        offset,
        frame,
    };
    match peer.push(&message) {
        Ok(wake_link) => {
            metrics::add(&process.stats.handover_sent, 1);
            wake_link
        }
        Err(TooSlow) => {
            StreamCursor::unlink(stream, &mut peer, process, &[], 0, &mut wake);
            true
        }
    }
}

/// A message of `channel` the other process numbered: kept here and
/// mailed to every worker (once: an offset already kept is not again).
pub fn numbered(
    process: &Process,
    channel: &str,
    offset: u64,
    frame: &Arc<[u8]>,
    now: Instant,
    mut wake: impl FnMut(usize),
) {
    let mut stream = process.stream();
    if stream.channel_record(channel, offset, frame, now) {
        post(process, usize::MAX, channel, Some(offset), frame, &mut wake);
    }
}

/// A message of `channel` that cannot be numbered (the link to the
/// process that numbers is gone): to every worker without an offset.
pub fn unnumbered(
    process: &Process,
    me: usize,
    channel: &str,
    json: &str,
    wake: &mut impl FnMut(usize),
) {
    let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
    post(process, me, channel, None, &frame, wake);
}

fn post(
    process: &Process,
    me: usize,
    channel: &str,
    offset: Option<u64>,
    frame: &Arc<[u8]>,
    wake: &mut impl FnMut(usize),
) {
    let channel: Arc<str> = channel.into();
    for worker in 0..process.config.workers {
        let mail = Mail::Channel {
            channel: Arc::clone(&channel),
            offset,
            frame: Arc::clone(frame),
        };
        if process.post(worker, mail) && worker != me {
            wake(worker);
        }
    }
}
