//! The process-wide bound on queued bytes (`--max-total-queue-bytes`, split
//! evenly by the workers): past it, the clients with the largest queues,
//! the slowest readers, are dropped first, as slow consumers.

use super::conns::Conns;
use crate::ids::ConnKey;

/// The clients to drop so that this worker's queues together hold no more
/// than `budget`, largest queue first; empty when within it.
///
/// Looks at the queues only when they could be over: a queue past
/// `max_queue` is dropped at its flush, so fewer backlogged connections than
/// `budget / max_queue` cannot be over, and a turn with a few slow clients
/// costs nothing here.
pub fn over_budget(conns: &Conns, budget: usize, max_queue: usize) -> Vec<ConnKey> {
    if conns.backlogged() <= budget / max_queue.max(1) {
        return Vec::new();
    }
    let mut queues: Vec<(usize, ConnKey)> = conns.backlogs().collect();
    let mut total: usize = queues.iter().map(|(held, _)| held).sum();
    if total <= budget {
        return Vec::new();
    }
    queues.sort_unstable_by(|a, b| b.cmp(a));
    let mut shed = Vec::new();
    for (held, key) in queues {
        if total <= budget {
            break;
        }
        total -= held;
        shed.push(key);
    }
    shed
}
