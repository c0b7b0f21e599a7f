//! The two processes of a hand-over serve as one stream until the old one
//! exits. The new process numbers every message for everyone (it outlives
//! the old one, so nothing has to move again when the old one goes, and
//! its clients, soon all of them, get each message without a detour); the
//! old one sends what it accepts for everyone over the link and delivers it
//! when it comes back numbered, so both deliver one stream in one order.
//! Messages for one client travel to the process that issued its id.
//!
//! Sans-I/O: the roles and the queue of bytes for the peer live in the
//! `Process` (workers push under the stream's lock, so what the sequencer
//! numbers reaches the peer in offset order); the shell's `net::peer_io`
//! moves the bytes and hands what arrives to [`receive`].

pub mod state;
pub mod wire;

pub use state::{Peer, Role, Sequenced, TooSlow, MAX_UNSENT};

use std::sync::Arc;
use std::time::Instant;

use self::wire::{Decoder, Malformed, Message};
use super::channel_sequencing;
use super::mailbox::{Mail, Report};
use super::process::Process;
use super::stream::StreamCursor;
use crate::app::channel_history::{ChannelState, ChannelsState};
use crate::app::history::StreamState;
use crate::ids::ClientId;
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

/// The old process, handing over: from now on its messages for everyone are
/// numbered by the new one (`instance`). Returns the stream the new one
/// continues, taken under the same lock as the switch, so every message is
/// either in it or sent over the link, never both or neither.
pub fn follow(process: &Process, instance: &str, now: Instant) -> StreamState {
    let mut stream = process.stream();
    let mut peer = process.peer();
    peer.link(Role::Follower);
    process.met_peer(instance, true);
    stream.export(now)
}

/// The new process, handed over to: continues `state` and numbers for the
/// old process (`instance`) too.
pub fn lead(process: &Process, instance: &str, state: StreamState, now: Instant) {
    let mut stream = process.stream();
    let mut peer = process.peer();
    stream.adopt(state, now);
    peer.link(Role::Sequencer);
    process.met_peer(instance, true);
}

/// The stream's state as the old process sends it: every channel first
/// (only to a process that reads them, `with_channels`), then the head for
/// everyone, then each entry.
pub fn state_messages(state: &StreamState, with_channels: bool) -> Vec<Message> {
    let mut messages = Vec::with_capacity(state.entries.len() + 1);
    if with_channels {
        let channels = &state.channels;
        messages.push(Message::Channels {
            floor: channels.floor,
            channels: channels.channels.len() as u32,
        });
        for channel in &channels.channels {
            messages.push(Message::Channel {
                name: channel.name.to_string(),
                last: channel.last,
                entries: channel.entries.len() as u32,
                followed: channel.followed,
            });
            messages.extend(channel.entries.iter().map(|(age, frame)| Message::Entry {
                age: *age,
                frame: Arc::clone(frame),
            }));
        }
    }
    messages.push(Message::State {
        epoch: state.epoch.clone(),
        last: state.last,
        first_since: state.first_since,
        entries: state.entries.len() as u32,
    });
    for (age, frame) in &state.entries {
        messages.push(Message::Entry {
            age: *age,
            frame: Arc::clone(frame),
        });
    }
    messages
}

/// Reads the stream's state from the start of the link (the new process's
/// side), as its bytes arrive: the channels if they come (a process of the
/// release before them sends none), then everyone's.
#[derive(Debug, Default)]
pub struct StateReader {
    /// The channels once their head came, and how many it announced.
    channels: Option<(ChannelsState, u32)>,
    /// The channel being read, and how many entries it announced.
    channel: Option<(ChannelState, u32)>,
    /// The head once it came, and how many entries it announced.
    partial: Option<(StreamState, u32)>,
}

impl StateReader {
    /// The whole state once its last entry is in; `Ok(None)` before.
    pub fn read(&mut self, decoder: &mut Decoder) -> Result<Option<StreamState>, StateError> {
        loop {
            if let Some((state, expected)) = &self.partial {
                if state.entries.len() == *expected as usize {
                    let (mut state, _) = self.partial.take().expect("just seen");
                    if let Some((channels, _)) = self.channels.take() {
                        state.channels = channels;
                    }
                    return Ok(Some(state));
                }
            }
            if let Some((channel, expected)) = &self.channel {
                if channel.entries.len() == *expected as usize {
                    let (channel, _) = self.channel.take().expect("just seen");
                    let (channels, _) = self.channels.as_mut().expect("a channel in them");
                    channels.channels.push(channel);
                }
            }
            let Some(message) = decoder.next_message()? else {
                return Ok(None);
            };
            self.take(message)?;
        }
    }

    fn take(&mut self, message: Message) -> Result<(), StateError> {
        let channels_done = self
            .channels
            .as_ref()
            .map_or(true, |(c, expected)| c.channels.len() == *expected as usize);
        match message {
            Message::Channels { floor, channels }
                if self.channels.is_none() && self.partial.is_none() =>
            {
                let state = ChannelsState {
                    floor,
                    channels: Vec::with_capacity(channels.min(1 << 16) as usize),
                };
                self.channels = Some((state, channels));
            }
            Message::Channel {
                name,
                last,
                entries,
                followed,
            } if self.channel.is_none() && !channels_done => {
                let channel = ChannelState {
                    name: name.into(),
                    last,
                    followed,
                    entries: Vec::with_capacity(entries.min(1 << 16) as usize),
                };
                self.channel = Some((channel, entries));
            }
            Message::Entry { age, frame } if self.channel.is_some() => {
                let (channel, _) = self.channel.as_mut().expect("just seen");
                channel.entries.push((age, frame));
            }
            Message::Entry { age, frame } if self.partial.is_some() => {
                let (state, _) = self.partial.as_mut().expect("just seen");
                state.entries.push((age, frame));
            }
            Message::State {
                epoch,
                last,
                first_since,
                entries,
            } if self.partial.is_none() && self.channel.is_none() && channels_done => {
                let state = StreamState {
                    epoch,
                    last,
                    first_since,
                    entries: Vec::with_capacity(entries.min(1 << 16) as usize),
                    channels: ChannelsState::default(),
                };
                self.partial = Some((state, entries));
            }
            other => return Err(StateError::Unexpected(kind_of(&other))),
        }
        Ok(())
    }
}

fn kind_of(message: &Message) -> String {
    let name = match message {
        Message::State { .. } => "a state out of place",
        Message::Entry { .. } => "an entry before the state",
        Message::Channels { .. } => "the channels out of place",
        Message::Channel { .. } => "a channel out of place",
        Message::Publish(_) => "a publish",
        Message::Numbered { .. } => "a numbered message",
        Message::ToClient { .. } => "a message for a client",
        Message::ChannelPublish { .. } => "a publish to a channel",
        Message::ChannelNumbered { .. } => "a numbered message of a channel",
    };
    name.to_owned()
}

#[derive(Debug)]
pub enum StateError {
    Malformed(Malformed),
    Unexpected(String),
}

impl From<Malformed> for StateError {
    fn from(m: Malformed) -> StateError {
        StateError::Malformed(m)
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Malformed(m) => m.fmt(f),
            StateError::Unexpected(what) => write!(f, "expected the stream's state, got {what}"),
        }
    }
}

/// A message from the peer. `wake` is called for each worker that must
/// look at its mail; returns whether the shell must send to the peer.
pub fn receive(
    process: &Process,
    message: Message,
    now: Instant,
    mut wake: impl FnMut(usize),
) -> bool {
    metrics::add(&process.stats.handover_received, 1);
    match message {
        Message::Publish(json) => {
            // Numbered for everyone here and, through the queue, there.
            StreamCursor::sequence(process, usize::MAX, &json, now, &mut wake).1
        }
        Message::Numbered { offset, frame } => {
            let mut stream = process.stream();
            let epoch = stream.epoch().to_owned();
            let at = stream.record(&epoch, offset, &frame, now);
            for worker in 0..process.config.workers {
                let mail = Mail::Stream {
                    frame: Arc::clone(&frame),
                    at,
                };
                if process.post(worker, mail) {
                    wake(worker);
                }
            }
            false
        }
        Message::ChannelPublish { channel, json } => {
            // Numbered here and, through the queue, there.
            channel_sequencing::sequence(process, usize::MAX, &channel, &json, now, &mut wake)
                .wake_link
        }
        Message::ChannelNumbered {
            channel,
            offset,
            frame,
        } => {
            channel_sequencing::numbered(process, &channel, offset, &frame, now, &mut wake);
            false
        }
        Message::ToClient { id, json } => {
            let mine = id
                .parse::<ClientId>()
                .ok()
                .filter(|id| id.instance == process.instance && id.worker < process.config.workers);
            if let Some(id) = mine {
                let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
                let mail = Mail::Deliver {
                    seq: id.seq,
                    frame,
                    report: Report::Nothing,
                };
                if process.post(id.worker, mail) {
                    wake(id.worker);
                }
            }
            false
        }
        Message::State { .. }
        | Message::Entry { .. }
        | Message::Channels { .. }
        | Message::Channel { .. } => {
            log!(
                Warn,
                "ignoring a stream state from the other process after the hand-over"
            );
            false
        }
    }
}

/// The link is gone (the shell logs why). `pending`: the bytes the shell had taken for the
/// peer (whole messages), of which the first `written` went out. What the
/// old process accepted for everyone and the new one never got whole is
/// delivered here without an offset: a message accepted is never dropped.
pub fn lost(process: &Process, pending: &[u8], written: usize, mut wake: impl FnMut(usize)) {
    let mut stream = process.stream();
    let mut peer = process.peer();
    StreamCursor::unlink(&mut stream, &mut peer, process, pending, written, &mut wake);
}

#[cfg(test)]
mod tests;
