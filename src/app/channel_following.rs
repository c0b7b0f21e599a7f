//! With Redis, which channels this process follows: how many of its
//! workers' subscriptions Redis confirmed for each channel. A channel is
//! followed while one is, and every message of it published meanwhile
//! reaches the process; when the last stops (its clients left, or a
//! connection was lost) messages may be missed from then on, so the
//! channel's history must not recover a resume across that moment.
//! Bounded like the subscriptions: at most one entry per channel a worker
//! subscribes to.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct ChannelFollowing {
    workers: HashMap<Arc<str>, usize>,
}

impl ChannelFollowing {
    /// A worker's subscription follows `channel` now; returns whether the
    /// process did not follow it before.
    pub fn started(&mut self, channel: &Arc<str>) -> bool {
        let count = self.workers.entry(Arc::clone(channel)).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A worker's subscription stopped following `channel`; returns
    /// whether the process follows it no more.
    pub fn stopped(&mut self, channel: &str) -> bool {
        let Some(count) = self.workers.get_mut(channel) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.workers.remove(channel);
        true
    }

    pub fn follows(&self, channel: &str) -> bool {
        self.workers.contains_key(channel)
    }

    /// Channels followed.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_while_one_worker_follows() {
        let mut f = ChannelFollowing::default();
        let a: Arc<str> = "a".into();
        assert!(f.started(&a), "the first");
        assert!(!f.started(&a), "a second worker");
        assert!(!f.stopped("a") && f.follows("a"));
        assert!(f.stopped("a") && !f.follows("a"));
        assert!(!f.stopped("a"), "never followed twice over");
        assert!(f.is_empty());
    }
}
