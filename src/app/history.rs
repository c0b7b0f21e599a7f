//! The broadcast stream's recent past, for clients that resume after a
//! reconnect: which epoch the offsets belong to, the last frames sent to
//! everyone (the very frames fanout encoded, shared, not copied), and what
//! a resume with `since` gets. Pure: the caller passes the time and the
//! worker's position in the stream. Each channel's own stream lives here
//! too (`channel_history`), so one lock, one epoch and one
//! `--max-history-bytes` cover everyone and every channel.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel_following::ChannelFollowing;
use super::channel_history::{ChannelFrame, ChannelResume, ChannelStreams, ChannelsState};
use crate::proto::shared_frame::SharedFrame;

/// One kept broadcast.
#[derive(Debug)]
struct Entry {
    at: Instant,
    frame: SharedFrame,
}

/// What a resume gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Every message after `since` is in the history or still to come: the
    /// client is sent them from `cursor` on, as it reads (`replayed` of them
    /// are the worker's past, the welcome's count). A cursor past what the
    /// worker has handed out (the client is ahead of it) waits for it.
    Recovered {
        cursor: Cursor,
        replayed: u64,
    },
    TooOld,
    UnknownEpoch,
}

/// Where one client's replay stands: the next offset it is to be sent, in
/// the generation of the history it resumed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub generation: u64,
    pub next: u64,
}

/// The history no longer holds a message a replay still needs: it was
/// evicted (by size, bytes or age), forgotten at a gap, or the stream
/// restarted under another epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

impl Resume {
    /// The label it counts under in the metrics and the welcome's `reason`.
    pub fn label(&self) -> &'static str {
        match self {
            Resume::Recovered { .. } => "recovered",
            Resume::TooOld => "too_old",
            Resume::UnknownEpoch => "unknown_epoch",
        }
    }
}

/// Where a worker stands in the stream: the last offset it handed to its
/// clients, in which generation (one per epoch this process has seen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub generation: u64,
    pub offset: u64,
}

#[derive(Debug)]
pub struct History {
    epoch: String,
    /// Bumped whenever the epoch changes, so a worker's position from an
    /// older epoch is not compared with this one's offsets.
    generation: u64,
    /// The offset this generation started after.
    start: u64,
    /// The last offset sequenced or seen.
    last: u64,
    /// The smallest `since` that can be recovered: every message after it
    /// up to `last` is in `entries`.
    first_since: u64,
    /// The frames of offsets `last - entries.len() + 1 ..= last`.
    entries: VecDeque<Entry>,
    bytes: usize,
    capacity: usize,
    /// What `bytes` may reach (`--max-history-bytes`).
    max_bytes: usize,
    ttl: Duration,
    channels: ChannelStreams,
    /// With Redis: the channels a subscription of the process follows.
    following: ChannelFollowing,
}

/// A history as it crosses a hand-over: see `History::export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub epoch: String,
    pub last: u64,
    /// The smallest `since` that can be recovered.
    pub first_since: u64,
    /// Oldest first: each entry's age and frame, the last one at `last`.
    pub entries: Vec<(Duration, Arc<[u8]>)>,
    /// Every channel's numbering and entries (none from a process that
    /// had no channels).
    pub channels: ChannelsState,
}

/// What one entry costs besides its frame: the entry, and the `Arc`'s two
/// counters.
pub const ENTRY_COST: usize = size_of::<Entry>() + 2 * size_of::<usize>();

impl History {
    pub fn new(epoch: String, capacity: usize, ttl: Duration) -> History {
        History {
            epoch,
            generation: 0,
            start: 0,
            last: 0,
            first_since: 0,
            entries: VecDeque::new(),
            bytes: 0,
            capacity,
            max_bytes: usize::MAX,
            ttl,
            channels: ChannelStreams::default(),
            following: ChannelFollowing::default(),
        }
    }

    /// Bounds the bytes kept: past `max_bytes` the oldest entries leave.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> History {
        self.max_bytes = max_bytes;
        self
    }

    /// Bounds the channels held, subscribed or kept for their messages
    /// (`--max-channels`): see `channel_make_room`.
    pub fn with_max_channels(mut self, max_channels: usize) -> History {
        self.channels.set_max(max_channels);
        self
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The last offset published so far.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Entries kept, everyone's and every channel's.
    pub fn len(&self) -> usize {
        self.entries.len() + self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame bytes plus the cost of each entry, everyone's and every
    /// channel's, and of the channels kept without subscriber.
    pub fn bytes(&self) -> usize {
        self.bytes + self.channels.bytes()
    }

    /// The offset the next locally sequenced broadcast gets.
    pub fn next_offset(&self) -> u64 {
        self.last + 1
    }

    /// Numbers a broadcast sequenced here (no Redis) and keeps it.
    pub fn append(&mut self, frame: &SharedFrame, now: Instant) -> Position {
        let offset = self.last + 1;
        self.keep(offset, frame, now);
        self.position(offset)
    }

    /// Takes broadcast `offset` of `epoch` as the sequencer numbered it;
    /// returns its position. Every worker of an instance on Redis receives
    /// each message: the first one keeps it. A jump in offsets (messages
    /// this process never saw) or a new epoch leaves nothing recoverable
    /// before it.
    pub fn record(
        &mut self,
        epoch: &str,
        offset: u64,
        frame: &SharedFrame,
        now: Instant,
    ) -> Position {
        if epoch != self.epoch {
            self.restart(epoch, offset.saturating_sub(1));
        } else if offset <= self.last {
            return self.position(offset);
        } else if offset != self.last + 1 {
            self.forget_through(offset - 1);
        }
        self.keep(offset, frame, now);
        self.position(offset)
    }

    /// The frame kept for `offset` of `epoch`, if it is here.
    pub fn frame(&self, epoch: &str, offset: u64) -> Option<(SharedFrame, Position)> {
        if epoch != self.epoch || offset > self.last {
            return None;
        }
        let first = self.last + 1 - self.entries.len() as u64;
        let entry = self.entries.get(offset.checked_sub(first)? as usize)?;
        Some((entry.frame.clone(), self.position(offset)))
    }

    fn position(&self, offset: u64) -> Position {
        Position {
            generation: self.generation,
            offset,
        }
    }

    fn keep(&mut self, offset: u64, frame: &SharedFrame, now: Instant) {
        self.last = offset;
        if self.capacity > 0 {
            self.bytes += frame.bytes() + ENTRY_COST;
            self.entries.push_back(Entry {
                at: now,
                frame: frame.clone(),
            });
        } else {
            self.first_since = offset;
        }
        self.expire(now);
    }

    /// The stream's position as the sequencer reports it (when Redis is
    /// reached): another epoch starts a new history at `offset`. In the same
    /// epoch nothing changes: what the subscription has yet to bring is on
    /// its way, and a message that never comes shows as a jump.
    pub fn sync(&mut self, epoch: &str, offset: u64) {
        if epoch != self.epoch {
            self.restart(epoch, offset);
        }
    }

    /// A broadcast went out without an offset (the sequencer was out of
    /// reach): no resume from before it may claim a recovery.
    pub fn gap(&mut self) {
        self.forget_through(self.last + 1);
    }

    /// Offset `offset` of `epoch` went to no client here with that number:
    /// it marks where an instance handed out broadcasts it could not have
    /// numbered (a hole), or its message reached this process's clients
    /// earlier without an offset. No resume from before it may claim a
    /// recovery; what follows it is recovered as usual. Returns its
    /// position.
    pub fn hole(&mut self, epoch: &str, offset: u64) -> Position {
        if epoch != self.epoch {
            self.restart(epoch, offset.saturating_sub(1));
        }
        if offset > self.last {
            self.last = offset;
            self.forget_through(offset);
        } else {
            self.drop_through(offset);
        }
        self.position(offset)
    }

    /// What a client resuming after `since` of `epoch` gets from the worker
    /// standing at `at`.
    pub fn resume(&mut self, since: u64, epoch: &str, at: Position, now: Instant) -> Resume {
        self.expire(now);
        if self.capacity == 0 {
            return Resume::TooOld;
        }
        if epoch != self.epoch {
            return Resume::UnknownEpoch;
        }
        if since < self.first_since {
            return Resume::TooOld;
        }
        Resume::Recovered {
            cursor: Cursor {
                generation: self.generation,
                next: since + 1,
            },
            replayed: self.delivered(at).saturating_sub(since),
        }
    }

    /// The next frames of a replay standing at `cursor`, oldest first, up
    /// to what the worker standing at `at` has handed out, at most
    /// `max_frames` of them and `max_bytes` (but one at least), added to
    /// `out`; the cursor moves past them. Returns the last offset the
    /// worker handed out, in the cursor's numbering. A replay that has
    /// everything the worker handed out needs nothing more of the history,
    /// even if its numbering has just restarted there.
    pub fn replay(
        &self,
        cursor: &mut Cursor,
        at: Position,
        max_bytes: usize,
        max_frames: usize,
        out: &mut Vec<SharedFrame>,
    ) -> Result<u64, Lost> {
        if cursor.generation == at.generation && cursor.next > at.offset {
            return Ok(at.offset);
        }
        if cursor.generation != self.generation {
            return Err(Lost);
        }
        let through = self.delivered(at);
        if cursor.next > through {
            return Ok(through);
        }
        let first = self.last + 1 - self.entries.len() as u64;
        if cursor.next < first || through > self.last {
            return Err(Lost);
        }
        let range = (cursor.next - first) as usize..=(through - first) as usize;
        let mut bytes = 0;
        for entry in self.entries.range(range).take(max_frames) {
            let len = entry.frame.plain().len();
            if bytes > 0 && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(entry.frame.clone());
            cursor.next += 1;
        }
        Ok(through)
    }

    /// The last offset a worker standing at `at` has handed out in this
    /// epoch.
    pub fn delivered(&self, at: Position) -> u64 {
        if at.generation == self.generation {
            at.offset
        } else {
            self.start
        }
    }

    fn restart(&mut self, epoch: &str, offset: u64) {
        epoch.clone_into(&mut self.epoch);
        self.generation += 1;
        self.start = offset;
        self.last = offset;
        self.first_since = offset;
        self.clear();
        self.channels.restart();
    }

    /// Nothing at or before `offset` can be recovered any more.
    fn forget_through(&mut self, offset: u64) {
        self.first_since = self.first_since.max(offset);
        self.clear();
    }

    /// Nothing at or before `offset` can be recovered any more; what is
    /// kept after it stays.
    fn drop_through(&mut self, offset: u64) {
        self.first_since = self.first_since.max(offset);
        while self.last + 1 - (self.entries.len() as u64) <= offset {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.frame.bytes() + ENTRY_COST;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The stream as a new process on this host continues it after a
    /// hand-over: the epoch, the last offset, and what is kept, with each
    /// entry's age (an `Instant` means nothing in another process); the
    /// same for every channel.
    pub fn export(&mut self, now: Instant) -> StreamState {
        self.expire(now);
        StreamState {
            epoch: self.epoch.clone(),
            last: self.last,
            first_since: self.first_since,
            entries: self
                .entries
                .iter()
                .map(|e| {
                    (
                        now.saturating_duration_since(e.at),
                        Arc::clone(e.frame.plain()),
                    )
                })
                .collect(),
            channels: self.channels.export(now),
        }
    }

    /// Continues the stream another process exported: its epoch, its
    /// offsets and its entries replace this history's, every channel's
    /// too (the subscribers of this process stay). A new generation, so a
    /// worker that has handed out nothing yet stands at the adopted last
    /// offset, not before it. A channel that comes with no entry stays
    /// known for `--history-ttl`, so the clients of the old process
    /// resume it here.
    pub fn adopt(&mut self, state: StreamState, now: Instant) {
        self.restart(&state.epoch, state.last);
        let kept = state.entries.len() as u64;
        self.first_since = state.first_since.max(state.last.saturating_sub(kept));
        let pin_until = if self.capacity == 0 {
            now
        } else {
            now + self.ttl
        };
        self.channels
            .adopt(state.channels, now, self.capacity, pin_until);
        if self.capacity == 0 {
            self.first_since = state.last;
        } else {
            for (age, frame) in state.entries {
                let frame = SharedFrame::from(frame);
                self.bytes += frame.bytes() + ENTRY_COST;
                let at = now.checked_sub(age).unwrap_or(now);
                self.entries.push_back(Entry { at, frame });
            }
        }
        self.expire(now);
    }

    /// When the oldest entry, everyone's or a channel's, turns
    /// `--history-ttl` old (or a channel taken over stops being kept): it
    /// must leave then, with or without traffic (see `expire`).
    pub fn next_expiry(&self) -> Option<Instant> {
        let everyone = self.entries.front().map(|oldest| oldest.at);
        let channels = self.channels.oldest();
        let oldest = everyone.into_iter().chain(channels).min();
        let aged = oldest.map(|at| at + self.ttl);
        aged.into_iter().chain(self.channels.next_unpin()).min()
    }

    /// Drops what is past the count, the bytes or the age limit: an entry
    /// leaves when it turns `ttl` old; past `--max-history-bytes` the
    /// oldest entries leave first, everyone's and every channel's alike.
    pub fn expire(&mut self, now: Instant) {
        while self.entries.len() > self.capacity {
            self.pop_oldest();
        }
        while self
            .entries
            .front()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.at) >= self.ttl)
        {
            self.pop_oldest();
        }
        self.channels.expire(now, self.ttl);
        self.fit_bytes();
    }

    /// Evicts until the bytes fit: first the channels taken over without
    /// an entry (a position is worth less than a message), then the oldest
    /// entries of all.
    fn fit_bytes(&mut self) {
        while self.bytes() > self.max_bytes && self.channels.unpin_first() {}
        while self.bytes() > self.max_bytes {
            let everyone = self.entries.front().map(|e| e.at);
            let channel_first = match (everyone, self.channels.oldest()) {
                (Some(ours), Some(theirs)) => theirs < ours,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if channel_first {
                if !self.channels.evict_oldest() {
                    break;
                }
            } else {
                self.pop_oldest();
            }
        }
    }

    fn pop_oldest(&mut self) {
        let Some(oldest) = self.entries.pop_front() else {
            return;
        };
        self.bytes -= oldest.frame.bytes() + ENTRY_COST;
        let offset = self.last - self.entries.len() as u64;
        self.first_since = self.first_since.max(offset);
    }

    /// Numbers the next message of `channel` (its last offset + 1), builds
    /// its frame with that offset and keeps it; returns both.
    pub fn channel_sequence(
        &mut self,
        channel: &str,
        frame: impl FnOnce(u64) -> SharedFrame,
        now: Instant,
    ) -> (u64, SharedFrame) {
        let numbered = self.channels.sequence(channel, frame, now, self.capacity);
        self.expire(now);
        numbered
    }

    /// Keeps a message of `channel` numbered elsewhere (Redis, the other
    /// process of a hand-over). An offset that is not the next one leaves
    /// a gap: no resume is recovered across it. One already passed is
    /// ignored (false).
    pub fn channel_record(
        &mut self,
        channel: &str,
        offset: u64,
        frame: &SharedFrame,
        now: Instant,
    ) -> bool {
        let kept = self
            .channels
            .record(channel, offset, frame, now, self.capacity);
        self.expire(now);
        kept
    }

    /// The channel's last offset known here; a channel not known stands
    /// where it would start (0, or above every forgotten offset).
    pub fn channel_last(&self, channel: &str) -> u64 {
        self.channels.last(channel)
    }

    /// Whether the history holds every message of `channel` after `since`
    /// of `epoch`: the rules of `ChannelStreams::resume`, and too old
    /// whenever resume is off.
    pub fn channel_resume(&self, channel: &str, since: u64, epoch: &str) -> ChannelResume {
        if self.capacity == 0 {
            return ChannelResume::TooOld;
        }
        if epoch != self.epoch {
            return ChannelResume::UnknownEpoch;
        }
        self.channels.resume(channel, since)
    }

    /// The frame of `offset` of `channel`: `Ok(Some)` kept, `Ok(None)` not
    /// numbered yet, `Err(Lost)` it left the history.
    pub fn channel_frame(&self, channel: &str, offset: u64) -> Result<Option<SharedFrame>, Lost> {
        match self.channels.frame(channel, offset) {
            ChannelFrame::Kept(frame) => Ok(Some(frame)),
            ChannelFrame::NotYet => Ok(None),
            ChannelFrame::Gone => Err(Lost),
        }
    }

    /// Redis numbers the channels (see `ChannelStreams::numbered_elsewhere`).
    pub fn with_channels_numbered_elsewhere(mut self) -> History {
        self.channels.numbered_elsewhere();
        self
    }

    /// A worker's subscription follows `channel` now (Redis confirmed it).
    pub fn channel_follow_started(&mut self, channel: &Arc<str>) {
        self.following.started(channel);
    }

    /// A worker's subscription stopped following `channel`: when it was
    /// the last, messages of it may be missed from now on.
    pub fn channel_follow_stopped(&mut self, channel: &str) {
        if self.following.stopped(channel) {
            self.channels.unfollow(channel);
        }
    }

    /// Whether a worker's subscription follows `channel`.
    pub fn channel_followed(&self, channel: &str) -> bool {
        self.following.follows(channel)
    }

    /// Channels a subscription of the process follows.
    pub fn channels_followed(&self) -> usize {
        self.following.len()
    }

    /// Redis says `channel` stood at `last` of `epoch` after a
    /// subscription of it was confirmed: if it is still followed, every
    /// message after `last` reaches the process.
    pub fn channel_follow_from(&mut self, channel: &str, epoch: &str, last: u64) {
        if epoch == self.epoch && self.following.follows(channel) {
            self.channels.follow_from(channel, last);
        }
    }

    /// A message of `channel` went to clients here without an offset, or an
    /// offset of it went to none (a hole): no resume is recovered across it.
    pub fn channel_gap(&mut self, channel: &str) {
        self.channels.unfollow(channel);
    }

    /// A client of any worker joined `channel`.
    pub fn channel_joined(&mut self, channel: &str) {
        self.channels.joined(channel);
    }

    /// A client of any worker left `channel`: a channel with no subscriber
    /// and no entry left is forgotten. Nobody following it, the channel
    /// counts in the bytes, which may push out the oldest entries.
    pub fn channel_left(&mut self, channel: &str) {
        self.channels.left(channel);
        self.fit_bytes();
    }

    pub fn channel_subscribers(&self, channel: &str) -> usize {
        self.channels.subscribers(channel)
    }

    /// (name, subscribers, last offset) of the channels with subscribers,
    /// sorted by name.
    pub fn channel_list(&self) -> Vec<(Arc<str>, usize, u64)> {
        self.channels.list()
    }

    /// Channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.count()
    }

    /// Channels held: with a subscriber, kept messages or a pin.
    pub fn channels_held(&self) -> usize {
        self.channels.known()
    }

    /// Whether `channel` is held or may be, under `--max-channels`: at the
    /// bound, the channels without a subscriber make room, the one left
    /// longest ago first; false if every channel held has one. Asked
    /// before a channel not held yet is joined or numbered.
    pub fn channel_make_room(&mut self, channel: &str) -> bool {
        self.channels.make_room(channel)
    }

    /// Subscribers of every channel together.
    pub fn subscription_count(&self) -> usize {
        self.channels.subscriptions()
    }

    #[cfg(test)]
    pub fn channel_streams(&self) -> &ChannelStreams {
        &self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn frame(n: u64) -> SharedFrame {
        Arc::<[u8]>::from(n.to_string().into_bytes()).into()
    }

    /// What a resume after `since` from a worker at `at` is replayed,
    /// checked against the welcome's count.
    fn replay_of(
        h: &mut History,
        since: u64,
        epoch: &str,
        at: Position,
        now: Instant,
    ) -> Vec<String> {
        let Resume::Recovered {
            mut cursor,
            replayed,
        } = h.resume(since, epoch, at, now)
        else {
            panic!("not recovered");
        };
        let mut frames = Vec::new();
        h.replay(&mut cursor, at, usize::MAX, usize::MAX, &mut frames)
            .expect("kept");
        assert_eq!(frames.len() as u64, replayed);
        frames
            .iter()
            .map(|f| String::from_utf8(f.plain().to_vec()).unwrap())
            .collect()
    }

    fn recovered(generation: u64, next: u64) -> Resume {
        Resume::Recovered {
            cursor: Cursor { generation, next },
            replayed: 0,
        }
    }

    fn filled(capacity: usize, through: u64, now: Instant) -> History {
        let mut h = History::new("e".into(), capacity, TTL);
        for n in 1..=through {
            assert_eq!(h.append(&frame(n), now), at(n));
        }
        h
    }

    fn at(offset: u64) -> Position {
        Position {
            generation: 0,
            offset,
        }
    }

    #[test]
    fn an_exported_stream_is_continued_where_it_stood() {
        let t0 = Instant::now();
        let mut old = filled(10, 8, t0);
        let later = t0 + Duration::from_secs(5);
        let state = old.export(later);
        assert_eq!((state.last, state.entries.len()), (8, 8));
        assert_eq!(state.entries[0].0, Duration::from_secs(5));

        let now = Instant::now();
        let mut new = History::new("fresh".into(), 10, TTL);
        new.adopt(state, now);
        assert_eq!((new.epoch(), new.last(), new.len()), ("e", 8, 8));
        assert_eq!(new.bytes(), old.bytes());
        // A worker that has handed out nothing here stands at 8.
        let fresh = Position::default();
        assert_eq!(new.delivered(fresh), 8);
        assert_eq!(replay_of(&mut new, 5, "e", fresh, now), ["6", "7", "8"]);
        let ninth = new.append(&frame(9), now);
        assert_eq!(ninth.offset, 9);
        assert_eq!(replay_of(&mut new, 7, "e", ninth, now), ["8", "9"]);
        assert_eq!(new.resume(1, "fresh", ninth, now), Resume::UnknownEpoch);
    }

    #[test]
    fn an_adopted_entry_keeps_its_age() {
        let t0 = Instant::now();
        let mut old = filled(10, 2, t0);
        let state = old.export(t0 + TTL - Duration::from_secs(1));
        let mut new = History::new("x".into(), 10, TTL);
        let now = Instant::now();
        new.adopt(state, now);
        assert_eq!(new.len(), 2);
        assert_eq!(new.next_expiry(), Some(now + Duration::from_secs(1)));
        // A second later both are as old as the TTL in the new process too.
        assert_eq!(
            new.resume(0, "e", Position::default(), now + Duration::from_secs(1)),
            Resume::TooOld
        );
    }

    #[test]
    fn what_could_not_be_recovered_before_stays_so() {
        let now = Instant::now();
        let mut old = filled(3, 8, now);
        let mut new = History::new("x".into(), 3, TTL);
        new.adopt(old.export(now), now);
        let fresh = Position::default();
        assert_eq!(new.resume(4, "e", fresh, now), Resume::TooOld);
        assert_eq!(replay_of(&mut new, 5, "e", fresh, now), ["6", "7", "8"]);
        let mut off = History::new("x".into(), 0, TTL);
        off.adopt(old.export(now), now);
        assert_eq!(off.last(), 8);
        assert_eq!(off.resume(8, "e", fresh, now), Resume::TooOld);
    }

    #[test]
    fn replays_what_follows_since_up_to_the_workers_position() {
        let now = Instant::now();
        let mut h = filled(10, 8, now);
        assert_eq!(replay_of(&mut h, 5, "e", at(8), now), ["6", "7", "8"]);
        // The worker has not yet handed out 8: it will, live.
        assert_eq!(replay_of(&mut h, 5, "e", at(7), now), ["6", "7"]);
        assert_eq!(h.resume(8, "e", at(8), now), recovered(0, 9));
        assert_eq!(replay_of(&mut h, 0, "e", at(8), now).len(), 8);
    }

    #[test]
    fn a_replay_goes_on_in_steps_as_large_as_asked_and_one_message_at_least() {
        let now = Instant::now();
        let mut h = History::new("e".into(), 10, TTL);
        for n in [1, 22, 333, 4444] {
            h.append(&frame(n), now);
        }
        let Resume::Recovered {
            mut cursor,
            replayed,
        } = h.resume(0, "e", at(4), now)
        else {
            panic!()
        };
        assert_eq!((cursor.next, replayed), (1, 4));
        let mut out = Vec::new();
        h.replay(&mut cursor, at(4), 3, 10, &mut out).unwrap();
        assert_eq!((out.len(), cursor.next), (2, 3), "1 and 22 fit in 3 bytes");
        h.replay(&mut cursor, at(4), 1, 10, &mut out).unwrap();
        assert_eq!(
            (out.len(), cursor.next),
            (3, 4),
            "333 alone, larger than asked"
        );
        h.replay(&mut cursor, at(3), 100, 10, &mut out).unwrap();
        assert_eq!(cursor.next, 4, "not past what the worker handed out");
        h.replay(&mut cursor, at(4), 100, 0, &mut out).unwrap();
        assert_eq!(cursor.next, 4, "no more frames than asked");
        h.replay(&mut cursor, at(4), 100, 10, &mut out).unwrap();
        assert_eq!(cursor.next, 5);
        assert_eq!(&out[3].plain()[..], b"4444");
    }

    #[test]
    fn a_replay_whose_next_message_is_gone_is_lost() {
        let now = Instant::now();
        let mut h = filled(3, 3, now);
        let mut cursor = Cursor {
            generation: 0,
            next: 2,
        };
        let mut out = Vec::new();
        h.append(&frame(4), now);
        h.replay(&mut cursor, at(4), 100, 10, &mut out).unwrap();
        assert_eq!(cursor.next, 5, "2, 3 and 4 still kept");
        h.append(&frame(5), now);
        h.append(&frame(6), now);
        let mut behind = Cursor {
            generation: 0,
            next: 3,
        };
        assert_eq!(h.replay(&mut behind, at(6), 100, 10, &mut out), Err(Lost));
        h.gap();
        assert_eq!(h.replay(&mut cursor, at(6), 100, 10, &mut out), Err(Lost));
        // A cursor with nothing to send yet (ahead of the worker) waits;
        // one that needs a message of a numbering that restarted is lost,
        // one that had all the worker handed out of it is not.
        let mut ahead = Cursor {
            generation: 0,
            next: 9,
        };
        assert_eq!(h.replay(&mut ahead, at(6), 100, 10, &mut out), Ok(6));
        h.sync("f", 20);
        assert_eq!(h.replay(&mut ahead, at(6), 100, 10, &mut out), Ok(6));
        let mut short = Cursor {
            generation: 0,
            next: 6,
        };
        assert_eq!(h.replay(&mut short, at(6), 100, 10, &mut out), Err(Lost));
        let moved = Position {
            generation: 1,
            offset: 20,
        };
        assert_eq!(h.replay(&mut ahead, moved, 100, 10, &mut out), Err(Lost));
    }

    #[test]
    fn bytes_bound_what_is_kept_oldest_first() {
        let now = Instant::now();
        let cost = 1 + ENTRY_COST;
        let mut h = History::new("e".into(), 100, TTL).with_max_bytes(3 * cost);
        for n in 1..=8 {
            h.append(&frame(n), now);
            assert!(h.bytes() <= 3 * cost, "{} after {n}", h.bytes());
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.resume(4, "e", at(8), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 5, "e", at(8), now), ["6", "7", "8"]);
        // A frame larger than the whole bound is not kept at all, and no
        // resume claims to cover it.
        let big = SharedFrame::from(vec![b'x'; 4 * cost]);
        h.append(&big, now);
        assert_eq!((h.len(), h.bytes()), (0, 0));
        assert_eq!(h.resume(8, "e", at(9), now), Resume::TooOld);
        assert!(matches!(
            h.resume(9, "e", at(9), now),
            Resume::Recovered { .. }
        ));
    }

    #[test]
    fn size_bounds_what_is_kept_and_its_bytes() {
        let now = Instant::now();
        let mut h = filled(3, 8, now);
        assert_eq!(h.len(), 3);
        assert_eq!(h.bytes(), 3 * (1 + ENTRY_COST));
        assert_eq!(h.resume(4, "e", at(8), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 5, "e", at(8), now), ["6", "7", "8"]);
    }

    #[test]
    fn entries_older_than_the_ttl_are_gone() {
        let then = Instant::now();
        let mut h = filled(10, 4, then);
        let later = then + TTL / 2;
        h.record("e", 5, &frame(5), later);
        let past_ttl = then + TTL + Duration::from_secs(1);
        assert_eq!(h.resume(3, "e", at(5), past_ttl), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 4, "e", at(5), past_ttl), ["5"]);
        assert_eq!(h.len(), 1);
        assert_eq!(h.bytes(), 1 + ENTRY_COST);
    }

    #[test]
    fn a_broadcast_without_offset_stops_recovery_across_it() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        h.gap();
        assert_eq!(h.resume(4, "e", at(4), now), Resume::TooOld);
        assert_eq!(h.resume(2, "e", at(4), now), Resume::TooOld);
        assert_eq!(h.bytes(), 0);
        h.record("e", 5, &frame(5), now);
        h.record("e", 6, &frame(6), now);
        assert_eq!(h.resume(4, "e", at(6), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 5, "e", at(6), now), ["6"]);
    }

    #[test]
    fn a_hole_stops_recovery_across_it_and_keeps_what_follows() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        // Another instance's hole, next in the numbering.
        assert_eq!(h.hole("e", 5), at(5));
        assert_eq!(h.resume(4, "e", at(5), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 5, "e", at(5), now), Vec::<String>::new());
        h.record("e", 6, &frame(6), now);
        h.record("e", 7, &frame(7), now);
        assert_eq!(replay_of(&mut h, 5, "e", at(7), now), ["6", "7"]);
        // A message this process handed out unnumbered comes back as 6:
        // 7 is still replayed to those that resume after 6.
        assert_eq!(h.hole("e", 6), at(6));
        assert_eq!(h.resume(5, "e", at(7), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 6, "e", at(7), now), ["7"]);
        assert_eq!((h.len(), h.bytes(), h.last()), (1, 1 + ENTRY_COST, 7));
        // Past the last one, in another epoch: a new history from there.
        assert_eq!(h.hole("f", 3).offset, 3);
        assert_eq!((h.epoch(), h.last(), h.len()), ("f", 3, 0));
        assert_eq!(h.resume(2, "f", at(0), now), Resume::TooOld);
    }

    #[test]
    fn a_jump_in_offsets_is_a_gap() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        h.record("e", 9, &frame(9), now);
        assert_eq!(h.resume(4, "e", at(9), now), Resume::TooOld);
        assert_eq!(replay_of(&mut h, 8, "e", at(9), now), ["9"]);
    }

    #[test]
    fn messages_seen_twice_are_recorded_once() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        let (kept, here) = h.frame("e", 3).unwrap();
        assert_eq!((&kept.plain()[..], here), (&b"3"[..], at(3)));
        assert!(h.frame("e", 5).is_none() && h.frame("f", 3).is_none());
        assert_eq!(h.record("e", 3, &frame(3), now), at(3));
        assert_eq!(h.record("e", 4, &frame(4), now), at(4));
        assert_eq!(h.len(), 4);
        assert_eq!(h.record("e", 5, &frame(5), now), at(5));
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn a_client_ahead_of_this_worker_is_not_sent_those_again() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        assert_eq!(h.resume(7, "e", at(4), now), recovered(0, 8));
        // The worker has not handed out 4 yet; the client has it.
        assert_eq!(h.resume(4, "e", at(3), now), recovered(0, 5));
    }

    #[test]
    fn another_epoch_is_unknown_and_a_new_one_starts_afresh() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        assert_eq!(h.resume(2, "other", at(4), now), Resume::UnknownEpoch);
        h.sync("f", 100);
        assert_eq!(h.generation(), 1);
        assert_eq!((h.epoch(), h.last(), h.len()), ("f", 100, 0));
        assert_eq!(h.resume(2, "e", at(4), now), Resume::UnknownEpoch);
        assert_eq!(h.resume(99, "f", at(4), now), Resume::TooOld);
        // The worker's position belongs to the old epoch: it has handed out
        // nothing of this one yet, so all of it is still to come live.
        assert_eq!(h.resume(100, "f", at(4), now), recovered(1, 101));
        let here = h.record("f", 101, &frame(101), now);
        assert_eq!(here.generation, 1);
        assert_eq!(replay_of(&mut h, 100, "f", here, now), ["101"]);
    }

    #[test]
    fn sync_in_the_same_epoch_waits_for_the_subscription() {
        let now = Instant::now();
        let mut h = filled(10, 4, now);
        h.sync("e", 7);
        assert_eq!(replay_of(&mut h, 2, "e", at(4), now), ["3", "4"]);
        h.record("e", 5, &frame(5), now);
        assert_eq!(h.last(), 5);
    }

    #[test]
    fn size_zero_keeps_nothing_and_recovers_nothing() {
        let now = Instant::now();
        let mut h = filled(0, 4, now);
        assert_eq!((h.len(), h.bytes(), h.last()), (0, 0, 4));
        assert_eq!(h.resume(4, "e", at(4), now), Resume::TooOld);
    }
}
