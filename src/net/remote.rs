//! This worker's side of the fanout across instances: messages to and from
//! the Redis channel.

use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::redis::Event;
use super::redis_stream;
use super::worker::Worker;
use crate::app::envelope::{self, Recipient};
use crate::conn::Chunk;
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

impl Worker {
    /// Readiness on a Redis socket, or a reconnect that is due.
    pub(super) fn on_redis(&mut self, token: Option<Token>, now: Instant) {
        let Some(link) = self.redis.as_mut() else {
            return;
        };
        let mut events = std::mem::take(&mut self.redis_events);
        match token {
            Some(token) => link.on_ready(token, now, self.poll.registry(), &mut events),
            None => link.on_timer(now, self.poll.registry(), &mut events),
        }
        self.on_redis_events(&mut events);
        self.redis_events = events;
    }

    /// Whether Redis numbers broadcasts now (see `RedisLink::sequencing`).
    pub(super) fn redis_sequencing(&mut self) -> bool {
        let Some(link) = self.redis.as_mut() else {
            return false;
        };
        let mut events = std::mem::take(&mut self.redis_events);
        let sequencing = link.sequencing(Instant::now(), self.poll.registry(), &mut events);
        self.on_redis_events(&mut events);
        self.redis_events = events;
        sequencing
    }

    fn on_redis_events(&mut self, events: &mut Vec<Event>) {
        for event in events.drain(..) {
            match event {
                Event::Ready(up) => {
                    self.shared.redis_link_changed(up);
                    if !up {
                        metrics::add(&self.shared.stats.redis_reconnects, 1);
                    }
                }
                Event::Message(bytes) => self.on_channel_message(&bytes),
                Event::Position { epoch, offset } => self.shared.stream().sync(&epoch, offset),
            }
        }
    }

    /// Publishes a server message for other instances (`to`: one client,
    /// or everyone), or, `numbered`, for every instance, this one included,
    /// through the sequencer script. While Redis is away the message is
    /// dropped and counted; returns whether it was queued.
    pub(super) fn publish_remote(&mut self, to: Option<&str>, json: &str, numbered: bool) -> bool {
        let Some(link) = self.redis.as_mut() else {
            return false;
        };
        let bytes = envelope::encode(&self.shared.instance, to, json);
        let mut events = std::mem::take(&mut self.redis_events);
        let queued = link.publish(
            &bytes,
            numbered,
            &mut events,
            Instant::now(),
            self.poll.registry(),
        );
        let counter = if queued {
            &self.shared.stats.redis_published
        } else {
            &self.shared.stats.redis_dropped
        };
        metrics::add(counter, 1);
        self.on_redis_events(&mut events);
        self.redis_events = events;
        queued
    }

    /// A message from the channel: numbered by the sequencer (for every
    /// client, from any instance, this one included), or an envelope for
    /// one client.
    fn on_channel_message(&mut self, bytes: &[u8]) {
        let Some((epoch, offset, rest)) = redis_stream::parse_message(bytes) else {
            return self.on_envelope(bytes);
        };
        match envelope::decode(rest) {
            Ok(message) if message.to.is_none() => {
                if message.origin != self.shared.instance {
                    metrics::add(&self.shared.stats.redis_received, 1);
                }
                self.deliver_numbered(epoch, offset, message.json);
            }
            _ => log!(
                Warn,
                "ignoring a malformed numbered message on the Redis channel",
                bytes = bytes.len()
            ),
        }
    }

    /// A message from the channel: every worker of every other instance
    /// gets it, and delivers it to its own clients only.
    fn on_envelope(&mut self, bytes: &[u8]) {
        let message = match envelope::decode(bytes) {
            Ok(message) => message,
            Err(why) => {
                log!(
                    Warn,
                    "ignoring a foreign or malformed message on the Redis channel",
                    reason = why,
                    bytes = bytes.len()
                );
                return;
            }
        };
        let recipient = envelope::recipient(&message, &self.here());
        if recipient == Recipient::OwnEcho {
            return;
        }
        metrics::add(&self.shared.stats.redis_received, 1);
        let frame = || -> Arc<[u8]> { encode_frame(Opcode::Text, message.json.as_bytes()).into() };
        match recipient {
            Recipient::Everyone => {
                self.broadcast_local(&frame(), None);
            }
            Recipient::Client(key) => self.send_frame(key, Chunk::Shared(frame())),
            Recipient::OwnEcho | Recipient::Nobody => {}
        }
    }
}
