//! The process-wide bound on queued bytes (`--max-total-queue-bytes`,
//! split evenly by the workers): past it, the clients with the largest
//! queues, the slowest readers, are dropped first, as slow consumers.

use super::worker::Worker;
use crate::conn::Verdict;
use crate::obs::metrics::Limit;

impl Worker {
    /// Drops the largest queues until this worker's queues together hold no
    /// more than its budget. Returns whether it dropped any (their Close
    /// frames are then to be flushed).
    ///
    /// Looks at the queues only when they could be over: a queue past
    /// `--max-queue-bytes` is dropped at its flush, so fewer backlogged
    /// connections than budget / max-queue cannot be over, and a turn with
    /// a few slow clients costs nothing here.
    pub(super) fn bound_queues(&mut self) -> bool {
        let per_queue = self.settings.max_queue.max(1);
        if self.backlogged <= self.queue_budget / per_queue {
            return false;
        }
        let mut queues: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, s)| s.writable && s.conn.is_ws())
            .map(|(key, s)| (s.conn.out().held(), key))
            .collect();
        let mut total: usize = queues.iter().map(|(held, _)| held).sum();
        if total <= self.queue_budget {
            return false;
        }
        queues.sort_unstable_by(|a, b| b.cmp(a));
        for (held, key) in queues {
            if total <= self.queue_budget {
                break;
            }
            total -= held;
            self.shared.stats.limit_hit(Limit::TotalQueue);
            if let Some(Some(Verdict::Dropped(event))) =
                self.drive(key, |conn, now, s| conn.shed(now, s))
            {
                self.on_event(key, event);
            }
        }
        true
    }
}
