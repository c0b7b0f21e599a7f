//! The worker's channel index: each channel's subscribers among this
//! worker's connections, and each connection's channels. A message to a
//! channel visits its subscribers only, so its cost grows with them, not
//! with the worker's connections (`visited` counts the connections
//! deliveries visited, for the tests that prove it).
//!
//! Kept compact, since every subscription of every connection is here: a
//! channel's subscribers are a vector of 32-bit keys; a connection's
//! channels are up to three 32-bit ids held inline in a table by
//! connection key (12 bytes a connection, no allocation), and all of them
//! in a map beside for a connection that joined more. Leaving a channel
//! looks its subscriber up in the channel's vector (a scan of 32-bit keys,
//! at most the worker's connections) and swap-removes it. The table grows
//! only to the highest key that ever joined a channel, a thousand slots
//! at a time.
//!
//! Each channel also keeps the last offset of it this worker handed out
//! (`delivered`): a message numbered before a subscriber's `subscribed`
//! answer is not delivered to it, one numbered after always is, and a
//! replay of the channel runs on to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::app::channel_name::USER_PREFIX;
use crate::app::history::{Cursor, History, Lost};
use crate::ids::ConnKey;
use crate::proto::shared_frame::SharedFrame;

/// A channel with subscribers on this worker: its place in the index,
/// valid while it has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChannelId(u32);

/// An inline place of `Few` that holds no channel. Slots never number
/// this high (nor `MANY`): each is a channel with a subscriber here.
const NONE: ChannelId = ChannelId(u32::MAX);
/// In `Few`'s first place: the connection's channels are in
/// `Joined::many`.
const MANY: ChannelId = ChannelId(u32::MAX - 1);

/// A connection's channels held inline; more go to `Joined::many`.
const INLINE: usize = 3;

/// How many slots the table by connection key grows by at a time.
const TABLE_STEP: usize = 1024;

#[derive(Debug, Default)]
pub struct Channels {
    by_name: HashMap<Arc<str>, ChannelId>,
    slots: Vec<Slot>,
    /// Slots of channels whose last subscriber here left.
    free: Vec<u32>,
    joined: Joined,
    /// Subscriptions whose resume is being replayed: live messages of the
    /// channel skip them (the replay sends them from the history).
    replaying: HashSet<(u32, ChannelId)>,
    subscriptions: usize,
    visited: u64,
}

#[derive(Debug, Default)]
struct Slot {
    name: Option<Arc<str>>,
    subscribers: Vec<u32>,
    delivered: u64,
}

/// Each connection's channels, by connection key.
#[derive(Debug, Default)]
struct Joined {
    few: Vec<Few>,
    /// Every channel of a connection that joined more than `INLINE`.
    many: HashMap<u32, Vec<ChannelId>>,
}

/// A connection's channels: up to `INLINE` ids first, the rest of the
/// places `NONE`; or `MANY` first, the ids being in `Joined::many`.
#[derive(Debug, Clone, Copy)]
struct Few {
    ids: [ChannelId; INLINE],
}

impl Few {
    const EMPTY: Few = Few {
        ids: [NONE; INLINE],
    };

    const SPILLED: Few = {
        let mut ids = [NONE; INLINE];
        ids[0] = MANY;
        Few { ids }
    };

    fn spilled(&self) -> bool {
        self.ids[0] == MANY
    }

    /// The channels of a connection whose channels are inline.
    fn inline(&self) -> &[ChannelId] {
        let len = self.ids.iter().position(|&id| id == NONE).unwrap_or(INLINE);
        &self.ids[..len]
    }
}

impl Joined {
    fn of(&self, key: ConnKey) -> &[ChannelId] {
        match self.few.get(key.0) {
            Some(few) if few.spilled() => self.many.get(&(key.0 as u32)).map_or(&[], Vec::as_slice),
            Some(few) => few.inline(),
            None => &[],
        }
    }

    fn add(&mut self, key: ConnKey, id: ChannelId) {
        if self.few.len() <= key.0 {
            let wanted = (key.0 + 1).next_multiple_of(TABLE_STEP);
            self.few.reserve_exact(wanted - self.few.len());
            self.few.resize(wanted, Few::EMPTY);
        }
        let few = &mut self.few[key.0];
        if !few.spilled() {
            let len = few.inline().len();
            if len < INLINE {
                few.ids[len] = id;
                return;
            }
        }
        let many = self.many.entry(key.0 as u32).or_default();
        if !few.spilled() {
            many.extend_from_slice(&few.ids);
            *few = Few::SPILLED;
        }
        many.push(id);
    }

    /// Takes `id` out of `key`'s channels; returns whether it was there.
    fn remove(&mut self, key: ConnKey, id: ChannelId) -> bool {
        let Some(few) = self.few.get_mut(key.0) else {
            return false;
        };
        if !few.spilled() {
            let len = few.inline().len();
            let Some(at) = few.ids[..len].iter().position(|&c| c == id) else {
                return false;
            };
            few.ids.copy_within(at + 1..len, at);
            few.ids[len - 1] = NONE;
            return true;
        }
        let conn = key.0 as u32;
        let Some(many) = self.many.get_mut(&conn) else {
            return false;
        };
        let Some(at) = many.iter().position(|&c| c == id) else {
            return false;
        };
        many.swap_remove(at);
        if many.len() == INLINE {
            few.ids.copy_from_slice(many);
            self.many.remove(&conn);
        }
        true
    }

    /// Takes all of `key`'s channels into `out`.
    fn take(&mut self, key: ConnKey, out: &mut Vec<ChannelId>) {
        let Some(few) = self.few.get_mut(key.0) else {
            return;
        };
        let was = std::mem::replace(few, Few::EMPTY);
        if !was.spilled() {
            out.extend_from_slice(was.inline());
        } else if let Some(many) = self.many.remove(&(key.0 as u32)) {
            out.extend(many);
        }
    }
}

/// The subscribers a message of a channel goes to.
pub struct Recipients<'a> {
    subscribers: std::slice::Iter<'a, u32>,
    channel: ChannelId,
    replaying: &'a HashSet<(u32, ChannelId)>,
}

impl Iterator for Recipients<'_> {
    type Item = ConnKey;

    fn next(&mut self) -> Option<ConnKey> {
        loop {
            let key = *self.subscribers.next()?;
            if self.replaying.is_empty() || !self.replaying.contains(&(key, self.channel)) {
                return Some(ConnKey(key as usize));
            }
        }
    }
}

impl Channels {
    /// The channel `name`, if a connection of this worker joined it.
    pub fn id(&self, name: &str) -> Option<ChannelId> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: ChannelId) -> Option<&Arc<str>> {
        self.slot(id).and_then(|slot| slot.name.as_ref())
    }

    /// The last offset of the channel this worker handed out.
    pub fn delivered(&self, id: ChannelId) -> u64 {
        self.slot(id).map_or(0, |slot| slot.delivered)
    }

    /// Whether connection `key` joined `name`.
    pub fn joined(&self, key: ConnKey, name: &str) -> Option<ChannelId> {
        let id = self.id(name)?;
        self.joined.of(key).contains(&id).then_some(id)
    }

    /// The channels `key` joined that count against
    /// `--max-channels-per-client` (its `user:` channel does not).
    pub fn counted(&self, key: ConnKey) -> usize {
        self.joined
            .of(key)
            .iter()
            .filter(|id| !self.is_user_channel(**id))
            .count()
    }

    /// Connection `key` joins `name` (not joined yet). A channel new to
    /// this worker starts from `last`, its last offset in the process at
    /// this moment (read under the stream's lock): what was numbered up to
    /// it is not for this subscriber.
    pub fn join(&mut self, key: ConnKey, name: &str, last: u64) -> ChannelId {
        let id = match self.id(name) {
            Some(id) => id,
            None => self.open(name, last),
        };
        self.slots[id.0 as usize].subscribers.push(key.0 as u32);
        self.joined.add(key, id);
        self.subscriptions += 1;
        id
    }

    /// Connection `key` leaves channel `id`; returns the channel's name if
    /// it had joined it.
    pub fn leave(&mut self, key: ConnKey, id: ChannelId) -> Option<Arc<str>> {
        if !self.joined.remove(key, id) {
            return None;
        }
        self.subscriptions -= 1;
        if !self.replaying.is_empty() {
            self.replaying.remove(&(key.0 as u32, id));
        }
        self.unlist(id, key)
    }

    /// Connection `key` leaves every channel it joined; `left` is told
    /// each one's name.
    pub fn leave_all(&mut self, key: ConnKey, mut left: impl FnMut(&str)) {
        let mut ids = Vec::new();
        self.joined.take(key, &mut ids);
        self.subscriptions -= ids.len();
        for id in ids {
            if !self.replaying.is_empty() {
                self.replaying.remove(&(key.0 as u32, id));
            }
            if let Some(name) = self.unlist(id, key) {
                left(&name);
            }
        }
    }

    /// A message of channel `name` (`offset`: its number, if it has one):
    /// the subscribers it goes to, or `None` if nobody here joined the
    /// channel or it was numbered before every subscriber here joined.
    pub fn deliver(&mut self, name: &str, offset: Option<u64>) -> Option<Recipients<'_>> {
        let id = self.id(name)?;
        let slot = &mut self.slots[id.0 as usize];
        if let Some(offset) = offset {
            if offset <= slot.delivered {
                return None;
            }
            slot.delivered = offset;
        }
        self.visited += slot.subscribers.len() as u64;
        Some(Recipients {
            subscribers: slot.subscribers.iter(),
            channel: id,
            replaying: &self.replaying,
        })
    }

    /// Every channel is numbered from 1 again (Redis lost its data: a new
    /// epoch): the offsets handed out here before mean nothing now.
    pub fn renumbered(&mut self) {
        for slot in &mut self.slots {
            slot.delivered = 0;
        }
    }

    /// Messages of channel `id` up to `offset` are not for its subscribers
    /// here: they were numbered before this worker followed the channel
    /// on Redis, and its subscribers are told they stand at `offset`.
    pub fn skip_to(&mut self, id: ChannelId, offset: u64) {
        if let Some(slot) = self.slots.get_mut(id.0 as usize) {
            slot.delivered = slot.delivered.max(offset);
        }
    }

    /// Whether `key`'s subscription to `id` is being replayed (live
    /// messages of the channel skip it meanwhile).
    pub fn set_replaying(&mut self, key: ConnKey, id: ChannelId, replaying: bool) {
        if replaying {
            self.replaying.insert((key.0 as u32, id));
        } else {
            self.replaying.remove(&(key.0 as u32, id));
        }
    }

    /// The next step of a replay of channel `id` standing at `cursor`:
    /// its frames from the history, oldest first, up to what this worker
    /// handed out of the channel, at most `max_frames` of them and
    /// `max_bytes` (one frame at least); the cursor moves past them.
    /// Returns the last offset the worker handed out.
    pub fn replay(
        &self,
        history: &History,
        id: ChannelId,
        cursor: &mut Cursor,
        (max_bytes, max_frames): (usize, usize),
        out: &mut Vec<SharedFrame>,
    ) -> Result<u64, Lost> {
        let Some((slot, name)) = self.slot(id).and_then(|s| Some((s, s.name.as_ref()?))) else {
            // Nobody here follows the channel any more: nothing to send.
            return Ok(cursor.next.saturating_sub(1));
        };
        let through = slot.delivered;
        let mut bytes = 0;
        while cursor.next <= through && out.len() < max_frames {
            let Some(frame) = history.channel_frame(name, cursor.next)? else {
                break;
            };
            let len = frame.plain().len();
            if bytes > 0 && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(frame);
            cursor.next += 1;
        }
        Ok(through)
    }

    /// Connections visited by deliveries so far.
    #[cfg(test)]
    pub fn visited(&self) -> u64 {
        self.visited
    }

    /// Channels with a subscriber on this worker.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Subscriptions of this worker's connections.
    #[cfg(test)]
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    fn slot(&self, id: ChannelId) -> Option<&Slot> {
        self.slots.get(id.0 as usize)
    }

    fn is_user_channel(&self, id: ChannelId) -> bool {
        self.name(id)
            .is_some_and(|name| name.starts_with(USER_PREFIX))
    }

    fn open(&mut self, name: &str, last: u64) -> ChannelId {
        let name: Arc<str> = name.into();
        let slot = Slot {
            name: Some(Arc::clone(&name)),
            subscribers: Vec::new(),
            delivered: last,
        };
        let id = match self.free.pop() {
            Some(free) => {
                self.slots[free as usize] = slot;
                ChannelId(free)
            }
            None => {
                self.slots.push(slot);
                ChannelId(self.slots.len() as u32 - 1)
            }
        };
        self.by_name.insert(name, id);
        id
    }

    /// Takes `key` out of channel `id`'s subscribers (the last one moves
    /// into its place); a channel left with none is closed. Returns the
    /// channel's name.
    fn unlist(&mut self, id: ChannelId, key: ConnKey) -> Option<Arc<str>> {
        let slot = self.slots.get_mut(id.0 as usize)?;
        let at = slot.subscribers.iter().position(|&k| k as usize == key.0)?;
        slot.subscribers.swap_remove(at);
        let name = slot.name.clone();
        if slot.subscribers.is_empty() {
            if let Some(name) = slot.name.take() {
                self.by_name.remove(&name);
            }
            slot.subscribers = Vec::new();
            self.free.push(id.0);
        } else if slot.subscribers.len() < slot.subscribers.capacity() / 4 {
            slot.subscribers.shrink_to(slot.subscribers.len() * 2);
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(recipients: Option<Recipients<'_>>) -> Vec<usize> {
        let mut keys: Vec<usize> = recipients.into_iter().flatten().map(|k| k.0).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_message_visits_the_subscribers_of_its_channel_only() {
        let mut channels = Channels::default();
        for key in 0..1_000 {
            channels.join(ConnKey(key), "crowd", 0);
        }
        for key in [3, 500, 999] {
            channels.join(ConnKey(key), "few", 0);
        }
        let before = channels.visited();
        assert_eq!(keys(channels.deliver("few", Some(1))), [3, 500, 999]);
        assert_eq!(channels.visited() - before, 3);
        assert!(channels.deliver("nobody", Some(1)).is_none());
        assert_eq!(channels.visited() - before, 3);
        assert_eq!((channels.len(), channels.subscriptions()), (2, 1_003));
    }

    #[test]
    fn what_was_numbered_before_a_channel_opened_here_is_not_delivered() {
        let mut channels = Channels::default();
        let id = channels.join(ConnKey(1), "c", 5);
        assert_eq!(channels.delivered(id), 5);
        assert!(channels.deliver("c", Some(5)).is_none());
        assert_eq!(keys(channels.deliver("c", Some(6))), [1]);
        assert!(channels.deliver("c", Some(6)).is_none(), "never twice");
        assert_eq!(keys(channels.deliver("c", None)), [1], "unnumbered goes");
        assert_eq!(channels.delivered(id), 6);
    }

    #[test]
    fn leaving_keeps_every_other_subscription_findable() {
        let mut channels = Channels::default();
        for key in 0..6 {
            channels.join(ConnKey(key), "a", 0);
            channels.join(ConnKey(key), "b", 0);
        }
        let a = channels.id("a").unwrap();
        for key in [0, 3, 5, 1] {
            assert_eq!(channels.leave(ConnKey(key), a).as_deref(), Some("a"));
            assert_eq!(channels.leave(ConnKey(key), a), None, "not twice");
        }
        assert_eq!(keys(channels.deliver("a", Some(1))), [2, 4]);
        assert_eq!(channels.joined(ConnKey(2), "a"), Some(a));
        assert_eq!(channels.joined(ConnKey(3), "a"), None);
        assert_eq!(keys(channels.deliver("b", Some(1))), [0, 1, 2, 3, 4, 5]);
        let mut left = Vec::new();
        channels.leave_all(ConnKey(2), |name| left.push(name.to_owned()));
        left.sort();
        assert_eq!(left, ["a", "b"]);
        channels.leave(ConnKey(4), a);
        assert_eq!(channels.id("a"), None, "closed with its last subscriber");
        assert_eq!((channels.len(), channels.subscriptions()), (1, 5));
        let again = channels.join(ConnKey(9), "z", 0);
        assert_eq!(again, a, "its slot is reused");
        assert_eq!(keys(channels.deliver("z", Some(1))), [9]);
    }

    #[test]
    fn user_channels_do_not_count_and_replaying_subscribers_are_skipped() {
        let mut channels = Channels::default();
        channels.join(ConnKey(1), "user:ann", 0);
        let news = channels.join(ConnKey(1), "news", 0);
        channels.join(ConnKey(2), "news", 0);
        assert_eq!(channels.counted(ConnKey(1)), 1);
        channels.set_replaying(ConnKey(1), news, true);
        assert_eq!(keys(channels.deliver("news", Some(1))), [2]);
        assert_eq!(channels.visited(), 2, "visited, if skipped");
        channels.set_replaying(ConnKey(1), news, false);
        assert_eq!(keys(channels.deliver("news", Some(2))), [1, 2]);
    }

    #[test]
    fn inline_channels_survive_leaves_and_spilling() {
        let mut channels = Channels::default();
        for name in ["a", "b", "c"] {
            channels.join(ConnKey(2), name, 0);
        }
        let b = channels.id("b").unwrap();
        assert!(channels.leave(ConnKey(2), b).is_some());
        assert!(channels.leave(ConnKey(2), b).is_none(), "left already");
        assert_eq!(channels.counted(ConnKey(2)), 2);
        channels.join(ConnKey(2), "d", 0);
        assert!(channels.joined.many.is_empty(), "three fit inline");
        channels.join(ConnKey(2), "e", 0);
        assert_eq!(channels.counted(ConnKey(2)), 4);
        assert_eq!(channels.joined.many.len(), 1);
        let mut left = Vec::new();
        channels.leave_all(ConnKey(2), |name| left.push(name.to_owned()));
        left.sort();
        assert_eq!(left, ["a", "c", "d", "e"]);
        assert!(channels.joined.many.is_empty());
        channels.join(ConnKey(2), "f", 0);
        assert_eq!(channels.counted(ConnKey(2)), 1, "it starts over empty");
        assert!(channels.joined(ConnKey(2), "f").is_some());
    }

    #[test]
    fn a_connection_holds_three_channels_inline_and_more_beside() {
        assert_eq!(std::mem::size_of::<Few>(), 12, "12 bytes a connection");
        let mut channels = Channels::default();
        let names: Vec<String> = (0..6).map(|n| format!("c{n}")).collect();
        for name in &names {
            channels.join(ConnKey(7), name, 0);
        }
        channels.join(ConnKey(8), "c0", 0);
        assert_eq!(channels.counted(ConnKey(7)), 6);
        assert_eq!(channels.joined.many.len(), 1);
        for name in &names[..3] {
            let id = channels.id(name).unwrap();
            assert!(channels.leave(ConnKey(7), id).is_some(), "{name}");
        }
        assert!(channels.joined.many.is_empty(), "back inline at three");
        assert_eq!(channels.joined(ConnKey(7), "c0"), None);
        for name in &names[3..] {
            assert!(channels.joined(ConnKey(7), name).is_some(), "{name}");
        }
        assert_eq!(keys(channels.deliver("c0", Some(1))), [8]);
        let mut left = Vec::new();
        channels.leave_all(ConnKey(7), |name| left.push(name.to_owned()));
        left.sort();
        assert_eq!(left, ["c3", "c4", "c5"]);
        assert_eq!((channels.len(), channels.subscriptions()), (1, 1));
        assert_eq!(
            channels.joined.few.len(),
            TABLE_STEP,
            "grown a step at a time"
        );
    }
}
