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

use super::compressor::Compressor;
use super::mailbox::Mail;
use super::peer::state::{Role, TooSlow};
use super::peer::wire::Message;
use super::process::Process;
use super::stream::StreamCursor;
use crate::app::history::History;
use crate::app::protocol;
use crate::obs::metrics::{self, Limit};
use crate::proto::shared_frame::SharedFrame;

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
    (channel, json): (&str, &str),
    now: Instant,
    compressor: Option<&mut Compressor>,
    wake: impl FnMut(usize),
) -> Sent {
    let mut stream = process.stream();
    if !stream.channel_make_room(channel) {
        // Every channel held has a subscriber and this one has none: it
        // reaches nobody, and is not kept.
        process.stats.limit_hit(Limit::MaxChannels);
        return Sent {
            recipients: 0,
            wake_link: false,
        };
    }
    let recipients = stream.channel_subscribers(channel);
    let message = (channel, json);
    let wake_link = sequence_locked(&mut stream, process, me, message, now, compressor, wake);
    Sent {
        recipients,
        wake_link,
    }
}

fn sequence_locked(
    stream: &mut History,
    process: &Process,
    me: usize,
    (channel, json): (&str, &str),
    now: Instant,
    compressor: Option<&mut Compressor>,
    mut wake: impl FnMut(usize),
) -> bool {
    let mut peer = process.peer();
    match peer.role() {
        // A new server of the release before channels knows none: this
        // process numbers its channels alone.
        Role::Follower if !peer.carries_channels() => {}
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
            // Compressed here, once for the whole process.
            Compressor::frame_with(compressor, process, &json)
        },
        now,
    );
    post(process, me, channel, Some(offset), &frame, &mut wake);
    if peer.role() != Role::Sequencer || !peer.carries_channels() {
        return false;
    }
    let message = Message::ChannelNumbered {
        channel: channel.to_owned(),
        offset,
        frame: Arc::clone(frame.plain()),
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
    frame: &SharedFrame,
    now: Instant,
    mut wake: impl FnMut(usize),
) {
    let mut stream = process.stream();
    // No room under --max-channels: no subscriber here, nothing to keep.
    if stream.channel_make_room(channel) && stream.channel_record(channel, offset, frame, now) {
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
    let frame = SharedFrame::text(json, None);
    post(process, me, channel, None, &frame, wake);
}

fn post(
    process: &Process,
    me: usize,
    channel: &str,
    offset: Option<u64>,
    frame: &SharedFrame,
    wake: &mut impl FnMut(usize),
) {
    let channel: Arc<str> = channel.into();
    for worker in 0..process.config.workers {
        let mail = Mail::Channel {
            channel: Arc::clone(&channel),
            offset,
            frame: frame.clone(),
        };
        if process.post(worker, mail) && worker != me {
            wake(worker);
        }
    }
}
