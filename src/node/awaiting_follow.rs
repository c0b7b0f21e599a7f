//! With Redis, the `subscribe` answers this worker holds back until its
//! subscription follows the channel: before Redis confirms it, a message
//! of the channel published elsewhere would not reach this worker, so a
//! `subscribed` answered at once could be followed by a silent loss, and a
//! resume could only be answered `too_old`. Each waits for Redis's word on
//! where the channel stands (or its loss), at most `STALLED_AFTER`; the
//! client then gets its answer and everything after it.
//!
//! Bounded by the subscriptions of this worker's clients (each waiting
//! answer is one of them, a repeated `subscribe` one more): connections ×
//! (`--max-channels-per-client` + 1), and by time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::app::routes::ResumeFrom;
use crate::ids::ConnKey;

/// One held answer: whom, and what it resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub key: ConnKey,
    pub resume: Option<ResumeFrom>,
}

#[derive(Debug, Default)]
pub struct AwaitingFollow {
    by_channel: HashMap<Arc<str>, Vec<Waiting>>,
    /// When each channel's wait ends, in the order they began; entries of
    /// channels answered since are skipped.
    deadlines: VecDeque<(Instant, Arc<str>)>,
}

impl AwaitingFollow {
    /// Holds `key`'s answer for `channel` until `deadline` at the latest.
    pub fn hold(
        &mut self,
        channel: &Arc<str>,
        key: ConnKey,
        resume: Option<ResumeFrom>,
        deadline: Instant,
    ) {
        let waiting = self.by_channel.entry(Arc::clone(channel)).or_default();
        if waiting.is_empty() {
            self.deadlines.push_back((deadline, Arc::clone(channel)));
        }
        waiting.push(Waiting { key, resume });
    }

    pub fn is_waiting(&self, channel: &str) -> bool {
        self.by_channel.contains_key(channel)
    }

    /// The answers held for `channel`, in the order they were asked.
    pub fn take(&mut self, channel: &str) -> Vec<Waiting> {
        self.by_channel.remove(channel).unwrap_or_default()
    }

    /// `key` left `channel` (or the worker): nothing is answered to it.
    pub fn forget(&mut self, key: ConnKey, channel: &str) {
        let Some(waiting) = self.by_channel.get_mut(channel) else {
            return;
        };
        waiting.retain(|w| w.key != key);
        if waiting.is_empty() {
            self.by_channel.remove(channel);
        }
    }

    /// The channels whose wait is over at `now`.
    pub fn overdue(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while let Some((at, channel)) = self.deadlines.front() {
            if self.by_channel.contains_key(channel) && *at > now {
                break;
            }
            let (_, channel) = self.deadlines.pop_front().expect("a front");
            if self.by_channel.contains_key(&channel) {
                due.push(channel);
            }
        }
        due
    }

    /// When the next wait ends, if one is under way.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines
            .iter()
            .find(|(_, channel)| self.by_channel.contains_key(channel))
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_wait_per_channel_until_taken_forgotten_or_overdue() {
        let now = Instant::now();
        let later = now + Duration::from_millis(250);
        let mut held = AwaitingFollow::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        held.hold(&a, ConnKey(1), None, later);
        held.hold(&a, ConnKey(2), None, later + Duration::from_millis(5));
        held.hold(&b, ConnKey(1), None, later + Duration::from_millis(9));
        assert_eq!(held.next_deadline(), Some(later), "a's first");
        held.forget(ConnKey(1), "a");
        let taken = held.take("a");
        assert_eq!(
            taken.iter().map(|w| w.key).collect::<Vec<_>>(),
            [ConnKey(2)]
        );
        assert!(!held.is_waiting("a"));
        assert_eq!(held.next_deadline(), Some(later + Duration::from_millis(9)));
        assert!(held.overdue(later).is_empty());
        assert_eq!(held.overdue(later + Duration::from_millis(9)), [b]);
        assert_eq!(held.take("b").len(), 1);
        assert!(!held.is_waiting("b") && held.next_deadline().is_none());
        held.forget(ConnKey(7), "none");
    }
}
