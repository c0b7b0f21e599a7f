//! Every channel's own stream, process-wide: its numbering (from 1, under
//! the epoch of the history that holds it), its last frames for resumes,
//! and how many clients of all workers follow it. Pure: `History` holds it
//! under the stream's lock, passes the time and the bounds, and evicts
//! across everyone's entries and these (see `History::expire`).
//!
//! Why a channel's numbering can be trusted after it is forgotten: a
//! channel with neither subscriber nor entry leaves the map, and the
//! highest offset forgotten so far (the floor) is kept instead. A channel
//! created afterwards numbers from its floor on, so no offset of a channel
//! ever names two messages, and a `since` from a forgotten past (below the
//! floor) is never recovered.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::shared_frame::SharedFrame;

/// What a resume of one channel gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelResume {
    /// Every message after `since` is kept or still to come: the client
    /// is sent them from `next` on; `replayed` of them are already here.
    Recovered {
        next: u64,
        replayed: u64,
    },
    TooOld,
    UnknownEpoch,
}

impl ChannelResume {
    /// The `reason` of a `subscribed` answer that recovered nothing.
    pub fn label(&self) -> &'static str {
        match self {
            ChannelResume::Recovered { .. } => "recovered",
            ChannelResume::TooOld => "too_old",
            ChannelResume::UnknownEpoch => "unknown_epoch",
        }
    }
}

/// Where one offset of a channel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFrame {
    Kept(SharedFrame),
    /// Not numbered yet.
    NotYet,
    /// It left the history (or was never kept here).
    Gone,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    frame: SharedFrame,
}

#[derive(Debug)]
struct Channel {
    last: u64,
    /// The frames of offsets `last - entries.len() + 1 ..= last`: a resume
    /// is recovered from `last - entries.len()` on, never from before.
    entries: VecDeque<Entry>,
    subscribers: usize,
    /// This process follows the channel's numbering: it numbered or
    /// received one of its messages since it created the channel (or the
    /// process it took over from did), so every later one comes through
    /// here and a client ahead of `last` misses nothing by waiting.
    followed: bool,
    /// Kept without subscriber or entry until then: a channel taken over
    /// in a hand-over, for the clients that come over from the old process.
    pinned_until: Option<Instant>,
    /// Its place in `ChannelStreams::vacant` while it has no subscriber
    /// (0: not there).
    vacant_mark: u64,
}

impl Channel {
    fn new(last: u64) -> Channel {
        Channel {
            last,
            entries: VecDeque::new(),
            subscribers: 0,
            followed: false,
            pinned_until: None,
            vacant_mark: 0,
        }
    }

    /// The smallest `since` whose every following message is kept.
    fn first_since(&self) -> u64 {
        self.last - self.entries.len() as u64
    }

    fn idle(&self) -> bool {
        self.subscribers == 0 && self.entries.is_empty() && self.pinned_until.is_none()
    }
}

/// One channel entry, in the order entries were kept across channels, so
/// the oldest of all leaves first.
#[derive(Debug)]
struct Placed {
    channel: Arc<str>,
    offset: u64,
}

/// What one kept channel message costs besides its frame: the entry, the
/// `Arc`'s two counters, and its place in the order (twice: a place whose
/// entry left by another way waits, at most as many as the live ones).
pub const CHANNEL_ENTRY_COST: usize =
    size_of::<Entry>() + 2 * size_of::<usize>() + 2 * size_of::<Placed>();

/// What a channel costs besides its name, counted in the history's bytes
/// while no client follows it (a followed one is the subscribers' cost):
/// its map slot (twice, for the map's spare room) and its record, the
/// name's `Arc`, and its place among the vacant (twice, for the places
/// left stale).
pub const CHANNEL_COST: usize = 2 * size_of::<(Arc<str>, Box<Channel>)>()
    + size_of::<Channel>()
    + 2 * size_of::<usize>()
    + 2 * size_of::<(Arc<str>, u64)>();

/// Places of left entries tolerated beyond the live ones before the order
/// is swept.
const STALE_SLACK: usize = 64;

/// A channel's stream as it crosses a hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub name: Arc<str>,
    pub last: u64,
    pub followed: bool,
    /// Oldest first: each entry's age and frame, the last one at `last`.
    pub entries: Vec<(Duration, Arc<[u8]>)>,
}

/// Every channel's stream as it crosses a hand-over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsState {
    pub floor: u64,
    pub channels: Vec<ChannelState>,
}

#[derive(Debug, Default)]
pub struct ChannelStreams {
    /// Each record boxed: the map's spare room (up to half of it) then
    /// costs a name and a pointer a slot, not the whole record.
    channels: HashMap<Arc<str>, Box<Channel>>,
    order: VecDeque<Placed>,
    /// Places in `order` whose entry already left by another way (the
    /// channel's own size, a gap): skipped at the front, swept when they
    /// outnumber the live ones.
    stale: usize,
    entries: usize,
    bytes: usize,
    /// The highest last offset of a forgotten channel.
    floor: u64,
    subscriptions: usize,
    subscribed: usize,
    /// Channels taken over with neither entry nor subscriber, by when they
    /// may be forgotten, in that order.
    pins: VecDeque<(Arc<str>, Instant)>,
    /// The channels held without a subscriber, in the order they came to
    /// be so, each with its mark: the first whose mark is still its own
    /// is the one to forget when a new channel needs room. Places whose
    /// channel was joined or forgotten since are skipped, and swept when
    /// they outnumber the channels.
    vacant: VecDeque<(Arc<str>, u64)>,
    vacant_marks: u64,
    /// The channels the map may hold (`--max-channels`): past it a new one
    /// takes the place of a vacant one, or is refused.
    max: Option<usize>,
    /// Redis numbers the channels (`--redis`): a channel this process does
    /// not follow may have had messages it never saw, so no resume of it
    /// is recovered, not even at its last offset.
    numbered_elsewhere: bool,
}

impl ChannelStreams {
    /// Entries kept, every channel together.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Frames, entries and the channels nobody follows.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Channels in the map: with a subscriber, an entry or a pin.
    pub fn known(&self) -> usize {
        self.channels.len()
    }

    /// Bounds the channels held, `--max-channels`.
    pub fn set_max(&mut self, max: usize) {
        self.max = Some(max);
    }

    /// Whether `channel` is held, or may be: when the map is full, the
    /// channels held without a subscriber are forgotten to make room, the
    /// one left longest ago first (with their kept messages: a resume of
    /// one is `too_old` from then on, the floor sees to it). False when
    /// every channel held has a subscriber: the caller refuses the new one.
    pub fn make_room(&mut self, channel: &str) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        if self.channels.contains_key(channel) {
            return true;
        }
        while self.channels.len() >= max {
            if !self.forget_vacant() {
                return false;
            }
        }
        true
    }

    /// Forgets the channel without a subscriber that has been so the
    /// longest. Returns whether there was one.
    fn forget_vacant(&mut self) -> bool {
        while let Some((name, mark)) = self.vacant.pop_front() {
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            if ch.vacant_mark != mark {
                continue;
            }
            let dropped = ch.entries.len();
            let freed: usize = ch.entries.drain(..).map(|e| entry_cost(&e.frame)).sum();
            ch.pinned_until = None;
            self.left_otherwise(dropped, freed);
            self.forget_if_idle(&name);
            return true;
        }
        false
    }

    /// `name`, held without a subscriber, takes its place among the vacant
    /// (once: a channel already there keeps its place).
    fn mark_vacant(&mut self, name: &Arc<str>) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        if ch.subscribers > 0 || ch.vacant_mark != 0 {
            return;
        }
        self.vacant_marks += 1;
        ch.vacant_mark = self.vacant_marks;
        self.vacant.push_back((Arc::clone(name), self.vacant_marks));
        if self.vacant.len() > 2 * self.channels.len() + STALE_SLACK {
            let channels = &self.channels;
            self.vacant
                .retain(|(name, mark)| channels.get(name).is_some_and(|c| c.vacant_mark == *mark));
            if self.vacant.capacity() > 4 * self.vacant.len() + 64 {
                self.vacant.shrink_to(2 * self.vacant.len());
            }
        }
    }

    /// Numbers `channel`'s next message, keeps its frame (up to `capacity`
    /// per channel).
    pub fn sequence(
        &mut self,
        channel: &str,
        frame: impl FnOnce(u64) -> SharedFrame,
        now: Instant,
        capacity: usize,
    ) -> (u64, SharedFrame) {
        let name = self.name_of(channel);
        let ch = self.channels.get_mut(&name).expect("just made");
        let offset = ch.last + 1;
        ch.last = offset;
        ch.followed = true;
        let frame = frame(offset);
        self.keep(&name, offset, &frame, now, capacity);
        self.mark_vacant(&name);
        (offset, frame)
    }

    /// Keeps message `offset` of `channel`, numbered elsewhere. Not the
    /// next one (or the first this process sees of the channel): nothing
    /// before it is recovered. An offset already passed is ignored, and 0,
    /// which numbers no message.
    pub fn record(
        &mut self,
        channel: &str,
        offset: u64,
        frame: &SharedFrame,
        now: Instant,
        capacity: usize,
    ) -> bool {
        if offset == 0 {
            return false;
        }
        let name = self.name_of(channel);
        let ch = self.channels.get_mut(&name).expect("just made");
        if ch.followed && offset <= ch.last {
            return false;
        }
        if !ch.followed || offset != ch.last + 1 {
            let dropped = ch.entries.len();
            let freed: usize = ch.entries.drain(..).map(|e| entry_cost(&e.frame)).sum();
            ch.last = offset - 1;
            self.left_otherwise(dropped, freed);
        }
        let ch = self.channels.get_mut(&name).expect("still there");
        ch.last = offset;
        ch.followed = true;
        self.keep(&name, offset, frame, now, capacity);
        self.mark_vacant(&name);
        true
    }

    /// The last offset of `channel` known here: a channel not in the map
    /// stands at the floor, where it would start.
    pub fn last(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(self.floor, |c| c.last)
    }

    /// Whether every message of `channel` after `since` is kept or still
    /// to come here (the epoch and whether resume is on are the caller's):
    ///
    /// - `since` below what is kept: too old;
    /// - up to the last offset: recovered, the rest replayed;
    /// - beyond it (the client saw messages that have not reached this
    ///   process yet): recovered with nothing replayed only if the channel
    ///   is followed here, so those messages will come and can be skipped;
    ///   a channel only joined, or not known at all (it stands at the
    ///   floor), is recovered at its last offset exactly and too old past
    ///   it: this process cannot tell what it missed.
    pub fn resume(&self, channel: &str, since: u64) -> ChannelResume {
        let (last, first_since, followed) = match self.channels.get(channel) {
            Some(c) => (c.last, c.first_since(), c.followed),
            None => (self.floor, self.floor, false),
        };
        if since < first_since || (!followed && (since > last || self.numbered_elsewhere)) {
            return ChannelResume::TooOld;
        }
        ChannelResume::Recovered {
            next: since + 1,
            replayed: last.saturating_sub(since),
        }
    }

    pub fn frame(&self, channel: &str, offset: u64) -> ChannelFrame {
        let Some(c) = self.channels.get(channel) else {
            return if offset > self.floor {
                ChannelFrame::NotYet
            } else {
                ChannelFrame::Gone
            };
        };
        if offset > c.last {
            return ChannelFrame::NotYet;
        }
        let first_since = c.first_since();
        if offset <= first_since {
            return ChannelFrame::Gone;
        }
        let entry = &c.entries[(offset - first_since - 1) as usize];
        ChannelFrame::Kept(entry.frame.clone())
    }

    pub fn joined(&mut self, channel: &str) {
        let name = self.name_of(channel);
        let ch = self.channels.get_mut(&name).expect("just made");
        ch.subscribers += 1;
        ch.vacant_mark = 0;
        self.subscriptions += 1;
        if ch.subscribers == 1 {
            self.subscribed += 1;
            self.bytes -= record_cost(&name);
        }
    }

    /// A subscriber of `channel` left; one that never joined is ignored.
    pub fn left(&mut self, channel: &str) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if ch.subscribers == 0 {
            return;
        }
        ch.subscribers -= 1;
        self.subscriptions -= 1;
        if ch.subscribers == 0 {
            self.subscribed -= 1;
            self.bytes += record_cost(channel);
            self.forget_if_idle(channel);
            if let Some((name, _)) = self.channels.get_key_value(channel) {
                let name = Arc::clone(name);
                self.mark_vacant(&name);
            }
        }
    }

    pub fn subscribers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.subscribers)
    }

    /// (name, subscribers, last offset) of the channels with subscribers,
    /// sorted by name.
    pub fn list(&self) -> Vec<(Arc<str>, usize, u64)> {
        let mut list: Vec<_> = self
            .channels
            .iter()
            .filter(|(_, c)| c.subscribers > 0)
            .map(|(name, c)| (Arc::clone(name), c.subscribers, c.last))
            .collect();
        list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Channels with at least one subscriber.
    pub fn count(&self) -> usize {
        self.subscribed
    }

    /// Subscribers of every channel together.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// When the oldest entry of every channel was kept.
    pub fn oldest(&self) -> Option<Instant> {
        let placed = self.order.front()?;
        let channel = self.channels.get(&placed.channel)?;
        channel.entries.front().map(|e| e.at)
    }

    /// When the first pin runs out.
    pub fn next_unpin(&self) -> Option<Instant> {
        self.pins.front().map(|(_, until)| *until)
    }

    /// Drops the entries `ttl` old or older, and the pins run out.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .oldest()
            .is_some_and(|at| now.saturating_duration_since(at) >= ttl)
        {
            self.evict_oldest();
        }
        while self.pins.front().is_some_and(|(_, until)| *until <= now) {
            self.unpin_first();
        }
    }

    /// Drops the oldest entry of all channels. Returns whether there was
    /// one.
    pub fn evict_oldest(&mut self) -> bool {
        let Some(placed) = self.order.pop_front() else {
            return false;
        };
        let ch = self
            .channels
            .get_mut(&placed.channel)
            .expect("a live place");
        let entry = ch.entries.pop_front().expect("its entry");
        debug_assert_eq!(placed.offset, ch.first_since());
        shrink_entries(&mut ch.entries);
        self.entries -= 1;
        self.bytes -= entry_cost(&entry.frame);
        self.forget_if_idle(&placed.channel);
        self.trim_front();
        true
    }

    /// The first pin ends: its channel is forgotten if nothing else keeps
    /// it. Returns whether there was one.
    pub fn unpin_first(&mut self) -> bool {
        let Some((name, _)) = self.pins.pop_front() else {
            return false;
        };
        if let Some(ch) = self.channels.get_mut(&name) {
            ch.pinned_until = None;
            self.forget_if_idle(&name);
        }
        true
    }

    /// A new epoch: every channel's numbering starts again, nothing kept
    /// of the old one; the subscribers stay.
    pub fn restart(&mut self) {
        self.channels.retain(|_, c| c.subscribers > 0);
        for ch in self.channels.values_mut() {
            ch.last = 0;
            ch.entries = VecDeque::new();
            ch.followed = false;
            ch.pinned_until = None;
        }
        self.order = VecDeque::new();
        self.pins = VecDeque::new();
        self.vacant = VecDeque::new();
        self.stale = 0;
        self.entries = 0;
        self.bytes = 0;
        self.floor = 0;
        self.channels.shrink_to(self.channels.len() * 2);
    }

    /// The channels as another process continues them: each one's
    /// numbering and what is kept of it, with each entry's age. Every
    /// channel known goes, one only joined too: its clients were told
    /// where it stands, which may be below the floor by now.
    pub fn export(&self, now: Instant) -> ChannelsState {
        let mut channels: Vec<ChannelState> = self
            .channels
            .iter()
            .map(|(name, c)| ChannelState {
                name: Arc::clone(name),
                last: c.last,
                followed: c.followed,
                entries: c
                    .entries
                    .iter()
                    .map(|e| {
                        (
                            now.saturating_duration_since(e.at),
                            Arc::clone(e.frame.plain()),
                        )
                    })
                    .collect(),
            })
            .collect();
        channels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        ChannelsState {
            floor: self.floor,
            channels,
        }
    }

    /// Continues the channels another process exported (after `restart`
    /// for its epoch): their numbering and entries, in the order they were
    /// kept there. A channel with no entry is kept until `pin_until`, for
    /// the clients that resume it coming from the old process, then
    /// forgotten like any other. Keeps at most `capacity` per channel.
    pub fn adopt(
        &mut self,
        state: ChannelsState,
        now: Instant,
        capacity: usize,
        pin_until: Instant,
    ) {
        self.floor = self.floor.max(state.floor);
        let mut kept: Vec<(Instant, Arc<str>, u64)> = Vec::new();
        for adopted in state.channels {
            let name = self.name_of(&adopted.name);
            let ch = self.channels.get_mut(&name).expect("just made");
            ch.last = adopted.last;
            ch.followed = adopted.followed;
            // A peer that sent more entries than offsets sent nonsense:
            // keep what can be numbered.
            let room = capacity.min(usize::try_from(adopted.last).unwrap_or(usize::MAX));
            let skip = adopted.entries.len().saturating_sub(room);
            let first = adopted.last - (adopted.entries.len() - skip) as u64;
            for (i, (age, frame)) in adopted.entries.into_iter().enumerate().skip(skip) {
                let at = now.checked_sub(age).unwrap_or(now);
                let frame = SharedFrame::from(frame);
                self.bytes += entry_cost(&frame);
                self.entries += 1;
                ch.entries.push_back(Entry { at, frame });
                kept.push((at, Arc::clone(&name), first + 1 + (i - skip) as u64));
            }
            if !ch.idle() {
                self.mark_vacant(&name);
                continue;
            }
            if pin_until > now {
                ch.pinned_until = Some(pin_until);
                self.pins.push_back((Arc::clone(&name), pin_until));
                self.mark_vacant(&name);
            } else {
                self.forget_if_idle(&name);
            }
        }
        // Stable: one channel's entries stay in offset order.
        kept.sort_by_key(|(at, _, _)| *at);
        self.order.extend(
            kept.into_iter()
                .map(|(_, channel, offset)| Placed { channel, offset }),
        );
    }

    /// The map's own name for `channel`, made (standing at the floor,
    /// nobody following it) if it is not there.
    /// Redis numbers the channels from now on (see `numbered_elsewhere`).
    pub fn numbered_elsewhere(&mut self) {
        self.numbered_elsewhere = true;
    }

    /// Messages of `channel` may be missed from now on (no subscription of
    /// the process follows it, or one went to its clients without an
    /// offset): no resume of it is recovered until it is followed again,
    /// and then only from there (`record`, `follow_from`).
    pub fn unfollow(&mut self, channel: &str) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.followed = false;
        }
    }

    /// Every message of `channel` after `last` reaches this process (Redis
    /// said where the channel stood after a subscription of it was
    /// confirmed): a channel not followed until now is recovered from
    /// `last` on, and not before. Only for a channel with a subscriber (or
    /// an entry) here; one followed already is left alone, what it has not
    /// received yet is on its way.
    pub fn follow_from(&mut self, channel: &str, last: u64) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if ch.followed || last < ch.last {
            return;
        }
        let dropped = ch.entries.len();
        let freed: usize = ch.entries.drain(..).map(|e| entry_cost(&e.frame)).sum();
        ch.last = last;
        ch.followed = true;
        self.left_otherwise(dropped, freed);
    }

    fn name_of(&mut self, channel: &str) -> Arc<str> {
        if let Some((name, _)) = self.channels.get_key_value(channel) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(channel);
        self.bytes += record_cost(&name);
        self.channels
            .insert(Arc::clone(&name), Box::new(Channel::new(self.floor)));
        name
    }

    fn keep(
        &mut self,
        name: &Arc<str>,
        offset: u64,
        frame: &SharedFrame,
        now: Instant,
        capacity: usize,
    ) {
        let ch = self.channels.get_mut(name).expect("kept in a channel");
        if capacity > 0 {
            ch.entries.push_back(Entry {
                at: now,
                frame: frame.clone(),
            });
            self.entries += 1;
            self.bytes += entry_cost(frame);
            self.order.push_back(Placed {
                channel: Arc::clone(name),
                offset,
            });
        }
        let mut dropped = 0;
        let mut freed = 0;
        while ch.entries.len() > capacity {
            let oldest = ch.entries.pop_front().expect("more than capacity");
            dropped += 1;
            freed += entry_cost(&oldest.frame);
        }
        shrink_entries(&mut ch.entries);
        self.left_otherwise(dropped, freed);
        self.forget_if_idle(name);
    }

    /// `dropped` entries (`freed` bytes) left other than as the oldest of
    /// all: their places in the order are stale now.
    fn left_otherwise(&mut self, dropped: usize, freed: usize) {
        if dropped == 0 {
            return;
        }
        self.entries -= dropped;
        self.bytes -= freed;
        self.stale += dropped;
        self.trim_front();
        if self.stale > self.entries + STALE_SLACK {
            let channels = &self.channels;
            self.order.retain(|p| is_live(channels, p));
            self.stale = 0;
            shrink_order(&mut self.order);
        }
    }

    /// Pops the places at the front whose entry left already, so the front
    /// is always the oldest entry kept.
    fn trim_front(&mut self) {
        while let Some(front) = self.order.front() {
            if is_live(&self.channels, front) {
                break;
            }
            self.order.pop_front();
            self.stale -= 1;
        }
        shrink_order(&mut self.order);
    }

    fn forget_if_idle(&mut self, name: &str) {
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        if !ch.idle() {
            return;
        }
        self.floor = self.floor.max(ch.last);
        self.bytes -= record_cost(name);
        self.channels.remove(name);
        if self.channels.capacity() > 4 * self.channels.len() + 64 {
            self.channels.shrink_to(2 * self.channels.len());
        }
    }

    #[cfg(test)]
    pub fn places(&self) -> usize {
        self.order.len()
    }

    #[cfg(test)]
    pub fn vacant_places(&self) -> usize {
        self.vacant.len()
    }
}

fn is_live(channels: &HashMap<Arc<str>, Box<Channel>>, placed: &Placed) -> bool {
    channels
        .get(&placed.channel)
        .is_some_and(|c| placed.offset > c.first_since() && placed.offset <= c.last)
}

fn entry_cost(frame: &SharedFrame) -> usize {
    frame.bytes() + CHANNEL_ENTRY_COST
}

fn record_cost(name: &str) -> usize {
    name.len() + CHANNEL_COST
}

/// Gives back the room of a deque that emptied to a quarter of it.
fn shrink_entries(entries: &mut VecDeque<Entry>) {
    if entries.capacity() > 4 * entries.len() + 8 {
        entries.shrink_to(2 * entries.len());
    }
}

fn shrink_order(order: &mut VecDeque<Placed>) {
    if order.capacity() > 4 * order.len() + 64 {
        order.shrink_to(2 * order.len());
    }
}

#[cfg(test)]
mod tests;
