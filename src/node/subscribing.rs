//! The node's steps for a client's channels: joining one (the answer, and
//! the replay of what a resume missed), leaving one or all of them, and
//! chat on one. The process-wide counts (`/status`, `GET /channels`) move
//! under the stream's lock with each change here.

use std::sync::Arc;

use super::channels::ChannelId;
use super::replay::{ReplayKey, Replayed};
use super::Node;
use crate::app::channel_history::ChannelResume;
use crate::app::channel_name::USER_PREFIX;
use crate::app::channel_protocol;
use crate::app::channel_refusal::ChannelRefusal;
use crate::app::history::{Cursor, History};
use crate::app::protocol::Resumed;
use crate::app::routes::ResumeFrom;
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics::{self, Limit};

impl Node {
    /// `subscribe`: a channel whose name is valid and not a `user:` one.
    /// Answered `subscribed` (again, if already joined: delivery is never
    /// doubled), then, with a recovered resume, what the client missed,
    /// as it reads, before any newer message of the channel.
    pub(super) fn subscribe(
        &mut self,
        key: ConnKey,
        channel: String,
        private: bool,
        resume: Option<ResumeFrom>,
    ) {
        if private && !self.may_join_private(key, &channel) {
            return self.refuse_channel(key, channel, ChannelRefusal::NotAllowed);
        }
        let joined = self.channels.joined(key, &channel);
        let limit = self.process.config.max_channels_per_client;
        if joined.is_none() && self.channels.counted(key) >= limit {
            return self.refuse_channel(key, channel, ChannelRefusal::TooMany(limit));
        }
        let id = match joined {
            Some(id) => id,
            None => {
                let process = Arc::clone(&self.process);
                let mut history = process.stream();
                if !history.channel_make_room(&channel) {
                    drop(history);
                    self.process.stats.limit_hit(Limit::MaxChannels);
                    return self.refuse_channel(key, channel, ChannelRefusal::ServerFull);
                }
                self.open_subscription(&mut history, key, &channel)
            }
        };
        if self.hold_subscribe_answer(key, id, &resume) {
            return;
        }
        self.answer_subscribe(key, id, &channel, resume);
    }

    /// The `subscribed` answer to client `key`, which joined channel `id`,
    /// and the replay its resume asks for.
    pub(super) fn answer_subscribe(
        &mut self,
        key: ConnKey,
        id: ChannelId,
        channel: &str,
        resume: Option<ResumeFrom>,
    ) {
        let process = Arc::clone(&self.process);
        let history = process.stream();
        let outcome = resume.map(|r| history.channel_resume(channel, r.since, &r.epoch));
        let epoch = history.epoch().to_owned();
        drop(history);
        let delivered = self.channels.delivered(id);
        let (offset, resumed, replay_from) = match outcome {
            None => (delivered, None, None),
            Some(ChannelResume::Recovered { next, .. }) => {
                // Ahead of this worker, the client has more than it handed
                // out: that is where it stands, and the replay waits.
                let since = next - 1;
                let replayed = delivered.saturating_sub(since) as usize;
                let replay = (since != delivered).then_some(next);
                (
                    since.max(delivered),
                    Some(Resumed::Recovered { replayed }),
                    replay,
                )
            }
            Some(failed) => (delivered, Some(Resumed::Failed(failed.label())), None),
        };
        let now = self.clock.wall_ms();
        let answer = channel_protocol::subscribed(channel, &epoch, offset, resumed, now);
        self.send_json(key, &answer);
        if let Some(next) = replay_from {
            self.replay_channel(key, id, next);
        }
    }

    /// An authenticated client joins its user's channel as it connects,
    /// before its welcome, unasked and unanswered: a message to the user
    /// published after the welcome reaches it. It does not count against
    /// `--max-channels-per-client`.
    pub(super) fn join_user_channel(&mut self, key: ConnKey) {
        let Some(user) = self
            .users
            .get(key)
            .map(|identity| Arc::clone(&identity.user))
        else {
            return;
        };
        let channel = format!("{USER_PREFIX}{user}");
        let process = Arc::clone(&self.process);
        let mut history = process.stream();
        // Never refused: at `--max-channels` with every channel subscribed
        // it goes past the bound, by one per authenticated connection at
        // most (docs/limits.md counts them).
        history.channel_make_room(&channel);
        self.open_subscription(&mut history, key, &channel);
    }

    /// `subscribe` to a `user:` channel: only the client's own, which it
    /// joined at connect, answered `subscribed` again like any channel
    /// already joined (with its resume, if asked). Any other is refused.
    pub(super) fn subscribe_user(
        &mut self,
        key: ConnKey,
        channel: String,
        resume: Option<ResumeFrom>,
    ) {
        let own = self
            .users
            .get(key)
            .is_some_and(|identity| channel.strip_prefix(USER_PREFIX) == Some(&*identity.user));
        if !own || self.channels.joined(key, &channel).is_none() {
            return self.refuse_channel(key, channel, ChannelRefusal::Reserved);
        }
        self.subscribe(key, channel, false, resume);
    }

    /// Client `key` joins `channel`, which it had not joined, under the
    /// stream's lock (`history`): counted in the process, and delivered
    /// every message numbered from now on (with Redis, once this worker's
    /// subscription follows the channel, which its first subscriber here
    /// starts).
    fn open_subscription(
        &mut self,
        history: &mut History,
        key: ConnKey,
        channel: &str,
    ) -> ChannelId {
        let last = history.channel_last(channel);
        history.channel_joined(channel);
        let first_here = self.channels.id(channel).is_none();
        let id = self.channels.join(key, channel, last);
        if first_here {
            self.follow_channel(channel);
        }
        id
    }

    /// Client `key` is to be replayed channel `id` from offset `next` on;
    /// live messages of the channel wait for the replay meanwhile (it
    /// sends them from the history).
    fn replay_channel(&mut self, key: ConnKey, id: ChannelId, next: u64) {
        let replay = ReplayKey {
            conn: key,
            stream: Replayed::Channel(id),
        };
        if !self.replays.stop(replay) {
            metrics::add(&self.process.stats.replays_active, 1);
        }
        let cursor = Cursor {
            generation: 0,
            next,
        };
        self.replays.start(replay, cursor);
        self.channels.set_replaying(key, id, true);
    }

    /// `unsubscribe`: answered `unsubscribed`, and no message of the
    /// channel after it (also when it was not joined).
    pub(super) fn unsubscribe(&mut self, key: ConnKey, channel: String) {
        if let Some(id) = self.channels.joined(key, &channel) {
            let replay = ReplayKey {
                conn: key,
                stream: Replayed::Channel(id),
            };
            if self.replays.stop(replay) {
                metrics::sub(&self.process.stats.replays_active, 1);
            }
            self.channels.leave(key, id);
            self.process.stream().channel_left(&channel);
            self.left_channel(key, &channel);
        }
        let answer = channel_protocol::unsubscribed(&channel, self.clock.wall_ms());
        self.send_json(key, &answer);
    }

    /// Chat on a channel: to its subscribers if the sender joined it.
    pub(super) fn chat_on_channel(&mut self, key: ConnKey, channel: String, json: &str) {
        if self.channels.joined(key, &channel).is_none() {
            return self.refuse_channel(key, channel, ChannelRefusal::NotJoined);
        }
        self.publish_channel(&channel, json);
    }

    /// A client left: it leaves every channel it joined (its replays ended
    /// with it).
    pub(super) fn leave_channels(&mut self, key: ConnKey) {
        let process = &self.process;
        let mut history = None;
        let mut left = Vec::new();
        let across = self.remote.is_some();
        self.channels.leave_all(key, |name| {
            history
                .get_or_insert_with(|| process.stream())
                .channel_left(name);
            if across {
                left.push(Box::<str>::from(name));
            }
        });
        drop(history);
        for name in left {
            self.left_channel(key, &name);
        }
    }

    /// Whether client `key` may join the `private:` channel `channel`:
    /// only with a token that lists it.
    fn may_join_private(&self, key: ConnKey, channel: &str) -> bool {
        self.users
            .get(key)
            .is_some_and(|identity| identity.private.iter().any(|name| **name == *channel))
    }

    fn refuse_channel(&mut self, key: ConnKey, channel: String, refusal: ChannelRefusal) {
        log!(
            Debug,
            "channel message refused",
            conn = key,
            channel = channel,
            error = refusal
        );
        let json = channel_protocol::error(&channel, &refusal.to_string(), self.clock.wall_ms());
        self.send_json(key, &json);
    }
}
