//! The worker's channel index: each channel's subscribers among this
//! worker's connections, and each connection's channels. A message to a
//! channel visits its subscribers only, so its cost grows with them, not
//! with the worker's connections (`visited` counts the connections
//! deliveries visited, for the tests that prove it).
//!
//! Kept compact, since every subscription of every connection is here: a
//! channel's subscribers are a vector of 32-bit keys; a connection's
//! channels are a boxed slice of (channel, place in its subscribers)
//! pairs, 8 bytes each, in a table by connection key, so leaving is a
//! swap-remove, not a search through a large channel. A connection that
//! joined nothing costs one empty slot of that table (16 bytes), and only
//! up to the highest key that ever joined a channel.
//!
//! Each channel also keeps the last offset of it this worker handed out
//! (`delivered`): a message numbered before a subscriber's `subscribed`
//! answer is not delivered to it, one numbered after always is, and a
//! replay of the channel runs on to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::replay::Step;
use crate::app::channel_name::USER_PREFIX;
use crate::app::history::{Cursor, History, Lost};
use crate::ids::ConnKey;

/// A channel with subscribers on this worker: its place in the index,
/// valid while it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId(u32);

#[derive(Debug, Default)]
pub struct Channels {
    by_name: HashMap<Arc<str>, ChannelId>,
    slots: Vec<Slot>,
    /// Slots of channels whose last subscriber here left.
    free: Vec<u32>,
    /// Each connection's subscriptions, by connection key.
    joined: Vec<Option<Box<[Sub]>>>,
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

#[derive(Debug, Clone, Copy)]
struct Sub {
    channel: ChannelId,
    /// Its place in the channel's `subscribers`.
    index: u32,
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
        self.subs(key).iter().any(|s| s.channel == id).then_some(id)
    }

    /// The channels `key` joined that count against
    /// `--max-channels-per-client` (its `user:` channel does not).
    pub fn counted(&self, key: ConnKey) -> usize {
        self.subs(key)
            .iter()
            .filter(|s| !self.is_user_channel(s.channel))
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
        let slot = &mut self.slots[id.0 as usize];
        let sub = Sub {
            channel: id,
            index: slot.subscribers.len() as u32,
        };
        slot.subscribers.push(key.0 as u32);
        let place = self.place(key);
        let mut subs = place.take().map(Vec::from).unwrap_or_default();
        subs.push(sub);
        *place = Some(subs.into_boxed_slice());
        self.subscriptions += 1;
        id
    }

    /// Connection `key` leaves channel `id`; returns the channel's name if
    /// it had joined it.
    pub fn leave(&mut self, key: ConnKey, id: ChannelId) -> Option<Arc<str>> {
        let place = self.joined.get_mut(key.0)?;
        let subs = place.as_deref()?;
        let at = subs.iter().position(|s| s.channel == id)?;
        let index = subs[at].index;
        *place = match subs.len() {
            1 => None,
            _ => Some(
                subs.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != at)
                    .map(|(_, s)| *s)
                    .collect(),
            ),
        };
        self.subscriptions -= 1;
        if !self.replaying.is_empty() {
            self.replaying.remove(&(key.0 as u32, id));
        }
        self.unlist(id, index)
    }

    /// Connection `key` leaves every channel it joined; `left` is told
    /// each one's name.
    pub fn leave_all(&mut self, key: ConnKey, mut left: impl FnMut(&str)) {
        let Some(subs) = self.joined.get_mut(key.0).and_then(Option::take) else {
            return;
        };
        self.subscriptions -= subs.len();
        for sub in subs.iter() {
            if !self.replaying.is_empty() {
                self.replaying.remove(&(key.0 as u32, sub.channel));
            }
            if let Some(name) = self.unlist(sub.channel, sub.index) {
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
    /// handed out of the channel, within `step` (one frame at least); the
    /// cursor moves past them. Returns the last offset the worker handed
    /// out.
    pub fn replay(
        &self,
        history: &History,
        id: ChannelId,
        cursor: &mut Cursor,
        step: Step,
        out: &mut Vec<Arc<[u8]>>,
    ) -> Result<u64, Lost> {
        let Some((slot, name)) = self.slot(id).and_then(|s| Some((s, s.name.as_ref()?))) else {
            // Nobody here follows the channel any more: nothing to send.
            return Ok(cursor.next.saturating_sub(1));
        };
        let through = slot.delivered;
        let mut bytes = 0;
        while cursor.next <= through && out.len() < step.max_frames {
            let Some(frame) = history.channel_frame(name, cursor.next)? else {
                break;
            };
            if bytes > 0 && bytes + frame.len() > step.max_bytes {
                break;
            }
            bytes += frame.len();
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

    fn subs(&self, key: ConnKey) -> &[Sub] {
        self.joined
            .get(key.0)
            .and_then(Option::as_deref)
            .unwrap_or(&[])
    }

    fn is_user_channel(&self, id: ChannelId) -> bool {
        self.name(id)
            .is_some_and(|name| name.starts_with(USER_PREFIX))
    }

    fn place(&mut self, key: ConnKey) -> &mut Option<Box<[Sub]>> {
        if self.joined.len() <= key.0 {
            self.joined.resize_with(key.0 + 1, || None);
        }
        &mut self.joined[key.0]
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

    /// Takes the subscriber at `index` out of channel `id`'s list (the last
    /// one moves into its place); a channel left with none is closed.
    /// Returns the channel's name.
    fn unlist(&mut self, id: ChannelId, index: u32) -> Option<Arc<str>> {
        let slot = self.slots.get_mut(id.0 as usize)?;
        slot.subscribers.swap_remove(index as usize);
        if let Some(&moved) = slot.subscribers.get(index as usize) {
            let subs = self
                .joined
                .get_mut(moved as usize)
                .and_then(Option::as_deref_mut)
                .unwrap_or(&mut []);
            if let Some(sub) = subs.iter_mut().find(|s| s.channel == id) {
                sub.index = index;
            }
        }
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
}
