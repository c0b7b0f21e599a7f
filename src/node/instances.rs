//! The node's steps for the fanout across instances: what it publishes on
//! the Redis channel, what comes back there (numbered messages for
//! everyone, envelopes for one client or everyone), and the link's own
//! needs (its timers, its writes, what it asks of the sockets).

use std::io;
use std::sync::Arc;

use super::peer::wire::Message;
use super::redis::{Event, LinkInput, Side};
use super::transmit::Transmit;
use super::{Node, Output};
use crate::app::envelope::{self, Recipient};
use crate::conn::Chunk;
use crate::ids::ClientId;
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

impl Node {
    pub(super) fn on_redis(&mut self, input: LinkInput<'_>) {
        if let Some(remote) = &mut self.remote {
            remote.link.handle(input, self.clock.at());
            self.after_redis();
        }
    }

    /// A reconnect or a connect timeout that is due.
    pub(super) fn redis_timers(&mut self) {
        let now = self.clock.at();
        if let Some(remote) = &mut self.remote {
            if remote.link.next_deadline().is_some_and(|at| now >= at) {
                remote.link.on_timer(now);
                self.after_redis();
            }
        }
    }

    /// Passes on what the link asks of the sockets, and carries out what it
    /// reports.
    fn after_redis(&mut self) {
        while let Some(remote) = &mut self.remote {
            if let Some(out) = remote.link.poll_output() {
                self.outputs.push_back(Output::Redis(out));
                continue;
            }
            let Some(event) = remote.link.poll_event() else {
                return;
            };
            match event {
                Event::Ready(up) => {
                    self.process.redis_link_changed(up);
                    if !up {
                        metrics::add(&self.process.stats.redis_reconnects, 1);
                    }
                }
                Event::Message(bytes) => self.on_channel_message(&bytes),
                Event::Position { epoch, offset } => self.process.stream().sync(&epoch, offset),
            }
        }
    }

    /// Writes what waits for Redis.
    pub(super) fn write_redis<T: Transmit>(&mut self, io: &mut T) {
        for side in Side::BOTH {
            let Some(remote) = &mut self.remote else {
                return;
            };
            loop {
                let bytes = remote.link.unsent(side);
                if bytes.is_empty() {
                    break;
                }
                match io.send_redis(side, bytes) {
                    // The socket takes nothing now; its writability wakes
                    // the loop for the rest.
                    Ok(0) => break,
                    Ok(n) => remote.link.written(side, n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let why = format!("write failed: {e}");
                        remote
                            .link
                            .handle(LinkInput::Failed { side, why }, self.clock.at());
                        break;
                    }
                }
            }
            self.after_redis();
        }
    }

    /// Publishes a server message for other instances (`to`: one client,
    /// or everyone), or, `numbered`, for every instance, this one included,
    /// through the sequencer script. While Redis is away the message is
    /// dropped and counted; returns whether it was queued.
    pub(super) fn publish_remote(
        &mut self,
        to: Option<&ClientId>,
        json: &str,
        numbered: bool,
    ) -> bool {
        let Some(remote) = &mut self.remote else {
            return to.is_some_and(|to| self.forward_to_peer(to, json));
        };
        let bytes = envelope::encode(&self.process.instance, to, json);
        let queued = remote.link.publish(&bytes, numbered, self.clock.at());
        let stats = &self.process.stats;
        metrics::add(
            if queued {
                &stats.redis_published
            } else {
                &stats.redis_dropped
            },
            1,
        );
        self.after_redis();
        queued
    }

    /// A message for a client of the other process of a hand-over (`locate`
    /// sends only those here). Returns whether it was queued: not when the
    /// link lags too far behind, which the next message for everyone finds
    /// and gives the link up for.
    fn forward_to_peer(&mut self, to: &ClientId, json: &str) -> bool {
        let message = Message::ToClient {
            id: to.to_string(),
            json: json.to_owned(),
        };
        let queued = self.process.peer().push(&message);
        if queued.is_ok() {
            metrics::add(&self.process.stats.handover_sent, 1);
        }
        if queued == Ok(true) {
            self.outputs.push_back(Output::WakeLink);
        }
        queued.is_ok()
    }

    /// A message from the channel: numbered by the sequencer (for every
    /// client, from any instance, this one included), or an envelope for
    /// one client.
    fn on_channel_message(&mut self, bytes: &[u8]) {
        let Some((epoch, offset, rest)) = super::redis::script::parse_message(bytes) else {
            return self.on_envelope(bytes);
        };
        match envelope::decode(rest) {
            Ok(message) if message.to.is_none() => {
                if message.origin != self.process.instance {
                    metrics::add(&self.process.stats.redis_received, 1);
                }
                let now = self.clock.at();
                let frame = self
                    .stream
                    .numbered(&self.process, epoch, offset, message.json, now);
                self.broadcast_local(&frame, Some(offset));
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
        metrics::add(&self.process.stats.redis_received, 1);
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
