//! The node's steps for the fanout across instances: what it publishes on
//! the Redis channel, what comes back there (numbered messages for
//! everyone, holes, envelopes for one client or everyone), what becomes of
//! broadcasts Redis does not number in time, and the link's own needs (its
//! timers, its writes, what it asks of the sockets).

use std::io;
use std::sync::Arc;

use super::mailbox::Mail;
use super::peer::wire::Message;
use super::redis::{script, Event, LinkInput, Released, Side};
use super::transmit::Transmit;
use super::{Node, Output};
use crate::app::envelope::{self, Recipient, Tag};
use crate::app::history::Position;
use crate::app::protocol;
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

    /// A reconnect or a connect timeout that is due, broadcasts that have
    /// waited too long for Redis to number them, or `subscribe` answers
    /// that waited too long for Redis to confirm their channel.
    pub(super) fn redis_timers(&mut self) {
        let now = self.clock.at();
        if let Some(remote) = &mut self.remote {
            if remote.link.next_deadline().is_some_and(|at| now >= at) {
                remote.link.on_timer(now);
                self.after_redis();
            }
        }
        if self
            .remote
            .as_ref()
            .is_some_and(|remote| remote.link.stalled(now))
        {
            self.release_waiting();
        }
        self.answer_overdue();
    }

    /// Delivers this worker's broadcasts that wait for Redis's numbering
    /// to every client of the process now, without an offset, oldest first
    /// (Redis stalled, or a connection was lost): none is held for the
    /// length of a stall or lost with a connection. Should Redis number
    /// them after all, their numbered copies are not delivered again
    /// (`on_channel_message`).
    pub(super) fn release_waiting(&mut self) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        let released = remote.link.release();
        if released.is_empty() {
            return;
        }
        log!(
            Debug,
            "redis does not number broadcasts now; delivering those that waited without an offset",
            count = released.len(),
            worker = self.id
        );
        metrics::add(&self.process.stats.redis_unnumbered, released.len() as u64);
        for Released { seq, channel, json } in released {
            let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
            let tag = Tag {
                worker: self.id,
                seq,
            };
            if let Some(channel) = channel {
                self.release_channel(channel, frame, tag);
                continue;
            }
            for worker in 0..self.process.config.workers {
                let frame = Arc::clone(&frame);
                let tag = Some(tag);
                self.post(worker, Mail::Unsequenced { frame, tag });
            }
        }
        self.read_mail();
    }

    /// A message of the stream goes to this worker's clients without an
    /// offset: no resume here from before it is recovered, and a hole is
    /// owed so that no instance recovers one across it either.
    pub(super) fn unsequenced_local(&mut self, frame: &Arc<[u8]>) {
        self.broadcast_local(frame, None);
        let generation = {
            let mut stream = self.process.stream();
            stream.gap();
            stream.generation()
        };
        if let Some(remote) = &mut self.remote {
            remote.link.owe_hole(generation);
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
                        // What waits may never come back on this link.
                        self.release_waiting();
                    }
                }
                Event::Message(bytes) => self.on_channel_message(&bytes),
                Event::Position { epoch, offset } => {
                    self.process.stream().sync(&epoch, offset);
                    self.check_channel_generation();
                }
                Event::ChannelMessage { channel, payload } => {
                    self.on_channel_topic(channel, &payload)
                }
                Event::Following(following) => self.on_following(following),
                Event::ChannelPosition {
                    channel,
                    epoch,
                    offset,
                } => self.on_channel_position(&channel, &epoch, offset),
            }
        }
    }

    /// Writes what waits for Redis, after the hole owed for what this
    /// worker delivered unnumbered so far.
    pub(super) fn write_redis<T: Transmit>(&mut self, io: &mut T) {
        if let Some(remote) = &mut self.remote {
            if remote.link.hole_due() {
                let generation = self.process.stream().generation();
                if remote.link.send_hole(generation, &self.process.instance) {
                    metrics::add(&self.process.stats.redis_holes, 1);
                }
            }
            if remote.link.channel_holes_due() {
                let generation = self.process.stream().generation();
                let sent = remote
                    .link
                    .send_channel_holes(generation, &self.process.instance);
                metrics::add(&self.process.stats.redis_holes, sent as u64);
            }
        }
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
    /// or everyone). While Redis is away the message is dropped and
    /// counted; returns whether it was queued.
    pub(super) fn publish_remote(&mut self, to: Option<&ClientId>, json: &str) -> bool {
        let Some(remote) = &mut self.remote else {
            return to.is_some_and(|to| self.forward_to_peer(to, json));
        };
        let bytes = envelope::encode(&self.process.instance, to, json);
        let queued = remote.link.publish(&bytes, self.clock.at());
        self.count_published(queued);
        queued
    }

    /// Publishes a broadcast for every instance, this one included,
    /// through the sequencer script, tagged so this process knows it when
    /// it comes back. Returns whether it was queued.
    pub(super) fn publish_numbered(&mut self, json: &str) -> bool {
        let Some(remote) = &mut self.remote else {
            return false;
        };
        let (instance, worker) = (&self.process.instance, self.id);
        let envelope = |seq| {
            let origin = envelope::tagged_origin(instance, Tag { worker, seq });
            envelope::encode(&origin, None, json)
        };
        let queued = remote
            .link
            .publish_numbered(json, envelope, self.clock.at());
        self.count_published(queued);
        queued
    }

    pub(super) fn count_published(&mut self, queued: bool) {
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
    /// client, from any instance, this one included; or a hole), or an
    /// envelope for one client or, unnumbered, for everyone.
    fn on_channel_message(&mut self, bytes: &[u8]) {
        let Some((epoch, offset, rest)) = script::parse_message(bytes) else {
            return self.on_envelope(bytes);
        };
        let before = self.stream.position();
        if script::is_hole(rest) {
            self.stream.hole(&self.process, epoch, offset);
            return self.renumbered_since(before);
        }
        match envelope::decode(rest) {
            Ok(message) if message.to.is_none() => {
                let (origin, tag) = envelope::split_origin(message.origin);
                let own = origin == self.process.instance;
                if !own {
                    metrics::add(&self.process.stats.redis_received, 1);
                }
                if let Some(tag) = tag.filter(|t| own && t.worker < self.process.config.workers) {
                    if tag.worker == self.id {
                        if let Some(remote) = &mut self.remote {
                            remote.link.returned(tag.seq);
                        }
                    }
                    if self.stream.returned(tag) {
                        // Its clients had it already, without the offset.
                        self.stream.hole(&self.process, epoch, offset);
                        return self.renumbered_since(before);
                    }
                }
                let now = self.clock.at();
                let frame = self
                    .stream
                    .numbered(&self.process, epoch, offset, message.json, now);
                self.renumbered_since(before);
                let at = self.stream.position();
                if self.stream.tell(at.generation) && !self.hub.is_empty() {
                    // Before the first message numbered in it, so that
                    // nothing of the new numbering looks already seen.
                    let json =
                        protocol::epoch(epoch, offset.saturating_sub(1), self.clock.wall_ms());
                    let frame = encode_frame(Opcode::Text, json.as_bytes()).into();
                    self.broadcast_local(&frame, None);
                }
                self.broadcast_local(&frame, Some(offset));
            }
            _ => log!(
                Warn,
                "ignoring a malformed numbered message on the Redis channel",
                bytes = bytes.len()
            ),
        }
    }

    /// The worker's place moved from `before`: if that was another epoch,
    /// the replays of the old one end (see `replays_renumbered`).
    fn renumbered_since(&mut self, before: Position) {
        self.check_channel_generation();
        if self.stream.position().generation != before.generation {
            self.replays_renumbered(before);
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
            // A broadcast another instance could not have numbered: its
            // publisher owes the hole, numbered after it; until that comes
            // no resume here is recovered across it.
            Recipient::Everyone => {
                self.broadcast_local(&frame(), None);
                self.process.stream().gap();
            }
            Recipient::Client(key) => self.send_frame(key, Chunk::Shared(frame())),
            Recipient::OwnEcho | Recipient::Nobody => {}
        }
    }
}
