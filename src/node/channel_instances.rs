//! The node's steps for channels across instances (`--redis`): following
//! a channel on Redis while this worker has a subscriber of it, publishing
//! a channel's message through Redis's numbering, and delivering what the
//! subscription brings, numbered by Redis, to this worker's subscribers.
//! What Redis does not number in time goes out without an offset, as for
//! everyone (`instances.rs`), and the channel's history records the gap.

use std::sync::Arc;

use super::awaiting_follow::Waiting;
use super::channels::ChannelId;
use super::mailbox::Mail;
use super::redis::{script, Following, Side, STALLED_AFTER};
use super::Node;
use crate::app::envelope::{self, Tag};
use crate::app::protocol;
use crate::app::routes::ResumeFrom;
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics;
use crate::proto::shared_frame::SharedFrame;

impl Node {
    /// This worker's first subscriber of `channel` joined: its Redis
    /// subscription follows the channel from Redis's confirmation on.
    pub(super) fn follow_channel(&mut self, channel: &str) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        if remote.link.subscribe_channel(channel).is_err() {
            // Cannot happen while the channel index keeps its own bound
            // (connections × channels per client, which this one is).
            log!(
                Warn,
                "redis: too many channels to follow; this worker's subscribers of one will get only what this instance publishes",
                channel = channel,
                worker = self.id
            );
        }
    }

    /// Client `key` left `channel`: no answer held for it is sent, and
    /// if it was this worker's last subscriber of the channel, the
    /// subscription stops following it.
    pub(super) fn left_channel(&mut self, key: ConnKey, channel: &str) {
        let last = self.channels.id(channel).is_none();
        if let Some(remote) = &mut self.remote {
            remote.awaiting.forget(key, channel);
            if last {
                remote.link.unsubscribe_channel(channel);
            }
        }
    }

    /// With Redis, holds client `key`'s answer for channel `id` while this
    /// worker's subscription does not follow it yet (see
    /// `awaiting_follow.rs`); live messages of the channel skip the client
    /// meanwhile. Returns whether it is held. Not while Redis is out of
    /// reach: nothing would come, the answer goes at once.
    pub(super) fn hold_subscribe_answer(
        &mut self,
        key: ConnKey,
        id: ChannelId,
        resume: &Option<ResumeFrom>,
    ) -> bool {
        let Some(remote) = &mut self.remote else {
            return false;
        };
        let Some(channel) = self.channels.name(id) else {
            return false;
        };
        let followed = remote.link.follows(channel) && !remote.awaiting.is_waiting(channel);
        if followed || !Side::BOTH.iter().all(|side| remote.link.is_ready(*side)) {
            return false;
        }
        let deadline = self.clock.at() + STALLED_AFTER;
        remote.awaiting.hold(channel, key, resume.clone(), deadline);
        self.channels.set_replaying(key, id, true);
        true
    }

    /// Sends the answers held for `channel`; `at`: where Redis said the
    /// channel stood once this worker followed it (what was numbered up to
    /// it is not for these subscribers), if it said.
    pub(super) fn answer_held(&mut self, channel: &str, at: Option<u64>) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        let waiting = remote.awaiting.take(channel);
        let Some(id) = self.channels.id(channel).filter(|_| !waiting.is_empty()) else {
            return;
        };
        if let Some(at) = at {
            self.channels.skip_to(id, at);
        }
        for Waiting { key, resume } in waiting {
            self.channels.set_replaying(key, id, false);
            self.answer_subscribe(key, id, channel, resume);
        }
    }

    /// The answers held longer than `STALLED_AFTER`: Redis did not confirm
    /// in time; they go now, with what the history says.
    pub(super) fn answer_overdue(&mut self) {
        let now = self.clock.at();
        let Some(remote) = &mut self.remote else {
            return;
        };
        for channel in remote.awaiting.overdue(now) {
            self.answer_held(&channel, None);
        }
    }

    /// A message of `channel` from this worker, with Redis: numbered by
    /// Redis and delivered from the subscriptions of the workers that
    /// follow the channel, on every instance. While Redis does not number
    /// (away, stalled, or too much waits), it goes to this process's
    /// subscribers at once without an offset, and to other instances
    /// unnumbered if Redis takes it. Returns this process's subscribers.
    pub(super) fn publish_channel_across(&mut self, channel: &str, json: &str) -> usize {
        let name: Arc<str> = channel.into();
        let sequencing = self
            .remote
            .as_ref()
            .is_some_and(|remote| remote.sequencing(self.clock.at()));
        if !(sequencing && self.publish_channel_numbered(&name, json)) {
            // In publication order: what waited goes out first.
            self.release_waiting();
            if !sequencing {
                let envelope = envelope::encode(&self.process.instance, None, json);
                let now = self.clock.at();
                let queued = self
                    .remote
                    .as_mut()
                    .is_some_and(|remote| remote.link.publish_channel(&name, &envelope, now));
                self.count_published(queued);
            }
            metrics::add(&self.process.stats.redis_unnumbered, 1);
            let frame = self.compressor.frame(&self.process, json);
            for worker in 0..self.process.config.workers {
                let mail = Mail::ChannelUnsequenced {
                    channel: Arc::clone(&name),
                    frame: frame.clone(),
                    tag: None,
                };
                self.post(worker, mail);
            }
            self.read_mail();
        }
        self.process.stream().channel_subscribers(channel)
    }

    /// Queues a channel message for Redis's numbering, tagged like a
    /// broadcast so this process knows its own should it deliver it before
    /// Redis numbers it. Returns whether it was queued.
    fn publish_channel_numbered(&mut self, name: &Arc<str>, json: &str) -> bool {
        let Some(remote) = &mut self.remote else {
            return false;
        };
        let (instance, worker) = (&self.process.instance, self.id);
        let envelope = |seq| {
            let origin = envelope::tagged_origin(instance, Tag { worker, seq });
            envelope::encode(&origin, None, json)
        };
        let now = self.clock.at();
        let queued = remote
            .link
            .publish_channel_numbered(name, json, envelope, now);
        self.count_published(queued);
        queued
    }

    /// This worker's channel message that Redis did not number in time,
    /// for every worker's subscribers of it, without an offset.
    pub(super) fn release_channel(&mut self, channel: Arc<str>, frame: SharedFrame, tag: Tag) {
        for worker in 0..self.process.config.workers {
            let mail = Mail::ChannelUnsequenced {
                channel: Arc::clone(&channel),
                frame: frame.clone(),
                tag: Some(tag),
            };
            self.post(worker, mail);
        }
    }

    /// A message of `channel` goes to this worker's subscribers of it
    /// without an offset: no resume of the channel is recovered across it
    /// here, and a hole of the channel is owed so none is on any instance.
    pub(super) fn channel_unsequenced_local(&mut self, channel: &Arc<str>, frame: &SharedFrame) {
        if self.channels.id(channel).is_none() {
            return;
        }
        self.deliver_channel(channel, None, frame);
        let generation = {
            let mut stream = self.process.stream();
            stream.channel_gap(channel);
            stream.generation()
        };
        if let Some(remote) = &mut self.remote {
            remote.link.owe_channel_hole(channel, generation);
        }
    }

    /// This worker's subscription began or stopped following a channel.
    pub(super) fn on_following(&mut self, following: Following) {
        let stats = &self.process.stats;
        match following {
            Following::Started(channel) => {
                metrics::add(&stats.redis_channel_subscriptions, 1);
                self.process.stream().channel_follow_started(&channel);
                // From where: the answers held are sent then, and a resume
                // of it can be recovered here before its next message.
                let asked = self
                    .remote
                    .as_mut()
                    .is_some_and(|remote| remote.link.ask_channel_position(&channel));
                if !asked {
                    self.answer_held(&channel, None);
                }
            }
            Following::Stopped(channel) => {
                metrics::sub(&stats.redis_channel_subscriptions, 1);
                self.process.stream().channel_follow_stopped(&channel);
                self.answer_held(&channel, None);
            }
        }
    }

    /// Where `channel` stood when Redis was asked after this worker's
    /// subscription of it was confirmed.
    pub(super) fn on_channel_position(&mut self, channel: &str, epoch: &str, offset: u64) {
        let same_epoch = {
            let mut stream = self.process.stream();
            stream.channel_follow_from(channel, epoch, offset);
            stream.epoch() == epoch
        };
        self.answer_held(channel, same_epoch.then_some(offset));
    }

    /// A message of `channel` from this worker's subscription: numbered by
    /// Redis (from any instance, this one included), a hole, or an
    /// unnumbered one from another instance.
    pub(super) fn on_channel_topic(&mut self, channel: Arc<str>, bytes: &[u8]) {
        metrics::add(&self.process.stats.redis_channel_received, 1);
        let Some((epoch, offset, rest)) = script::parse_message(bytes) else {
            return self.on_channel_envelope(&channel, bytes);
        };
        if script::is_hole(rest) {
            self.process.stream().channel_gap(&channel);
            return;
        }
        let message = match envelope::decode(rest) {
            Ok(message) if message.to.is_none() => message,
            _ => {
                return log!(
                    Warn,
                    "ignoring a malformed numbered message of a channel on Redis",
                    bytes = bytes.len()
                )
            }
        };
        let (origin, tag) = envelope::split_origin(message.origin);
        let own = origin == self.process.instance;
        if let Some(tag) = tag.filter(|t| own && t.worker < self.process.config.workers) {
            if self.stream.returned(tag) {
                // Its subscribers here had it already, without the offset.
                self.process.stream().channel_gap(&channel);
                return;
            }
        }
        let new_epoch = {
            let mut stream = self.process.stream();
            // Redis lost its data: everyone and every channel start again
            // under the epoch its scripts chose.
            let new_epoch = epoch != stream.epoch();
            if new_epoch {
                stream.sync(epoch, 0);
            }
            new_epoch.then(|| stream.generation())
        };
        if let Some(generation) = new_epoch {
            self.check_channel_generation();
            if self.stream.tell(generation) && !self.hub.is_empty() {
                let json = protocol::epoch(epoch, 0, self.clock.wall_ms());
                self.broadcast_local(&SharedFrame::text(&json, None), None);
            }
        }
        let frame = {
            let (process, compressor) = (&self.process, &mut self.compressor);
            let mut stream = process.stream();
            // The first worker of the process to take it frames (and
            // compresses) it once for all.
            let mut build = || -> SharedFrame {
                let json = protocol::with_offset(message.json, offset);
                compressor.frame(process, &json)
            };
            match stream.channel_frame(&channel, offset) {
                Ok(Some(kept)) => kept,
                Ok(None) if stream.channel_make_room(&channel) => {
                    let frame = build();
                    stream.channel_record(&channel, offset, &frame, self.clock.at());
                    frame
                }
                // Before what this process follows, gone, or no room under
                // --max-channels: delivered to whoever here has not had it,
                // not kept.
                _ => build(),
            }
        };
        self.deliver_channel(&channel, Some(offset), &frame);
    }

    /// With Redis: if the history took up a new epoch since this worker's
    /// channels last handed out an offset (Redis lost its data, and every
    /// channel counts from 1 again), those offsets are forgotten, so the new
    /// numbering is not taken for messages already delivered.
    pub(super) fn check_channel_generation(&mut self) {
        let generation = self.process.stream().generation();
        let Some(remote) = &mut self.remote else {
            return;
        };
        if remote.channel_generation != generation {
            remote.channel_generation = generation;
            self.channels.renumbered();
        }
    }

    /// An unnumbered message of `channel` from another instance (it could
    /// not have Redis number it): its publisher owes the hole; until that
    /// comes no resume of the channel here is recovered across it.
    fn on_channel_envelope(&mut self, channel: &Arc<str>, bytes: &[u8]) {
        let message = match envelope::decode(bytes) {
            Ok(message) if message.to.is_none() => message,
            _ => {
                return log!(
                    Warn,
                    "ignoring a foreign or malformed message of a channel on Redis",
                    bytes = bytes.len()
                )
            }
        };
        if message.origin == self.process.instance {
            // This instance's own, delivered here already.
            return;
        }
        let frame = self.compressor.frame(&self.process, message.json);
        self.deliver_channel(channel, None, &frame);
        self.process.stream().channel_gap(channel);
    }
}
