//! Stand-in for the channel streams of the `channel-history` branch, with
//! its API as the design of issue 23 gives it: per-channel numbering, the
//! last `--history-size` frames of each channel, resume lookup and the
//! process-wide subscriber counts. No byte bound, no age, no hand-over:
//! replaced whole when that branch is merged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::history::{History, Lost};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelResume {
    Recovered { next: u64, replayed: u64 },
    TooOld,
    UnknownEpoch,
}

impl ChannelResume {
    pub fn label(&self) -> &'static str {
        match self {
            ChannelResume::Recovered { .. } => "recovered",
            ChannelResume::TooOld => "too_old",
            ChannelResume::UnknownEpoch => "unknown_epoch",
        }
    }
}

#[derive(Debug, Default)]
pub struct ChannelStreams {
    channels: HashMap<Arc<str>, Channel>,
    floor: u64,
}

#[derive(Debug, Default)]
struct Channel {
    last: u64,
    /// The smallest `since` that can be recovered.
    first_since: u64,
    entries: VecDeque<Arc<[u8]>>,
    subscribers: usize,
}

impl History {
    fn channel_entry(&mut self, channel: &str) -> &mut Channel {
        let floor = self.channels.floor;
        self.channels
            .channels
            .entry(channel.into())
            .or_insert_with(|| Channel {
                last: floor,
                first_since: floor,
                ..Channel::default()
            })
    }

    pub fn channel_sequence(
        &mut self,
        channel: &str,
        frame: impl FnOnce(u64) -> Arc<[u8]>,
        _now: Instant,
    ) -> (u64, Arc<[u8]>) {
        let capacity = self.capacity();
        let entry = self.channel_entry(channel);
        let offset = entry.last + 1;
        let frame = frame(offset);
        entry.last = offset;
        entry.entries.push_back(Arc::clone(&frame));
        while entry.entries.len() > capacity {
            entry.entries.pop_front();
            entry.first_since += 1;
        }
        if capacity == 0 {
            entry.first_since = offset;
        }
        (offset, frame)
    }

    pub fn channel_record(
        &mut self,
        channel: &str,
        offset: u64,
        frame: &Arc<[u8]>,
        now: Instant,
    ) -> bool {
        let entry = self.channel_entry(channel);
        if offset <= entry.last {
            return false;
        }
        if offset != entry.last + 1 {
            entry.entries.clear();
            entry.last = offset - 1;
            entry.first_since = offset - 1;
        }
        self.channel_sequence(channel, |_| Arc::clone(frame), now);
        true
    }

    pub fn channel_last(&self, channel: &str) -> u64 {
        self.channels
            .channels
            .get(channel)
            .map_or(self.channels.floor, |c| c.last)
    }

    pub fn channel_resume(&self, channel: &str, since: u64, epoch: &str) -> ChannelResume {
        if epoch != self.epoch() {
            return ChannelResume::UnknownEpoch;
        }
        let (last, first_since) = self
            .channels
            .channels
            .get(channel)
            .map_or((self.channels.floor, self.channels.floor), |c| {
                (c.last, c.first_since)
            });
        if self.capacity() == 0 || since < first_since {
            return ChannelResume::TooOld;
        }
        ChannelResume::Recovered {
            next: since + 1,
            replayed: last.saturating_sub(since),
        }
    }

    pub fn channel_frame(&self, channel: &str, offset: u64) -> Result<Option<Arc<[u8]>>, Lost> {
        let Some(c) = self.channels.channels.get(channel) else {
            return Err(Lost);
        };
        if offset > c.last {
            return Ok(None);
        }
        let first = c.last + 1 - c.entries.len() as u64;
        match offset.checked_sub(first) {
            Some(index) => Ok(Some(Arc::clone(&c.entries[index as usize]))),
            None => Err(Lost),
        }
    }

    pub fn channel_joined(&mut self, channel: &str) {
        self.channel_entry(channel).subscribers += 1;
    }

    pub fn channel_left(&mut self, channel: &str) {
        let Some(c) = self.channels.channels.get_mut(channel) else {
            return;
        };
        c.subscribers = c.subscribers.saturating_sub(1);
        if c.subscribers == 0 && c.entries.is_empty() {
            self.channels.floor = self.channels.floor.max(c.last);
            self.channels.channels.remove(channel);
        }
    }

    pub fn channel_subscribers(&self, channel: &str) -> usize {
        self.channels
            .channels
            .get(channel)
            .map_or(0, |c| c.subscribers)
    }

    pub fn channel_list(&self) -> Vec<(Arc<str>, usize, u64)> {
        let mut list: Vec<_> = self
            .channels
            .channels
            .iter()
            .filter(|(_, c)| c.subscribers > 0)
            .map(|(name, c)| (Arc::clone(name), c.subscribers, c.last))
            .collect();
        list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        list
    }

    pub fn channel_count(&self) -> usize {
        self.channels
            .channels
            .values()
            .filter(|c| c.subscribers > 0)
            .count()
    }

    pub fn subscription_count(&self) -> usize {
        self.channels.channels.values().map(|c| c.subscribers).sum()
    }
}
